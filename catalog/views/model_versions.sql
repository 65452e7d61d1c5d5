-- Current model versions: the latest change row per (registered_model_id, version), under the
-- model's current name, with the aliases pointing at each. Deleted versions and versions of deleted
-- models are left out. `stage` is MLflow's legacy stage (None, Staging, Production, Archived).
WITH latest AS (
    SELECT unnest(arg_max(v, (v.changed_at, v.writer_id, v.wal_seq)))
    FROM lake.model_version_changes AS v
    GROUP BY v.registered_model_id, v.version
),
aliases AS (
    SELECT registered_model_id, version, list(alias ORDER BY alias) AS aliases
    FROM model_aliases
    GROUP BY registered_model_id, version
)
SELECT
    m.name,
    v.version,
    v.registered_model_id,
    v.stage,
    v.status,
    v.status_message,
    v.description,
    v.source,
    v.storage_location,
    v.source_run_id,
    v.model_id,
    v.run_link,
    v.user_id,
    coalesce(a.aliases, []::VARCHAR[]) AS aliases,
    v.created_at,
    v.changed_at AS updated_at,
    v.actor AS updated_by
FROM latest AS v
JOIN registered_models AS m USING (registered_model_id)
LEFT JOIN aliases AS a USING (registered_model_id, version)
WHERE NOT v.is_deleted
