-- Lineage edges, each (source, target, relation) once, as first recorded. Edges point downstream:
-- dataset_version -input-> run -output-> dataset_version; run -produced-> model_version -deployed-> deployment;
-- job -executes-> run and run -parent-> run (OpenLineage). Walk N hops with WITH RECURSIVE (README.lineage.md).
SELECT
    source_kind,
    source_id,
    target_kind,
    target_id,
    relation,
    origin,
    actor,
    created_at,
    properties_json
FROM lake.lineage_edges
QUALIFY row_number() OVER (
    PARTITION BY source_kind, source_id, target_kind, target_id, relation
    ORDER BY created_at
) = 1
