-- Artifact versions stored and deleted (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'artifact' AS entity_type,
    path AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    'version_id=' || version_id || ', size_bytes=' || size_bytes || CASE WHEN is_deleted THEN ', deleted' ELSE '' END
        AS detail
FROM lake.artifact_versions
