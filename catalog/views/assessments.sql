-- Feedback and expectations on traces: the current version of each (deleted ones left out);
-- is_valid is false once another assessment overrides it. value_json holds the value as JSON.
SELECT
    assessment_id,
    trace_id,
    experiment_id,
    name,
    kind,
    value_json,
    source_type,
    source_id,
    span_id,
    overrides,
    is_valid,
    created_at,
    changed_at AS updated_at
FROM lake.assessment_changes
QUALIFY row_number() OVER (PARTITION BY assessment_id ORDER BY changed_at DESC, writer_id DESC, wal_seq DESC) = 1
    AND NOT is_deleted
