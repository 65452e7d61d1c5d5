-- OpenLineage run events received (part of the `activity` view). The event carries no user, so the
-- actor is its `producer` (the integration that sent it); the operation is the event type.
SELECT
    received_at AS changed_at,
    producer AS actor,
    lower(coalesce(event_type, 'other')) AS operation,
    'openlineage_run' AS entity_type,
    run_id AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    'job=' || job_namespace || '/' || job_name AS detail
FROM lake.openlineage_events
