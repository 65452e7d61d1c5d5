-- Comments on runs, registered models and model versions: the current ones (deleted ones left out),
-- with the @mentioned user names as a list.
SELECT
    comment_id,
    target_kind,
    target_id,
    target_name,
    author,
    body,
    from_json(mentions_json, '["VARCHAR"]') AS mentions,
    created_at
FROM lake.comment_changes
QUALIFY row_number() OVER (PARTITION BY comment_id ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC) = 1
    AND NOT is_deleted
