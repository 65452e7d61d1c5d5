-- The wide form: one row per run of an experiment (given by id or name), its params as
-- "params.<key>" columns (text) and its latest metrics as "metrics.<key>" columns (double).
-- The columns depend on the experiment, so the SQL behind it is prepared by the engine
-- (catalog.views.wide_form_sql) and handed over in the variable `lakeops_runs_wide`.
(experiment) AS TABLE
SELECT *
FROM query(coalesce(
    getvariable('lakeops_runs_wide')[experiment::VARCHAR],
    'SELECT error(''runs_wide: no experiment with id or name ' || replace(experiment::VARCHAR, '''', '''''') || ''') AS run_id'
))
