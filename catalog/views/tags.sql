-- Current tags of experiments, runs and logged models (deleted tags left out).
SELECT entity_type, entity_id, key, value, changed_at AS updated_at, actor AS updated_by
FROM lake.tag_changes
QUALIFY row_number() OVER (
    PARTITION BY entity_type, entity_id, key ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC
) = 1 AND NOT is_deleted
