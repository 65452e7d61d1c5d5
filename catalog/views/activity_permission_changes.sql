-- Permissions granted, changed and revoked on experiments and registered models (part of the `activity` view).
SELECT
    changed_at,
    actor,
    operation,
    'permission' AS entity_type,
    resource_type || ':' || resource_id || ':' || username AS entity_id,
    CASE WHEN resource_type = 'experiment' THEN resource_id END AS experiment_id,
    NULL::VARCHAR AS run_id,
    username || ' ' || permission || ' on ' || resource_type || ' ' || resource_id AS detail
FROM lake.permission_changes
