-- Current workspaces (MLflow 3's): the latest change row per name, deleted ones left out, with the
-- number of experiments and registered models each holds and its members. The workspace "default"
-- is implicit: it holds everything not placed elsewhere and is not listed.
WITH latest AS (
    SELECT unnest(arg_max(w, (w.changed_at, w.writer_id, w.wal_seq)))
    FROM lake.workspace_changes AS w
    GROUP BY w.name
),
placed AS (
    SELECT unnest(arg_max(r, (r.changed_at, r.writer_id, r.wal_seq)))
    FROM lake.workspace_resource_changes AS r
    GROUP BY r.resource_type, r.resource_id
),
held AS (
    SELECT
        workspace,
        count(*) FILTER (WHERE resource_type = 'experiment') AS experiment_count,
        count(*) FILTER (WHERE resource_type = 'registered_model') AS registered_model_count
    FROM placed
    GROUP BY workspace
),
members AS (
    SELECT resource_id AS workspace, count(*) AS member_count
    FROM (
        SELECT unnest(arg_max(p, (p.changed_at, p.writer_id, p.wal_seq)))
        FROM lake.permission_changes AS p
        WHERE p.resource_type = 'workspace'
        GROUP BY p.resource_id, p.username
    )
    WHERE NOT is_deleted
    GROUP BY resource_id
)
SELECT
    w.name,
    w.description,
    w.default_artifact_root,
    coalesce(h.experiment_count, 0) AS experiment_count,
    coalesce(h.registered_model_count, 0) AS registered_model_count,
    coalesce(m.member_count, 0) AS member_count,
    w.created_at,
    w.changed_at AS updated_at,
    w.actor AS updated_by
FROM latest AS w
LEFT JOIN held AS h ON h.workspace = w.name
LEFT JOIN members AS m ON m.workspace = w.name
WHERE NOT w.is_deleted
