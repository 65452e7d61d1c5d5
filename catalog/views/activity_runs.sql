-- Activity on runs (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'run' AS entity_type,
    run_id AS entity_id,
    experiment_id,
    run_id,
    'status=' || status || ', lifecycle_stage=' || lifecycle_stage || coalesce(', run_name=' || run_name, '') AS detail
FROM lake.run_changes
