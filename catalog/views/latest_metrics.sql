-- MLflow's "latest" value per run and key: the point with the greatest timestamp, then the
-- greatest value (NaN ranks below every number); with min, max and the number of points.
-- Read from the metric_latest summary (catalog/summaries.py), whose partial rows per key fold with
-- the same ranking, so this view costs O(runs x keys), not O(metric points).
SELECT
    run_id,
    key,
    arg_max(value, (recorded_at, NOT isnan(value), value, step)) AS value,
    arg_max(step, (recorded_at, NOT isnan(value), value, step)) AS step,
    max(recorded_at) AS recorded_at,
    min(min_value) AS min_value,
    max(max_value) AS max_value,
    sum(points)::BIGINT AS points
FROM lake.metric_latest
GROUP BY run_id, key
