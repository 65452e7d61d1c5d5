-- Model versions created, updated, staged (legacy stages) and deleted (part of the `activity` view).
-- entity_id is `<model name>/<version>`, with the name the model had at the change.
SELECT
    v.changed_at,
    v.actor,
    v.operation,
    'model_version' AS entity_type,
    coalesce(m.name, v.registered_model_id) || '/' || v.version AS entity_id,
    NULL::VARCHAR AS experiment_id,
    v.source_run_id AS run_id,
    'stage=' || v.stage || ', status=' || v.status || CASE WHEN v.is_deleted THEN ', deleted' ELSE '' END
    || CASE WHEN v.operation = 'create' THEN ', source=' || v.source ELSE '' END AS detail
FROM lake.model_version_changes AS v
ASOF LEFT JOIN lake.registered_model_changes AS m
    ON m.registered_model_id = v.registered_model_id AND m.changed_at <= v.changed_at
