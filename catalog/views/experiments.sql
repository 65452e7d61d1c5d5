-- Current state of every experiment: the latest change row per experiment_id.
SELECT
    experiment_id,
    name,
    artifact_location,
    lifecycle_stage,
    created_at,
    changed_at AS updated_at,
    actor AS updated_by
FROM lake.experiment_changes
QUALIFY row_number() OVER (PARTITION BY experiment_id ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC) = 1
