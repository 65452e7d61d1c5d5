-- Every move of every alias, oldest first: the version it pointed to from `changed_at` until
-- `valid_until` (NULL: still current, or the row is a deletion), who moved it, and whether it was
-- forced over the quality gate. `name` is the model's latest name (deleted models included, marked
-- by `is_model_deleted`). "Which version held production on 1 March":
--   WHERE alias = 'production' AND changed_at <= TIMESTAMPTZ '2026-03-01'
--     AND (valid_until IS NULL OR valid_until > TIMESTAMPTZ '2026-03-01') AND NOT is_deleted
WITH models AS (
    SELECT unnest(arg_max(c, (c.changed_at, c.writer_id, c.wal_seq)))
    FROM lake.registered_model_changes AS c
    GROUP BY c.registered_model_id
)
SELECT
    m.name,
    a.alias,
    a.version,
    a.registered_model_id,
    a.operation,
    a.is_deleted,
    a.is_forced,
    a.force_reason,
    a.gate_reasons,
    a.changed_at,
    lead(a.changed_at) OVER (
        PARTITION BY a.registered_model_id, a.alias ORDER BY a.changed_at, a.writer_id, a.wal_seq
    ) AS valid_until,
    a.actor,
    m.is_deleted AS is_model_deleted
FROM lake.model_alias_changes AS a
JOIN models AS m USING (registered_model_id)
ORDER BY a.registered_model_id, a.alias, a.changed_at, a.writer_id, a.wal_seq
