-- Current registered models: the latest change row per registered_model_id (a rename is a new row
-- of the same id; deleted models left out), with their number of live versions and the newest one.
-- (GROUP BY + arg_max rather than a window. Neither is safe in a recursive CTE's recursive term
-- in DuckDB 1.5.5, see lineage_edges.sql; this view is read outside it, e.g. by `deployments`.)
WITH latest AS (
    SELECT unnest(arg_max(c, (c.changed_at, c.writer_id, c.wal_seq)))
    FROM lake.registered_model_changes AS c
    GROUP BY c.registered_model_id
),
versions AS (
    SELECT registered_model_id, count(*) AS version_count, max(version) AS latest_version
    FROM (
        SELECT unnest(arg_max(v, (v.changed_at, v.writer_id, v.wal_seq)))
        FROM lake.model_version_changes AS v
        GROUP BY v.registered_model_id, v.version
    )
    WHERE NOT is_deleted
    GROUP BY registered_model_id
)
SELECT
    m.registered_model_id,
    m.name,
    m.description,
    coalesce(v.version_count, 0) AS version_count,
    v.latest_version,
    m.created_at,
    m.changed_at AS updated_at,
    m.actor AS updated_by
FROM latest AS m
LEFT JOIN versions AS v USING (registered_model_id)
WHERE NOT m.is_deleted
