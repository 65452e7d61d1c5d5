"""Lineage: the edges between dataset versions, runs, models and deployments, and their queries.

Every edge is a row of the append-only ``lineage_edges`` table. Any service adds edges in the
same atomic ``store.write(build)`` as its own change rows, through ``lineage_edge_rows``::

    def build(state):
        return {
            MODEL_VERSION_CHANGES.name: ...,
            LINEAGE_EDGES.name: lineage_edge_rows(
                [LineageEdge(NodeKind.RUN, run_id, NodeKind.MODEL_VERSION, f"{name}/{version}", Relation.PRODUCED)],
                actor=actor,
            ),
        }

Edges point downstream (from what was used to what was made). Queries walk the in-memory
adjacency index of ``LineageState`` up or down to N hops, optionally ``as_of`` a past time
(edges recorded later are ignored), so a 5-hop walk over 100,000 edges costs only the edges it
follows.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa

from catalog.tables import LINEAGE_EDGES
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.stores.iceberg import IcebergStore
from lakeops.stores.lineage_state import EdgeState, Node
from lakeops.stores.state import TrackingState

MAX_DEPTH = 50


class NodeKind(StrEnum):
    """What a lineage node is."""

    DATASET_VERSION = "dataset_version"
    RUN = "run"
    LOGGED_MODEL = "logged_model"
    MODEL_VERSION = "model_version"
    DEPLOYMENT = "deployment"
    JOB = "job"


class Relation(StrEnum):
    """What an edge means, read from source to target."""

    INPUT = "input"  # dataset_version -> run: the run read it
    OUTPUT = "output"  # run -> dataset_version: the run wrote it
    PARENT = "parent"  # run -> run: the source is the parent run of the target
    EXECUTES = "executes"  # job -> run: the run is an execution of the job (OpenLineage)
    PRODUCED = "produced"  # run -> model_version / logged_model: the run made the model
    DEPLOYED = "deployed"  # model_version -> deployment


class Direction(StrEnum):
    """Which way a lineage query walks."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


@dataclass(frozen=True)
class LineageEdge:
    """One edge to record: ``source`` feeds ``target``."""

    source_kind: str
    source_id: str
    target_kind: str
    target_id: str
    relation: str
    origin: str = "lakeops"
    properties: dict[str, Any] | None = None


def model_version_node(name: str, version: int | str) -> str:
    """The lineage id of a registered model version: ``<name>/<version>``, the name it had when the
    edge was recorded (the registry records the edges when a version is created or deployed)."""
    return f"{name}/{version}"


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return int(time.time() * 1_000_000)


def lineage_edge_rows(
    edges: Iterable[LineageEdge], *, actor: str | None, created_at_us: int | None = None
) -> pa.RecordBatch:
    """Rows for the ``lineage_edges`` table, to return from a ``store.write`` build function.

    Raises:
        InvalidArgumentError: a kind or id is empty.
    """
    edges = list(edges)
    at = created_at_us if created_at_us is not None else now_us()
    for e in edges:
        if not (e.source_kind and e.source_id and e.target_kind and e.target_id and e.relation):
            raise InvalidArgumentError(f"Invalid lineage edge {e!r}: kinds, ids and relation must be non-empty")
    columns = {
        "source_kind": [str(e.source_kind) for e in edges],
        "source_id": [e.source_id for e in edges],
        "target_kind": [str(e.target_kind) for e in edges],
        "target_id": [e.target_id for e in edges],
        "relation": [str(e.relation) for e in edges],
        "origin": [e.origin for e in edges],
        "properties_json": [json.dumps(e.properties, sort_keys=True) if e.properties else None for e in edges],
        "created_at": [at] * len(edges),
        "actor": [actor] * len(edges),
    }
    return pa.RecordBatch.from_pydict(columns, schema=LINEAGE_EDGES.arrow_schema)


def new_edges(state: TrackingState, edges: Iterable[LineageEdge]) -> list[LineageEdge]:
    """The edges not yet recorded (call inside a build function, under the store's lock)."""
    seen: set[tuple[Node, Node, str]] = set()
    fresh: list[LineageEdge] = []
    for e in edges:
        key = ((str(e.source_kind), e.source_id), (str(e.target_kind), e.target_id), str(e.relation))
        if key in seen or state.lineage.has_edge(*key):
            continue
        seen.add(key)
        fresh.append(e)
    return fresh


def dataset_version_id(name: str, digest: str) -> str:
    """The id of a dataset version: the same name and content digest give the same id."""
    return hashlib.sha256(f"{name}\x00{digest}".encode()).hexdigest()[:32]


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
