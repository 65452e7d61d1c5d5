"""The lineage vocabulary and its write side: node kinds, relations, edges and their rows.

Every edge is a row of the append-only ``lineage_edges`` table. Any aggregate adds edges in the
same atomic ``store.write(build)`` as its own change rows, through ``lineage_edge_rows``::

    def build(state):
        return {
            MODEL_VERSION_CHANGES.name: ...,
            LINEAGE_EDGES.name: lineage_edge_rows(
                [LineageEdge(NodeKind.RUN, run_id, NodeKind.MODEL_VERSION, f"{name}/{version}", Relation.PRODUCED)],
                actor=actor,
            ),
        }

Edges point downstream (from what was used to what was made).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa

from catalog.tables import LINEAGE_EDGES
from lakeops.errors import InvalidArgumentError
from lakeops.stores.lineage_state import Node
from lakeops.stores.state import TrackingState


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
