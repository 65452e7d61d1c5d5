-- Dataset versions logged (part of the `activity` view).
SELECT
    created_at AS changed_at,
    actor,
    'log' AS operation,
    'dataset_version' AS entity_type,
    dataset_version_id AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    'name=' || dataset_name || ', digest=' || digest || ', source_type=' || source_type
    || coalesce(', rows=' || row_count, '') AS detail
FROM lake.dataset_versions
