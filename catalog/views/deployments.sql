-- What runs where: per environment and model, the latest deployment event, unless it retired the
-- model (deleted models left out). `since` is when this version started running there without
-- interruption (redeploying the same version keeps it; another version or a retirement resets it).
-- `model_name` is the model's current name. The full record is `deployment_history`.
-- (GROUP BY + arg_max, no window: see registered_models.sql.)
WITH events AS (
    SELECT *, (changed_at, writer_id, wal_seq) AS position
    FROM lake.deployment_events
),
latest_event AS (
    SELECT unnest(arg_max(e, e.position))
    FROM events AS e
    GROUP BY e.environment, e.registered_model_id
),
-- breaks: the last event that interrupted the current version (a retirement or another version)
breaks AS (
    SELECT e.environment, e.registered_model_id, max(e.position) AS position
    FROM events AS e
    JOIN latest_event AS l USING (environment, registered_model_id)
    WHERE e.is_retired OR e.version <> l.version
    GROUP BY e.environment, e.registered_model_id
),
streak AS (
    SELECT e.environment, e.registered_model_id, min(e.changed_at) AS since
    FROM events AS e
    LEFT JOIN breaks AS b USING (environment, registered_model_id)
    WHERE b.position IS NULL OR e.position > b.position
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
