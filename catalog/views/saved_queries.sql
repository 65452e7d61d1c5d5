-- Saved SQL queries: the current version of each (deleted ones left out).
SELECT name, sql, description, author, created_at, changed_at AS updated_at, actor AS updated_by
FROM lake.saved_query_changes
QUALIFY row_number() OVER (PARTITION BY name ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC) = 1
    AND NOT is_deleted
