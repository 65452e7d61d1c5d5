-- Aliases set, moved and deleted (part of the `activity` view). entity_id is `<model name>@<alias>`
-- (the name at the change); a move forced over the quality gate says so, with its reason.
SELECT
    a.changed_at,
    a.actor,
    a.operation,
    'model_alias' AS entity_type,
    coalesce(m.name, a.registered_model_id) || '@' || a.alias AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    CASE WHEN a.is_deleted THEN 'deleted' ELSE 'version=' || a.version END
    || CASE WHEN a.is_forced THEN ', forced: ' || coalesce(a.force_reason, '') ELSE '' END AS detail
FROM lake.model_alias_changes AS a
ASOF LEFT JOIN lake.registered_model_changes AS m
    ON m.registered_model_id = a.registered_model_id AND m.changed_at <= a.changed_at
