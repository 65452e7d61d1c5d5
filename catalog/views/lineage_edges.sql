-- Lineage edges, each (source, target, relation) once, as first recorded. Edges point downstream:
-- dataset_version -input-> run -output-> dataset_version; run -produced-> model_version -deployed-> deployment;
-- job -executes-> run and run -parent-> run (OpenLineage). Walk N hops with WITH RECURSIVE (README.lineage.md).
-- (GROUP BY, not a window function: DuckDB 1.5.5 gave incomplete results for a QUALIFY view read
-- inside a recursive CTE.)
SELECT
    source_kind,
    source_id,
    target_kind,
    target_id,
    relation,
    arg_min(origin, created_at) AS origin,
    arg_min(actor, created_at) AS actor,
    min(created_at) AS created_at,
    arg_min(properties_json, created_at) AS properties_json
FROM lake.lineage_edges
GROUP BY source_kind, source_id, target_kind, target_id, relation
