-- MLflow's "latest" value per run and key: the point with the greatest timestamp, then the
-- greatest value (NaN ranks below every number); with min, max and the number of points.
SELECT
    run_id,
    key,
    arg_max(value, (recorded_at, NOT isnan(value), value)) AS value,
    arg_max(step, (recorded_at, NOT isnan(value), value)) AS step,
    max(recorded_at) AS recorded_at,
    min(value) FILTER (WHERE NOT isnan(value)) AS min_value,
    max(value) FILTER (WHERE NOT isnan(value)) AS max_value,
    count(*) AS points
FROM lake.metrics
GROUP BY run_id, key
