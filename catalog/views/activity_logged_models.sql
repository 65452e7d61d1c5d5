-- Activity on logged models (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'logged_model' AS entity_type,
    model_id AS entity_id,
    experiment_id,
    source_run_id AS run_id,
    'name=' || name || ', status=' || status || ', lifecycle_stage=' || lifecycle_stage AS detail
FROM lake.logged_model_changes
