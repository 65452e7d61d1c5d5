-- Saved queries created, changed and deleted (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'saved_query' AS entity_type,
    name AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    coalesce(description, '') AS detail
FROM lake.saved_query_changes
