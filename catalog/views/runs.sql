-- Current state of every run (deleted runs included: filter on lifecycle_stage).
SELECT
    run_id,
    experiment_id,
    run_name,
    user_id,
    status,
    started_at,
    ended_at,
    lifecycle_stage,
    artifact_uri,
    parent_run_id,
    changed_at AS updated_at,
    actor AS updated_by
FROM lake.run_changes
QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC) = 1
