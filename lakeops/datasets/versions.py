"""Dataset versions: record one (the version row, its lineage edge and run link in one write),
link it to a run, and read versions and their data back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from catalog.tables import DATASET_VERSIONS, LINEAGE_EDGES, RUN_IO
from lakeops.actor import ActorField
from lakeops.datasets.profiling import parse_tabular
from lakeops.datasets.run_io import dataset_version_state, run_io_row
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.lineage.edges import (
    LineageEdge,
    NodeKind,
    Relation,
    dataset_version_id,
    lineage_edge_rows,
    new_edges,
    now_us,
)
from lakeops.services.artifacts import ArtifactService
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.lineage_state import DatasetVersionState
from lakeops.stores.state import TrackingState

MAX_NAME_LENGTH = 500
DATASET_PREFIX = "datasets"


def validate_dataset_name(name: object) -> str:
    """A dataset name: non-empty text without control characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("Invalid dataset name: must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH or any(ord(c) < 32 for c in name):
        raise InvalidArgumentError(
            f"Invalid dataset name {name[:40]!r}: at most {MAX_NAME_LENGTH} printable characters"
        )
    return name


def version_entity(v: DatasetVersionState) -> dict[str, Any]:
    """A dataset version as JSON."""
    out = asdict(v)
    out["created_at"] = out.pop("created_at_us") // 1000
    return out


class DatasetVersions:
    """Record dataset versions, link them to runs, and read them back."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(self, store: IcebergStore, artifacts: ArtifactService, *, actor: str | None = None) -> None:
        self.store = store
        self.artifacts = artifacts
        self.actor = actor or artifacts.actor

    def link(self, dataset_version: str, run_id: str, *, direction: str = "input") -> None:
        """Link an existing dataset version to a run as its input or output."""
        self._write({}, dataset_version, run_id, direction)

    # -- reading -----------------------------------------------------------------------------

    def get_version(self, version_id: str) -> dict[str, Any]:
        """One dataset version."""
        version = self.store.state.lineage.dataset_versions.get(version_id)
        if version is None:
            raise NotFoundError(f"No dataset version {version_id!r}", details={"dataset_version_id": version_id})
        return version_entity(version)

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a dataset, oldest first."""
        lineage = self.store.state.lineage
        ids = lineage.versions_by_name.get(name)
        if not ids:
            raise NotFoundError(f"No dataset named {name!r}", details={"name": name})
        return [version_entity(lineage.dataset_versions[i]) for i in ids]

    def list_names(self) -> list[str]:
        """Every dataset name."""
        return sorted(self.store.state.lineage.versions_by_name)

    def read_table(self, version_id: str) -> pa.Table:
        """The data of a version that lakeops can read: a DataFrame it stored, a Parquet/CSV file, an Iceberg snapshot.

        Raises:
            NotFoundError: no such version.
            InvalidArgumentError: the version's data is not readable by lakeops (a folder, an MLflow or
                OpenLineage reference).
        """
        version = self.store.state.lineage.dataset_versions.get(version_id)
        if version is None:
            raise NotFoundError(f"No dataset version {version_id!r}", details={"dataset_version_id": version_id})
        if version.source_type == "iceberg" and version.source:
            table, _, snapshot = version.source.rpartition("@")
            return self.store.catalog.load_table(table).scan(snapshot_id=int(snapshot)).to_arrow()
        if version.source_type == "location" and version.source:
            import pyarrow.dataset as ds

            filesystem = self.store.settings.storage.open_filesystem()
            if filesystem is not None:
                base = version.source[len("s3://") :]
                return ds.dataset(base, filesystem=filesystem, format="parquet").to_table()
        if version.source_type in ("dataframe", "file") and version.source:
            data = self._read_bytes(version.source)
            parsed = parse_tabular(version.source, data)
            if parsed is not None:
                return parsed
        raise InvalidArgumentError(
            f"Dataset version {version_id} ({version.source_type} {version.source!r}) holds no table lakeops can read"
        )

    def _read_bytes(self, path: str) -> bytes:
        _version, chunks = self.artifacts.open(path)
        return b"".join(chunks)

    def _log(
        self,
        name: str,
        *,
        digest: str,
        digest_kind: str,
        source_type: str,
        source: str | None,
        schema: list[dict[str, Any]] | None,
        row_count: int | None,
        size_bytes: int | None,
        profile: dict[str, Any] | None,
        run_id: str | None,
        direction: str,
    ) -> dict[str, Any]:
        version_id = dataset_version_id(name, digest)
        row = {
            "dataset_version_id": version_id,
            "dataset_name": name,
            "digest": digest,
            "digest_kind": digest_kind,
            "source_type": source_type,
            "source": source,
            "schema_json": json.dumps(schema) if schema is not None else None,
            "row_count": row_count,
            "size_bytes": size_bytes,
            "profile_json": json.dumps(profile, default=str) if profile is not None else None,
            "created_at": now_us(),
            "actor": self.actor,
        }
        self._write(row, version_id, run_id, direction)
        return self.get_version(version_id)

    def _write(self, row: Mapping[str, Any], version_id: str, run_id: str | None, direction: str) -> None:
        if direction not in ("input", "output"):
            raise InvalidArgumentError(f"Invalid direction {direction!r}: input or output")

        def build(state: TrackingState) -> Rows:
            rows: Rows = {}
            known = state.lineage.dataset_versions.get(version_id)
            if known is None and not row:
                raise NotFoundError(f"No dataset version {version_id!r}", details={"dataset_version_id": version_id})
            if known is None:
                rows[DATASET_VERSIONS.name] = pa.RecordBatch.from_pylist(
                    [dict(row)], schema=DATASET_VERSIONS.arrow_schema
                )
            if run_id is not None:
                run = state.runs.get(run_id)
                if run is None:
                    raise NotFoundError(f"Run with id={run_id} not found", details={"run_id": run_id})
                edge = (
                    LineageEdge(NodeKind.DATASET_VERSION, version_id, NodeKind.RUN, run_id, Relation.INPUT)
                    if direction == "input"
                    else LineageEdge(NodeKind.RUN, run_id, NodeKind.DATASET_VERSION, version_id, Relation.OUTPUT)
                )
                fresh = new_edges(state, [edge])
                if fresh:
                    rows[LINEAGE_EDGES.name] = lineage_edge_rows(fresh, actor=self.actor)
                    if direction == "input":  # MLflow clients see native dataset inputs in run.inputs
                        version = known or dataset_version_state(row)
                        rows[RUN_IO.name] = run_io_row(run_id, version)
            return rows

        self.store.write(build)
