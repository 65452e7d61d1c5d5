-- Datasets and models each run read (direction 'input') or wrote ('output').
SELECT
    run_id,
    direction,
    kind,
    model_id,
    step,
    dataset_name,
    dataset_digest,
    source_type,
    source,
    dataset_schema,
    profile,
    tags_json,
    logged_at
FROM lake.run_io
QUALIFY row_number() OVER (
    PARTITION BY run_id, direction, kind, model_id, step, dataset_name, dataset_digest, tags_json ORDER BY logged_at
) = 1
