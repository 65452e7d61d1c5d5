-- Current aliases: alias -> version per model (the latest change row per model and alias; deleted
-- aliases and deleted models left out), with who set it, when, and whether it was forced over the
-- quality gate (`force_reason`, and the gate's refusals as a JSON list in `gate_reasons`).
WITH latest AS (
    SELECT unnest(arg_max(a, (a.changed_at, a.writer_id, a.wal_seq)))
    FROM lake.model_alias_changes AS a
    GROUP BY a.registered_model_id, a.alias
)
SELECT
    m.name,
    a.alias,
    a.version,
    a.registered_model_id,
    a.is_forced,
    a.force_reason,
    a.gate_reasons,
    a.changed_at AS set_at,
    a.actor AS set_by
FROM latest AS a
JOIN (
    SELECT unnest(arg_max(c, (c.changed_at, c.writer_id, c.wal_seq)))
    FROM lake.registered_model_changes AS c
    GROUP BY c.registered_model_id
) AS m USING (registered_model_id)
WHERE NOT a.is_deleted AND a.version IS NOT NULL AND NOT m.is_deleted
