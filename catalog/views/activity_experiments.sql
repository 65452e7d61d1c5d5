-- Activity on experiments (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'experiment' AS entity_type,
    experiment_id AS entity_id,
    experiment_id,
    NULL::VARCHAR AS run_id,
    'name=' || name || ', lifecycle_stage=' || lifecycle_stage AS detail
FROM lake.experiment_changes
