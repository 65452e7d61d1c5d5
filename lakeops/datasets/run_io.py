"""How dataset versions attach to runs in MLflow's terms: ``run_io`` rows and ``log_input``.

A native dataset input is mirrored as a ``run_io`` row so MLflow clients see it in
``run.inputs``; MLflow's ``log_input`` (``mlflow_io_rows``, called inside the tracking service's
build function) becomes dataset versions and lineage edges in the same atomic write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from catalog.tables import DATASET_VERSIONS, LINEAGE_EDGES, RUN_IO
from lakeops.lineage.edges import (
    LineageEdge,
    NodeKind,
    Relation,
    dataset_version_id,
    lineage_edge_rows,
    new_edges,
    now_us,
)
from lakeops.stores.iceberg import Rows
from lakeops.stores.lineage_state import DatasetVersionState
from lakeops.stores.state import TrackingState


def dataset_version_state(row: Mapping[str, Any]) -> DatasetVersionState:
    return DatasetVersionState(
        dataset_version_id=row["dataset_version_id"],
        dataset_name=row["dataset_name"],
        digest=row["digest"],
        digest_kind=row["digest_kind"],
        source_type=row["source_type"],
        source=row["source"],
        schema=json.loads(row["schema_json"]) if row["schema_json"] else None,
        row_count=row["row_count"],
        size_bytes=row["size_bytes"],
        profile=json.loads(row["profile_json"]) if row["profile_json"] else None,
        created_at_us=row["created_at"],
        actor=row["actor"],
    )


def run_io_row(run_id: str, version: DatasetVersionState) -> pa.RecordBatch:
    columns = {
        "run_id": run_id,
        "direction": "input",
        "kind": "dataset",
        "dataset_name": version.dataset_name,
        "dataset_digest": version.digest,
        "source_type": version.source_type,
        "source": json.dumps({"uri": version.source}),
        "dataset_schema": json.dumps({"columns": version.schema}) if version.schema is not None else None,
        "profile": json.dumps({"num_rows": version.row_count}) if version.row_count is not None else None,
        "tags_json": json.dumps({"lakeops.dataset_version_id": version.dataset_version_id}),
        "logged_at": now_us(),
    }
    return pa.RecordBatch.from_pylist([columns], schema=RUN_IO.arrow_schema)


def mlflow_io_rows(
    state: TrackingState,
    run_id: str,
    *,
    datasets: Sequence[Mapping[str, Any]] = (),
    model_inputs: Sequence[str] = (),
    model_outputs: Sequence[str] = (),
    actor: str | None,
    at_us: int,
) -> Rows:
    """Dataset versions and lineage edges for MLflow's run inputs and outputs.

    ``datasets`` are ``log_input`` datasets (name, digest, source, schema, profile): each becomes a
    dataset version and an input edge. Logged models become ``logged_model -input-> run`` and
    ``run -produced-> logged_model`` edges. Called inside the tracking service's build function, so
    the run links, the versions and the edges commit together; what is already known is not
    written again.
    """
    versions: list[dict[str, Any]] = []
    edges: list[LineageEdge] = []
    for d in datasets:
        name, digest = str(d["name"]), str(d["digest"])
        version_id = dataset_version_id(name, digest)
        if version_id not in state.lineage.dataset_versions and all(
            v["dataset_version_id"] != version_id for v in versions
        ):
            profile = _json_or_text(d.get("profile"))
            schema = _json_or_text(d.get("schema"))
            versions.append(
                {
                    "dataset_version_id": version_id,
                    "dataset_name": name,
                    "digest": digest,
                    "digest_kind": "mlflow",
                    "source_type": str(d.get("source_type") or "mlflow"),
                    "source": d.get("source"),
                    "schema_json": json.dumps(schema) if schema is not None else None,
                    "row_count": _num_rows(profile),
                    "size_bytes": None,
                    "profile_json": json.dumps(profile) if profile is not None else None,
                    "created_at": at_us,
                    "actor": actor,
                }
            )
        edges.append(LineageEdge(NodeKind.DATASET_VERSION, version_id, NodeKind.RUN, run_id, Relation.INPUT, "mlflow"))
    edges += [
        LineageEdge(NodeKind.LOGGED_MODEL, m, NodeKind.RUN, run_id, Relation.INPUT, "mlflow") for m in model_inputs
    ]
    edges += [
        LineageEdge(NodeKind.RUN, run_id, NodeKind.LOGGED_MODEL, m, Relation.PRODUCED, "mlflow") for m in model_outputs
    ]
    rows: Rows = {}
    if versions:
        rows[DATASET_VERSIONS.name] = pa.RecordBatch.from_pylist(versions, schema=DATASET_VERSIONS.arrow_schema)
    fresh = new_edges(state, edges)
    if fresh:
        rows[LINEAGE_EDGES.name] = lineage_edge_rows(fresh, actor=actor, created_at_us=at_us)
    return rows


def _json_or_text(value: object) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {"text": value}
    return value


def _num_rows(profile: Any) -> int | None:
    if isinstance(profile, dict):
        for key in ("num_rows", "row_count"):
            if isinstance(profile.get(key), int):
                return int(profile[key])
    return None
