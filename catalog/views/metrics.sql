-- Every metric point ever logged: (run_id, key, step, value, recorded_at).
SELECT run_id, key, step, value, recorded_at
FROM lake.metrics
