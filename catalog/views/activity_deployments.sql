-- Model versions deployed to and retired from environments (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'deployment' AS entity_type,
    deployment_id AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    model_name || '/' || version || ' ' || CASE WHEN is_retired THEN 'retired from ' ELSE 'to ' END || environment
    || coalesce(', application_version=' || application_version, '') || coalesce(', target=' || target, '') AS detail
FROM lake.deployment_events
