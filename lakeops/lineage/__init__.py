"""Lineage: the edges between dataset versions, runs, logged models, model versions, deployments and jobs.

The graph is the append-only ``lineage_edges`` table, folded in memory into ``LineageState``
(``lakeops/stores/lineage_state.py``). Modules: ``edges`` (the vocabulary, ``LineageEdge`` and
``lineage_edge_rows``, which every aggregate uses to record edges in its own atomic write) and
``service`` (``LineageService``: add edges, query up or downstream, ``as_of`` a past time).
OpenLineage events are ingested by ``lakeops/services/openlineage.py`` onto the same edges.
"""

from lakeops.lineage.service import LineageService

__all__ = ["LineageService"]
