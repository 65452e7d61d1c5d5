-- Registered models created, renamed, described and deleted (part of the `activity` view).
-- entity_id is the model's name as of the change (for a rename, the new name).
SELECT
    changed_at,
    actor,
    operation,
    'registered_model' AS entity_type,
    name AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    CASE
        WHEN operation = 'rename' THEN 'renamed from ' || coalesce(
            lag(name) OVER (PARTITION BY registered_model_id ORDER BY changed_at, writer_id, wal_seq), '?'
        ) || ' to ' || name
        ELSE 'name=' || name
    END || CASE WHEN is_deleted THEN ', deleted' ELSE '' END || ', registered_model_id=' || registered_model_id
        AS detail
FROM lake.registered_model_changes
