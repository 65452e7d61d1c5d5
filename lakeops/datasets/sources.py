"""The sources a dataset version can be logged from, each with its digest rule:

- a DataFrame (polars or pandas): written as Parquet to the artifact store under
  ``datasets/<version id>/data.parquet``; the digest is the sha256 of its Arrow IPC stream;
- a file or folder already in the artifact store: the digest is the file's sha256, or for a
  folder the sha256 of its sorted ``path<TAB>sha256`` lines; Parquet and CSV files are profiled;
- data already in the object store (``s3://``), by reference: the digest is that of its listing;
- an Iceberg table at a snapshot: the digest is ``snapshot:<id>``.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError

from lakeops.datasets.profiling import (
    MAX_PROFILED_BYTES,
    arrow_schema_json,
    ipc_digest,
    parse_tabular,
    profile_table,
    table_from_frame,
)
from lakeops.datasets.versions import DATASET_PREFIX, DatasetVersions, validate_dataset_name
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.lineage.edges import dataset_version_id


class SourcesMixin(DatasetVersions):
    """Log a version from each source: a DataFrame, an artifact file or folder, an s3:// location, an Iceberg table."""

    def log_dataframe(
        self, name: str, frame: Any, *, run_id: str | None = None, direction: str = "input"
    ) -> dict[str, Any]:
        """Log a polars/pandas DataFrame (or Arrow table); lakeops stores it as Parquet."""
        name = validate_dataset_name(name)
        table = table_from_frame(frame)
        digest = ipc_digest(table)
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

    def _files_under(self, path: str) -> list[tuple[str, str, int]]:
        clean = path.strip("/")
        versions = self.store.state.artifact_versions
        found = []
        for p, history in list(versions.items()):
            if (p == clean or p.startswith(clean + "/")) and not history[-1].is_deleted:
                found.append((p, history[-1].sha256, history[-1].size_bytes))
        return sorted(found)

    def _profile_file(
        self, path: str, size: int
    ) -> tuple[list[dict[str, Any]] | None, int | None, dict[str, Any] | None]:
        if size > MAX_PROFILED_BYTES or not path.lower().endswith((".parquet", ".csv")):
            return None, None, None
        table = parse_tabular(path, self._read_bytes(path))
        if table is None:
            return None, None, None
        return arrow_schema_json(table.schema), table.num_rows, profile_table(table)
