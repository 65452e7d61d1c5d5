-- Dataset versions (one row per name and content digest), with their latest validation, if any.
WITH versions AS (
    SELECT *
    FROM lake.dataset_versions
    QUALIFY row_number() OVER (PARTITION BY dataset_version_id ORDER BY created_at) = 1
),
latest_validation AS (
    SELECT dataset_version_id, suite_name, is_success, validated_at
    FROM lake.validation_results
    QUALIFY row_number() OVER (PARTITION BY dataset_version_id ORDER BY validated_at DESC) = 1
)
SELECT
    v.dataset_version_id,
    v.dataset_name,
    v.digest,
    v.digest_kind,
    v.source_type,
    v.source,
    v.row_count,
    v.size_bytes,
    v.schema_json,
    v.profile_json,
    v.created_at,
    v.actor,
    q.suite_name AS last_validation_suite,
    q.is_success AS last_validation_success,
    q.validated_at AS last_validated_at
FROM versions AS v
LEFT JOIN latest_validation AS q ON q.dataset_version_id = v.dataset_version_id
