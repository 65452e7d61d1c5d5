-- MLflow 3 traces: the current info of every trace (deleted ones left out), one row per trace.
-- A trace's own record (the client's StartTraceV3) outranks the one derived from its root span.
-- run_id is the run it was recorded in; links to other runs (LinkTracesToRun, 'link' rows) are not its state.
SELECT
    trace_id,
    experiment_id,
    trace_name,
    state,
    request_time,
    execution_duration_ms,
    client_request_id,
    request_preview,
    response_preview,
    json_extract_string(metadata_json, '$."mlflow.sourceRun"') AS run_id,
    TRY_CAST(json_extract(metadata_json, '$."mlflow.trace.tokenUsage"') ->> '$.input_tokens' AS BIGINT) AS input_tokens,
    TRY_CAST(json_extract(metadata_json, '$."mlflow.trace.tokenUsage"') ->> '$.output_tokens' AS BIGINT) AS output_tokens,
    TRY_CAST(json_extract(metadata_json, '$."mlflow.trace.tokenUsage"') ->> '$.total_tokens' AS BIGINT) AS total_tokens,
    metadata_json
FROM lake.trace_info_changes
WHERE operation <> 'link'
QUALIFY row_number() OVER (
        PARTITION BY trace_id
        ORDER BY (operation <> 'spans') DESC, changed_at DESC, writer_id DESC, wal_seq DESC
    ) = 1
    AND NOT bool_or(is_deleted) OVER (PARTITION BY trace_id)
