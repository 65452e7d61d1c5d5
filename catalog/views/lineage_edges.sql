-- Lineage edges, each (source, target, relation) once, as first recorded. Edges point downstream:
-- dataset_version -input-> run -output-> dataset_version; run -produced-> model_version -deployed-> deployment;
-- job -executes-> run and run -parent-> run (OpenLineage). Walk N hops with WITH RECURSIVE (README.md).
-- "First" is the earliest created_at, ties broken by origin, actor and properties; a row copied
-- exactly (the same edge asserted twice in one microsecond) is kept once by the DISTINCT.
-- (An anti-join, not GROUP BY, DISTINCT or a window over the scan: in DuckDB 1.5.5, with more than
-- one thread, an aggregate or window fed straight by a multi-file scan inside a recursive CTE's
-- recursive term intermittently loses rows, so the walk stopped short; fixed in DuckDB 2.0.
-- tests/catalog/test_lineage_views.py walks a many-file table repeatedly to catch it.)
SELECT DISTINCT
    e.source_kind,
    e.source_id,
    e.target_kind,
    e.target_id,
    e.relation,
    e.origin,
    e.actor,
    e.created_at,
    e.properties_json
FROM lake.lineage_edges AS e
WHERE NOT EXISTS (
    SELECT 1
    FROM lake.lineage_edges AS f
    WHERE f.source_kind = e.source_kind
        AND f.source_id = e.source_id
        AND f.target_kind = e.target_kind
        AND f.target_id = e.target_id
        AND f.relation = e.relation
        AND (f.created_at, f.origin, coalesce(f.actor, ''), coalesce(f.properties_json, ''))
        < (e.created_at, e.origin, coalesce(e.actor, ''), coalesce(e.properties_json, ''))
)
