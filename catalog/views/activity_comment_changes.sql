-- Comments posted and deleted (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'comment' AS entity_type,
    comment_id AS entity_id,
    NULL::VARCHAR AS experiment_id,
    CASE WHEN target_kind = 'run' THEN target_id END AS run_id,
    target_kind || ' ' || coalesce(target_name, target_id) || ': ' || left(body, 200) AS detail
FROM lake.comment_changes
