-- Latency and errors by span name, per experiment: calls, errors, error rate, and latency
-- percentiles in milliseconds (what no MLflow server answers).
SELECT
    experiment_id,
    name AS span_name,
    count(*) AS calls,
    count(*) FILTER (WHERE status_code = 'ERROR') AS errors,
    count(*) FILTER (WHERE status_code = 'ERROR') / count(*) AS error_rate,
    quantile_cont(duration_ms, 0.5) AS p50_ms,
    quantile_cont(duration_ms, 0.95) AS p95_ms,
    quantile_cont(duration_ms, 0.99) AS p99_ms,
    max(duration_ms) AS max_ms
FROM spans
GROUP BY experiment_id, name
