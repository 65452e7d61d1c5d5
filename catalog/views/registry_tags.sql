-- Current tags of registered models (`version` NULL) and model versions, under the model's current
-- name; deleted tags, deleted versions and deleted models left out.
WITH latest AS (
    SELECT unnest(arg_max(t, (t.changed_at, t.writer_id, t.wal_seq)))
    FROM lake.registry_tag_changes AS t
    GROUP BY t.registered_model_id, t.version, t.key
)
SELECT
    m.name,
    t.version,
    t.registered_model_id,
    t.key,
    t.value,
    t.changed_at AS updated_at,
    t.actor AS updated_by
FROM latest AS t
JOIN registered_models AS m USING (registered_model_id)
WHERE NOT t.is_deleted
    AND (
        t.version IS NULL
        OR EXISTS (
            SELECT 1 FROM model_versions AS v
            WHERE v.registered_model_id = t.registered_model_id AND v.version = t.version
        )
    )
