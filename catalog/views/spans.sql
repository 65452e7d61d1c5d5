-- Every span of every current trace: one row per span (a span sent twice counts once), its
-- duration in milliseconds, and its attributes as JSON (MLflow's values decoded: inputs, outputs,
-- mlflow.spanType, mlflow.chat.tokenUsage, ...).
SELECT
    s.trace_id,
    s.span_id,
    s.parent_span_id,
    s.experiment_id,
    s.name,
    s.span_type,
    s.status_code,
    s.status_message,
    s.started_at,
    s.ended_at,
    (epoch_us(s.ended_at) - epoch_us(s.started_at)) / 1000.0 AS duration_ms,
    s.attributes_json
FROM lake.spans AS s
SEMI JOIN traces AS t ON t.trace_id = s.trace_id
QUALIFY row_number() OVER (PARTITION BY s.trace_id, s.span_id ORDER BY s.ingested_at DESC) = 1
