"""Datasets as versioned objects: content digest, schema, row count and profile, linked to runs.

A dataset version is identified by its name and content digest, so the same content logged
twice is one version. Three sources:

- a DataFrame (polars or pandas): lakeops writes it as Parquet to the artifact store under
  ``datasets/<name>/<digest>.parquet``; the digest is the sha256 of its Arrow IPC stream;
- a file or folder already in the artifact store: the digest is the file's sha256, or for a
  folder the sha256 of its sorted ``path<TAB>sha256`` lines; Parquet and CSV files are profiled;
- an Iceberg table at a snapshot: the digest is ``snapshot:<id>``.

MLflow's ``log_input`` lands here too (``mlflow_io_rows``, called by the tracking service).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError

from catalog.tables import DATASET_VERSIONS, LINEAGE_EDGES, RUN_IO
from lakeops.actor import ActorField
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.services.artifacts import ArtifactService
from lakeops.services.lineage import (
    LineageEdge,
    NodeKind,
    Relation,
    dataset_version_id,
    lineage_edge_rows,
    new_edges,
    now_us,
)
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.lineage_state import DatasetVersionState
from lakeops.stores.state import TrackingState

MAX_NAME_LENGTH = 500
MAX_PROFILED_BYTES = 256 * 1024 * 1024
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


def arrow_schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    """A schema as a JSON-able list of columns."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def profile_table(table: pa.Table) -> dict[str, Any]:
    """Per-column statistics: nulls, and min/max/mean for numbers or distinct count for the rest."""
    columns: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        stats: dict[str, Any] = {"null_count": column.null_count}
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            if column.null_count < len(column):
                minmax = pc.min_max(column).as_py()
                stats.update(min=minmax["min"], max=minmax["max"], mean=pc.mean(column).as_py())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
            stats["distinct_count"] = pc.count_distinct(column).as_py()
        columns[name] = stats
    return {"row_count": table.num_rows, "columns": columns}


def version_entity(v: DatasetVersionState) -> dict[str, Any]:
    """A dataset version as JSON."""
    out = asdict(v)
    out["created_at"] = out.pop("created_at_us") // 1000
    return out


def table_from_frame(frame: Any) -> pa.Table:
    """A polars or pandas DataFrame (or an Arrow table) as an Arrow table."""
    if isinstance(frame, pa.Table):
        return frame
    to_arrow = getattr(frame, "to_arrow", None)
    if callable(to_arrow):  # polars
        table = to_arrow()
        if isinstance(table, pa.Table):
            return table
    if type(frame).__module__.startswith("pandas"):
        return pa.Table.from_pandas(frame, preserve_index=False)
    raise InvalidArgumentError(f"Cannot log a {type(frame).__name__} as a dataset: give a polars or pandas DataFrame")


def _ipc_digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


class DatasetService:
    """Log dataset versions and link them to runs."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(self, store: IcebergStore, artifacts: ArtifactService, *, actor: str | None = None) -> None:
        self.store = store
        self.artifacts = artifacts
        self.actor = actor or artifacts.actor

    # -- logging -----------------------------------------------------------------------------

    def log_dataframe(
        self, name: str, frame: Any, *, run_id: str | None = None, direction: str = "input"
    ) -> dict[str, Any]:
        """Log a polars/pandas DataFrame (or Arrow table); lakeops stores it as Parquet."""
        name = validate_dataset_name(name)
        table = table_from_frame(frame)
        digest = _ipc_digest(table)
        version_id = dataset_version_id(name, digest)
        key = f"{DATASET_PREFIX}/{version_id}/data.parquet"
        if version_id not in self.store.state.lineage.dataset_versions:
            buffer = io.BytesIO()
            pq.write_table(table, buffer, compression="zstd")
            stored = self.artifacts.upload_bytes(key, buffer.getvalue())
            size = stored.size_bytes
        else:
            size = self.store.state.lineage.dataset_versions[version_id].size_bytes or 0
        return self._log(
            name,
            digest=digest,
            digest_kind="sha256",
            source_type="dataframe",
            source=key,
            schema=arrow_schema_json(table.schema),
            row_count=table.num_rows,
            size_bytes=size,
            profile=profile_table(table),
            run_id=run_id,
            direction=direction,
        )

    def log_artifact(
        self, name: str, path: str, *, run_id: str | None = None, direction: str = "input"
    ) -> dict[str, Any]:
        """Log a file or folder of the artifact store as a dataset version."""
        name = validate_dataset_name(name)
        listing = self._files_under(path)
        if not listing:
            raise NotFoundError(f"No artifact file or folder at {path!r}", details={"path": path})
        if len(listing) == 1 and listing[0][0] == path.strip("/"):
            file_path, sha, size = listing[0]
            digest, source_type = sha, "file"
            schema, rows, profile = self._profile_file(file_path, size)
        else:
            lines = "".join(f"{p}\t{s}\n" for p, s, _n in listing)
            digest, source_type = hashlib.sha256(lines.encode()).hexdigest(), "folder"
            size = sum(n for _p, _s, n in listing)
            schema, rows = None, None
            profile = {"file_count": len(listing), "files": {p: n for p, _s, n in listing[:1000]}}
        return self._log(
            name,
            digest=digest,
            digest_kind="sha256",
            source_type=source_type,
            source=path.strip("/"),
            schema=schema,
            row_count=rows,
            size_bytes=size,
            profile=profile,
            run_id=run_id,
            direction=direction,
        )

    def log_location(
        self, name: str, uri: str, *, run_id: str | None = None, direction: str = "input"
    ) -> dict[str, Any]:
        """Register data already in the object store (``s3://bucket/prefix``: a Parquet directory, or
        any files) as a dataset version, by reference: nothing is copied.

        The digest is the sha256 of the listing (each file's path, size and modification time), so
        the same files are the same version and a rewritten file makes a new one. Parquet files give
        the schema and the row count from their footers, without reading the data.

        Raises:
            InvalidArgumentError: not an ``s3://`` URI, or the lake's storage is not S3.
            NotFoundError: no file under the URI.
        """
        import pyarrow.dataset as ds
        from pyarrow.fs import FileSelector, FileType

        name = validate_dataset_name(name)
        if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) <= len("s3://"):
            raise InvalidArgumentError(f"Invalid location {str(uri)[:100]!r}: an s3://bucket/prefix URI")
        filesystem = self.store.settings.storage.open_filesystem()
        if filesystem is None:
            raise InvalidArgumentError(
                "This lake keeps its data on local disk: register s3:// data on a lake with S3 storage, "
                "or log local files with log_dataset(path)"
            )
        base = uri[len("s3://") :].rstrip("/")
        try:
            found = filesystem.get_file_info(FileSelector(base, recursive=True, allow_not_found=True))
            if not found:
                single = filesystem.get_file_info(base)
                found = [single] if single.type == FileType.File else []
        except OSError as exc:
            raise InvalidArgumentError(f"Cannot list {uri}: {exc}") from exc
        files = sorted((f for f in found if f.type == FileType.File), key=lambda f: f.path)
        if not files:
            raise NotFoundError(f"No file under {uri}", details={"uri": uri})
        lines = "".join(f"{f.path[len(base) :].lstrip('/')}\t{f.size}\t{f.mtime_ns}\n" for f in files)
        parquet = [f.path for f in files if f.path.endswith(".parquet")]
        schema, rows = None, None
        if parquet:
            data = ds.dataset(parquet, filesystem=filesystem, format="parquet")
            schema, rows = arrow_schema_json(data.schema), int(data.count_rows())
        return self._log(
            name,
            digest=hashlib.sha256(lines.encode()).hexdigest(),
            digest_kind="listing",
            source_type="location",
            source=uri.rstrip("/"),
            schema=schema,
            row_count=rows,
            size_bytes=sum(int(f.size or 0) for f in files),
            profile={"file_count": len(files), "parquet_files": len(parquet)},
            run_id=run_id,
            direction=direction,
        )

    def log_iceberg_table(
        self,
        name: str,
        table: str,
        *,
        snapshot_id: int | None = None,
        run_id: str | None = None,
        direction: str = "input",
    ) -> dict[str, Any]:
        """Log an Iceberg table of the lake's catalog (``namespace.table``) at a snapshot (default: current)."""
        name = validate_dataset_name(name)
        try:
            handle = self.store.catalog.load_table(table)
        except NoSuchTableError as exc:
            raise NotFoundError(f"No Iceberg table {table!r}", details={"table": table}) from exc
        except ValueError as exc:
            raise InvalidArgumentError(f"Invalid Iceberg table identifier {table!r}: {exc}") from exc
        snapshot = (
            handle.metadata.current_snapshot() if snapshot_id is None else handle.metadata.snapshot_by_id(snapshot_id)
        )
        if snapshot is None:
            raise NotFoundError(f"Iceberg table {table!r} has no snapshot {snapshot_id or '(empty table)'}")
        summary = snapshot.summary.additional_properties if snapshot.summary is not None else {}
        schema = handle.metadata.schema_by_id(snapshot.schema_id) if snapshot.schema_id is not None else None
        arrow = handle.scan(snapshot_id=snapshot.snapshot_id).to_arrow()
        return self._log(
            name,
            digest=f"snapshot:{snapshot.snapshot_id}",
            digest_kind="iceberg_snapshot",
            source_type="iceberg",
            source=f"{table}@{snapshot.snapshot_id}",
            schema=[
                {"name": f.name, "type": str(f.field_type), "nullable": not f.required}
                for f in (schema or handle.schema()).fields
            ],
            row_count=int(summary.get("total-records", arrow.num_rows)),
            size_bytes=int(summary["total-files-size"]) if "total-files-size" in summary else None,
            profile=profile_table(arrow),
            run_id=run_id,
            direction=direction,
        )

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
            parsed = _parse_tabular(version.source, data)
            if parsed is not None:
                return parsed
        raise InvalidArgumentError(
            f"Dataset version {version_id} ({version.source_type} {version.source!r}) holds no table lakeops can read"
        )

    # -- internals ---------------------------------------------------------------------------

    def _files_under(self, path: str) -> list[tuple[str, str, int]]:
        clean = path.strip("/")
        versions = self.store.state.artifact_versions
        found = []
        for p, history in list(versions.items()):
            if (p == clean or p.startswith(clean + "/")) and not history[-1].is_deleted:
                found.append((p, history[-1].sha256, history[-1].size_bytes))
        return sorted(found)

    def _read_bytes(self, path: str) -> bytes:
        _version, chunks = self.artifacts.open(path)
        return b"".join(chunks)

    def _profile_file(
        self, path: str, size: int
    ) -> tuple[list[dict[str, Any]] | None, int | None, dict[str, Any] | None]:
        if size > MAX_PROFILED_BYTES or not path.lower().endswith((".parquet", ".csv")):
            return None, None, None
        table = _parse_tabular(path, self._read_bytes(path))
        if table is None:
            return None, None, None
        return arrow_schema_json(table.schema), table.num_rows, profile_table(table)

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
                        version = known or _state_of(row)
                        rows[RUN_IO.name] = _run_io_row(run_id, version)
            return rows

        self.store.write(build)


def _state_of(row: Mapping[str, Any]) -> DatasetVersionState:
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


def _run_io_row(run_id: str, version: DatasetVersionState) -> pa.RecordBatch:
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


def _parse_tabular(path: str, data: bytes) -> pa.Table | None:
    lower = path.lower()
    try:
        if lower.endswith(".parquet"):
            return pq.read_table(io.BytesIO(data))
        if lower.endswith(".csv"):
            import pyarrow.csv as pacsv

            return pacsv.read_csv(io.BytesIO(data))
    except (pa.ArrowInvalid, csv.Error) as exc:
        raise InvalidArgumentError(f"Cannot read {path!r} as a table: {exc}") from exc
    return None
