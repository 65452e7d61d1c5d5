-- Current state of MLflow 3 logged models.
SELECT
    model_id,
    experiment_id,
    name,
    artifact_location,
    source_run_id,
    model_type,
    status,
    status_message,
    params_json,
    lifecycle_stage,
    created_at,
    changed_at AS updated_at,
    actor AS updated_by
FROM lake.logged_model_changes
QUALIFY row_number() OVER (PARTITION BY model_id ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC) = 1
