-- Every run's params (immutable: the first value logged for a key is the value).
SELECT run_id, key, value, logged_at
FROM lake.params
QUALIFY row_number() OVER (PARTITION BY run_id, key ORDER BY logged_at) = 1
