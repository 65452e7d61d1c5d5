-- What runs where: per environment and model, the latest deployment event, unless it retired the
-- model (deleted models left out). `since` is when this version started running there without
-- interruption (redeploying the same version keeps it; another version or a retirement resets it).
-- `model_name` is the model's current name. The full record is `deployment_history`.
WITH events AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY environment, registered_model_id ORDER BY changed_at, writer_id, wal_seq
        ) AS n
    FROM lake.deployment_events
),
latest_event AS (
    SELECT unnest(arg_max(e, e.n))
    FROM events AS e
    GROUP BY e.environment, e.registered_model_id
),
breaks AS (
    SELECT e.environment, e.registered_model_id, max(e.n) AS n
    FROM events AS e
    JOIN latest_event AS l USING (environment, registered_model_id)
    WHERE e.is_retired OR e.version <> l.version
    GROUP BY e.environment, e.registered_model_id
),
streak AS (
    SELECT e.environment, e.registered_model_id, min(e.changed_at) AS since
    FROM events AS e
    LEFT JOIN breaks AS b USING (environment, registered_model_id)
    WHERE e.n > coalesce(b.n, 0)
    GROUP BY e.environment, e.registered_model_id
)
SELECT
    l.environment,
    m.name AS model_name,
    l.version,
    l.registered_model_id,
    l.deployment_id,
    l.application_version,
    l.target,
    s.since,
    l.changed_at AS deployed_at,
    l.actor AS deployed_by
FROM latest_event AS l
JOIN streak AS s USING (environment, registered_model_id)
JOIN registered_models AS m USING (registered_model_id)
WHERE NOT l.is_retired
