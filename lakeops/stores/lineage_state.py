"""The in-memory state of datasets, lineage and data quality, folded from their Iceberg tables.

The lineage graph is kept as two adjacency maps (node -> edges out, node -> edges in), each edge
with its creation time, so an N-hop walk touches only the edges it follows and ``as_of`` is a
comparison per edge. The same (source, target, relation) asserted twice is one edge: the first
assertion's time counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from lakeops.stores.epochs import epoch_ints

Node = tuple[str, str]  # (kind, id)


@dataclass(frozen=True, slots=True)
class DatasetVersionState:
    """One version of a dataset: immutable once logged."""

    dataset_version_id: str
    dataset_name: str
    digest: str
    digest_kind: str
    source_type: str
    source: str | None
    schema: list[dict[str, Any]] | None
    row_count: int | None
    size_bytes: int | None
    profile: dict[str, Any] | None
    created_at_us: int
    actor: str | None


@dataclass(frozen=True, slots=True)
class EdgeState:
    """One lineage edge, seen from one of its ends."""

    other: Node
    relation: str
    origin: str
    created_at_us: int


@dataclass(frozen=True, slots=True)
class SuiteState:
    """The current definition of one expectation suite attached to a dataset name."""

    dataset_name: str
    suite_name: str
    expectations: list[dict[str, Any]]
    changed_at_us: int


@dataclass(frozen=True, slots=True)
class ValidationState:
    """One validation of a dataset version against a suite."""

    validation_id: str
    dataset_version_id: str
    dataset_name: str
    suite_name: str
    is_success: bool
    statistics: dict[str, Any]
    results: list[dict[str, Any]]
    validated_at_us: int
    actor: str | None


@dataclass
class LineageState:
    """Dataset versions, the lineage graph, expectation suites and validations."""

    dataset_versions: dict[str, DatasetVersionState] = field(default_factory=dict)
    versions_by_name: dict[str, list[str]] = field(default_factory=dict)
    downstream: dict[Node, list[EdgeState]] = field(default_factory=dict)
    upstream: dict[Node, list[EdgeState]] = field(default_factory=dict)
    edge_keys: set[tuple[Node, Node, str]] = field(default_factory=set)
    edge_count: int = 0
    # OpenLineage run id -> (event type, event time in us) of the latest event received.
    openlineage_runs: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    suites: dict[str, dict[str, SuiteState]] = field(default_factory=dict)
    validations: dict[str, list[ValidationState]] = field(default_factory=dict)

    def has_edge(self, source: Node, target: Node, relation: str) -> bool:
        """Whether this exact edge is already recorded."""
        return (source, target, relation) in self.edge_keys

    # -- handlers, one per table ---------------------------------------------------------

    def apply_dataset_versions(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Fold ``dataset_versions`` rows (the first row per id wins: versions are immutable)."""
        cols = rows.to_pydict()
        created = epoch_ints(rows.column("created_at"), "us", null=0)
        for i, version_id in enumerate(cols["dataset_version_id"]):
            if version_id in self.dataset_versions:
                continue
            version = DatasetVersionState(
                dataset_version_id=version_id,
                dataset_name=cols["dataset_name"][i],
                digest=cols["digest"][i],
                digest_kind=cols["digest_kind"][i],
                source_type=cols["source_type"][i],
                source=cols["source"][i],
                schema=json.loads(cols["schema_json"][i]) if cols["schema_json"][i] else None,
                row_count=cols["row_count"][i],
                size_bytes=cols["size_bytes"][i],
                profile=json.loads(cols["profile_json"][i]) if cols["profile_json"][i] else None,
                created_at_us=created[i],
                actor=cols["actor"][i],
            )
            self.dataset_versions[version_id] = version
            self.versions_by_name.setdefault(version.dataset_name, []).append(version_id)

    def apply_edges(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Fold ``lineage_edges`` rows into the adjacency maps."""
        names = ["source_kind", "source_id", "target_kind", "target_id", "relation", "origin"]
        cols = [rows.column(n).to_pylist() for n in names]
        created = epoch_ints(rows.column("created_at"), "us", null=0)
        downstream, upstream, keys = self.downstream, self.upstream, self.edge_keys
        for source_kind, source_id, target_kind, target_id, relation, origin, at in zip(*cols, created, strict=True):
            source: Node = (source_kind, source_id)
            target: Node = (target_kind, target_id)
            key = (source, target, relation)
            if key in keys:
                continue
            keys.add(key)
            downstream.setdefault(source, []).append(EdgeState(target, relation, origin, at))
            upstream.setdefault(target, []).append(EdgeState(source, relation, origin, at))
            self.edge_count += 1

    def apply_openlineage_events(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Remember the latest event type per OpenLineage run."""
        run_ids = rows.column("run_id").to_pylist()
        types = rows.column("event_type").to_pylist()
        times = epoch_ints(rows.column("event_time"), "us", null=0)
        for run_id, event_type, at in zip(run_ids, types, times, strict=True):
            known = self.openlineage_runs.get(run_id)
            if known is None or at >= known[1]:
                self.openlineage_runs[run_id] = (event_type, at)

    def apply_suites(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Fold ``expectation_suite_changes`` rows: the latest per (dataset name, suite name)."""
        cols = rows.select(["dataset_name", "suite_name", "expectations_json", "is_deleted"]).to_pydict()
        changed = epoch_ints(rows.column("changed_at"), "us", null=0)
        for i, dataset_name in enumerate(cols["dataset_name"]):
            suites = self.suites.setdefault(dataset_name, {})
            if cols["is_deleted"][i]:
                suites.pop(cols["suite_name"][i], None)
                continue
            suites[cols["suite_name"][i]] = SuiteState(
                dataset_name=dataset_name,
                suite_name=cols["suite_name"][i],
                expectations=json.loads(cols["expectations_json"][i]),
                changed_at_us=changed[i],
            )

    def apply_validations(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Fold ``validation_results`` rows, kept per dataset version in time order."""
        cols = rows.to_pydict()
        validated = epoch_ints(rows.column("validated_at"), "us", null=0)
        for i, validation_id in enumerate(cols["validation_id"]):
            result = ValidationState(
                validation_id=validation_id,
                dataset_version_id=cols["dataset_version_id"][i],
                dataset_name=cols["dataset_name"][i],
                suite_name=cols["suite_name"][i],
                is_success=cols["is_success"][i],
                statistics=json.loads(cols["statistics_json"][i]),
                results=json.loads(cols["results_json"][i]),
                validated_at_us=validated[i],
                actor=cols["actor"][i],
            )
            found = self.validations.setdefault(result.dataset_version_id, [])
            if any(v.validation_id == validation_id for v in found):
                continue
            found.append(result)
            found.sort(key=lambda v: v.validated_at_us)
