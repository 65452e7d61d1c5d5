"""``LineageService``: record edges, and walk the graph up or downstream of a node.

Queries walk the in-memory adjacency index of ``LineageState`` up or down to N hops, optionally
``as_of`` a past time (edges recorded later are ignored), so a 5-hop walk over 100,000 edges
costs only the edges it follows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from catalog.tables import LINEAGE_EDGES
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.lineage.edges import Direction, LineageEdge, NodeKind, lineage_edge_rows, new_edges, now_us
from lakeops.stores.iceberg import IcebergStore
from lakeops.stores.lineage_state import EdgeState, Node
from lakeops.stores.state import TrackingState

MAX_DEPTH = 50


def parse_as_of(value: str | int | None) -> int | None:
    """An ``as_of`` time as microseconds: epoch milliseconds, or an ISO-8601 time (UTC if no zone).

    Raises:
        InvalidArgumentError: the value is neither.
    """
    if value is None or value == "":
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return int(value) * 1000
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"Invalid as_of {value!r}: give epoch milliseconds or an ISO-8601 time such as 2026-03-01T00:00:00Z"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat().replace("+00:00", "Z")


class LineageService:
    """Lineage queries over the in-memory graph."""

    def __init__(self, store: IcebergStore, *, clock_us: Callable[[], int] = now_us) -> None:
        self.store = store
        self.clock_us = clock_us

    def add_edges(self, edges: Sequence[LineageEdge], *, actor: str | None = None) -> int:
        """Record edges (those already known are skipped). Returns how many were new."""
        added = 0

        def build(state: TrackingState) -> dict[str, pa.RecordBatch]:
            nonlocal added
            fresh = new_edges(state, edges)
            added = len(fresh)
            return {LINEAGE_EDGES.name: lineage_edge_rows(fresh, actor=actor, created_at_us=self.clock_us())}

        self.store.write(build)
        return added

    def query(
        self,
        kind: str,
        node_id: str,
        *,
        direction: Direction | str = Direction.UPSTREAM,
        depth: int = 5,
        as_of: str | int | None = None,
    ) -> dict[str, Any]:
        """Nodes and edges up to ``depth`` hops up- or downstream of one node, as of a time.

        Raises:
            InvalidArgumentError: unknown kind or direction, depth out of range, bad ``as_of``.
            NotFoundError: the node is a run or dataset version that does not exist.
        """
        if kind not in set(NodeKind):
            raise InvalidArgumentError(f"Invalid node kind {kind!r}: one of {', '.join(NodeKind)}")
        if direction not in set(Direction):
            raise InvalidArgumentError(f"Invalid direction {direction!r}: upstream or downstream")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
            raise InvalidArgumentError(f"Invalid depth {depth!r}: an integer from 1 to {MAX_DEPTH}")
        cutoff = parse_as_of(as_of)
        state = self.store.state
        graph = state.lineage
        root: Node = (str(kind), node_id)
        if root not in graph.upstream and root not in graph.downstream and not self._exists(state, root):
            raise NotFoundError(f"No {kind} {node_id!r} in the lineage graph", details={"kind": kind, "id": node_id})
        adjacency = graph.upstream if direction == Direction.UPSTREAM else graph.downstream
        distance: dict[Node, int] = {root: 0}
        found: list[tuple[Node, EdgeState]] = []
        frontier = [root]
        for hop in range(1, depth + 1):
            following: list[Node] = []
            for node in frontier:
                for edge in adjacency.get(node, ()):
                    if cutoff is not None and edge.created_at_us > cutoff:
                        continue
                    found.append((node, edge))
                    if edge.other not in distance:
                        distance[edge.other] = hop
                        following.append(edge.other)
            if not following:
                break
            frontier = following
        upstream = direction == Direction.UPSTREAM
        return {
            "root": {"kind": root[0], "id": root[1]},
            "direction": str(direction),
            "depth": depth,
            "as_of": None if cutoff is None else _iso(cutoff),
            "nodes": [
                {"kind": n[0], "id": n[1], "distance": d, **self._describe(state, n)} for n, d in distance.items()
            ],
            "edges": [
                {
                    "source": {"kind": (e.other if upstream else n)[0], "id": (e.other if upstream else n)[1]},
                    "target": {"kind": (n if upstream else e.other)[0], "id": (n if upstream else e.other)[1]},
                    "relation": e.relation,
                    "origin": e.origin,
                    "created_at": _iso(e.created_at_us),
                }
                for n, e in found
            ],
        }

    def neighbours(self, node: Node, *, direction: Direction, relation: str | None = None) -> list[Node]:
        """The nodes one hop away (current graph)."""
        graph = self.store.state.lineage
        adjacency = graph.upstream if direction == Direction.UPSTREAM else graph.downstream
        return [e.other for e in adjacency.get(node, ()) if relation is None or e.relation == relation]

    @staticmethod
    def _exists(state: TrackingState, node: Node) -> bool:
        kind, node_id = node
        if kind == NodeKind.RUN:
            return node_id in state.runs
        if kind == NodeKind.DATASET_VERSION:
            return node_id in state.lineage.dataset_versions
        if kind == NodeKind.LOGGED_MODEL:
            return node_id in state.logged_models
        return kind in (NodeKind.MODEL_VERSION, NodeKind.DEPLOYMENT, NodeKind.JOB)

    @staticmethod
    def _describe(state: TrackingState, node: Node) -> dict[str, Any]:
        kind, node_id = node
        if kind == NodeKind.DATASET_VERSION:
            version = state.lineage.dataset_versions.get(node_id)
            if version is not None:
                return {"name": version.dataset_name, "digest": version.digest}
        elif kind == NodeKind.RUN:
            run = state.runs.get(node_id)
            if run is not None:
                return {"name": run.run_name, "experiment_id": run.experiment_id, "status": run.status}
        elif kind == NodeKind.LOGGED_MODEL:
            model = state.logged_models.get(node_id)
            if model is not None:
                return {"name": model.name}
        return {}
