-- The current tags of every trace (deleted tags left out).
SELECT trace_id, experiment_id, key, value
FROM lake.trace_tag_changes
QUALIFY row_number() OVER (PARTITION BY trace_id, key ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC) = 1
    AND NOT is_deleted
