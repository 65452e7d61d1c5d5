-- Dataset versions validated against expectation suites (part of the `activity` view).
SELECT
    validated_at AS changed_at,
    actor,
    'validate' AS operation,
    'validation' AS entity_type,
    validation_id AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    dataset_name || ' version ' || dataset_version_id || ' against suite ' || suite_name || ': '
    || CASE WHEN is_success THEN 'passed' ELSE 'failed' END AS detail
FROM lake.validation_results
