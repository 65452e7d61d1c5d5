-- Metric points with their run's experiment and name, ordered for charts.
SELECT
    r.experiment_id,
    m.run_id,
    r.run_name,
    m.key,
    m.step,
    m.value,
    m.recorded_at,
    epoch_ms(m.recorded_at) AS timestamp_ms
FROM lake.metrics AS m
JOIN runs AS r USING (run_id)
ORDER BY m.run_id, m.key, m.step, m.recorded_at
