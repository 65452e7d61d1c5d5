-- Tags set and deleted (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    entity_type || '_tag' AS entity_type,
    entity_id,
    NULL::VARCHAR AS experiment_id,
    CASE WHEN entity_type = 'run' THEN entity_id END AS run_id,
    key || CASE WHEN is_deleted THEN ' deleted' ELSE '=' || coalesce(value, '') END AS detail
FROM lake.tag_changes
