-- Workspaces created, updated and deleted (part of the `activity` view); memberships are grants
-- (resource_type 'workspace') in activity_permission_changes.
SELECT
    changed_at,
    actor,
    operation,
    'workspace' AS entity_type,
    name AS entity_id,
    NULL::VARCHAR AS experiment_id,
    NULL::VARCHAR AS run_id,
    coalesce(description, '') AS detail
FROM lake.workspace_changes
