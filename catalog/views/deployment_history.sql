-- Every deployment event, oldest first: a version deployed to (or retired from) an environment as
-- part of an application version, by whom and when. `model_name` is the model's latest name
-- (deleted models included), `deployed_name` the name it had when deployed.
WITH models AS (
    SELECT unnest(arg_max(c, (c.changed_at, c.writer_id, c.wal_seq)))
    FROM lake.registered_model_changes AS c
    GROUP BY c.registered_model_id
)
SELECT
    d.deployment_id,
    d.environment,
    m.name AS model_name,
    d.version,
    d.registered_model_id,
    d.model_name AS deployed_name,
    d.application_version,
    d.target,
    d.operation,
    d.is_retired,
    d.changed_at AS deployed_at,
    d.actor AS deployed_by
FROM lake.deployment_events AS d
JOIN models AS m USING (registered_model_id)
ORDER BY d.changed_at, d.writer_id, d.wal_seq
