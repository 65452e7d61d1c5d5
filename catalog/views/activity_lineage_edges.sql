-- Lineage edges recorded (part of the `activity` view): which dataset a run read or wrote, which run
-- produced a model version, where a version was deployed, OpenLineage jobs and parent runs.
SELECT
    created_at AS changed_at,
    actor,
    'link' AS operation,
    'lineage_edge' AS entity_type,
    source_kind || ':' || source_id || ' -' || relation || '-> ' || target_kind || ':' || target_id AS entity_id,
    NULL::VARCHAR AS experiment_id,
    CASE WHEN target_kind = 'run' THEN target_id WHEN source_kind = 'run' THEN source_id END AS run_id,
    'origin=' || origin AS detail
FROM lake.lineage_edges
