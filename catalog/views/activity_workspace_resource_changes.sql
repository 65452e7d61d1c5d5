-- Experiments and registered models placed in (or moved to) a workspace (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'workspace_resource' AS entity_type,
    resource_type || ':' || resource_id AS entity_id,
    CASE WHEN resource_type = 'experiment' THEN resource_id END AS experiment_id,
    NULL::VARCHAR AS run_id,
    resource_type || ' ' || resource_id || ' in workspace ' || workspace AS detail
FROM lake.workspace_resource_changes
