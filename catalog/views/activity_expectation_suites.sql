-- Expectation suites attached, replaced and detached (part of the `activity` view).
-- entity_id is `<dataset name>/<suite name>`.
SELECT
    changed_at,
    actor,
    operation,
    'expectation_suite' AS entity_type,
    dataset_name || '/' || suite_name AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    CASE WHEN is_deleted THEN 'detached' ELSE json_array_length(expectations_json) || ' expectations' END AS detail
FROM lake.expectation_suite_changes
