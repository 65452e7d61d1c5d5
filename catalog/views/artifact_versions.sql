-- Every stored version of every artifact, with whether it is the path's current version.
SELECT
    path,
    version_id,
    object_key,
    size_bytes,
    sha256,
    is_deleted,
    changed_at AS created_at,
    actor AS created_by,
    row_number() OVER (PARTITION BY path ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC) = 1 AS is_current
FROM lake.artifact_versions
