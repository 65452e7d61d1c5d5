-- Tags of registered models and model versions set and deleted (part of the `activity` view).
SELECT
    t.changed_at,
    t.actor,
    t.operation,
    CASE WHEN t.version IS NULL THEN 'registered_model_tag' ELSE 'model_version_tag' END AS entity_type,
    coalesce(m.name, t.registered_model_id) || coalesce('/' || t.version, '') AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    t.key || CASE WHEN t.is_deleted THEN ' deleted' ELSE '=' || coalesce(t.value, '') END AS detail
FROM lake.registry_tag_changes AS t
ASOF LEFT JOIN lake.registered_model_changes AS m
    ON m.registered_model_id = t.registered_model_id AND m.changed_at <= t.changed_at
