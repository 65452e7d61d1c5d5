"""Where the lake's tables stand, read without pyiceberg: the cheap, read-only path of short commands.

``import pyiceberg.catalog`` alone costs about a CPU-second (pydantic models, sqlalchemy, pyarrow's
dataset module and pandas), more than a whole small ``lakeops sql`` query. What DuckDB needs to
read a table is its current metadata file and what that file says (location, snapshots). With
pyiceberg's SQL catalog on SQLite, the pointer is one row of ``iceberg_tables`` (the Iceberg JDBC
catalog layout, which Spark and Trino share), and the metadata file is JSON (the Iceberg table
spec). Both formats are specified and stable, so they are read here with the standard library
(and pyarrow's S3 filesystem for ``s3://``). With the object-store catalog, the pointers are
versioned JSON objects in the warehouse, read with one listing (``catalog/versions.py``).
Nothing here writes. Other catalogs (REST, PostgreSQL) go through pyiceberg; see ``state_of_table``.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import urlparse

from catalog.versions import OBJECT_CATALOG_IMPL, Versions, VersionStoreError, open_version_store, read_table_pointers

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from catalog.views import S3Access

SQLITE_PREFIX = "sqlite:///"


class SnapshotRef(NamedTuple):
    """One snapshot of a table, as much as time travel needs."""

    snapshot_id: int
    parent_snapshot_id: int | None
    timestamp_ms: int


@dataclass(frozen=True)
class TableState:
    """One table at one metadata file: where it lives and which snapshots it has."""

    name: str
    metadata_location: str
    location: str
    current_snapshot_id: int | None
    snapshots: tuple[SnapshotRef, ...]


def state_of_table(name: str, table: Table) -> TableState:
    """The state of a table pyiceberg has loaded."""
    metadata = table.metadata
    current = metadata.current_snapshot()
    return TableState(
        name=name,
        metadata_location=table.metadata_location,
        location=table.location(),
        current_snapshot_id=current.snapshot_id if current is not None else None,
        snapshots=tuple(SnapshotRef(s.snapshot_id, s.parent_snapshot_id, s.timestamp_ms) for s in metadata.snapshots),
    )


def sqlite_catalog_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///<path>`` catalog URI; None for any other URI."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    path = uri[len(SQLITE_PREFIX) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def read_sqlite_pointers(path: Path, *, catalog_name: str, namespace: str) -> dict[str, str]:
    """Table name -> current metadata location of every table in ``namespace`` of a SQLite catalog.

    Opened read-only; an empty answer if the file has no catalog tables yet.
    """
    con = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT table_name, metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ?",
            (catalog_name, namespace),
        ).fetchall()
    except sqlite3.OperationalError:  # no iceberg_tables: nobody has created the catalog yet
        return {}
    finally:
        con.close()
    return {str(name): str(location) for name, location in rows if location}


class PointerReadError(Exception):
    """The catalog's pointers could not be read (the caller falls back to loading tables)."""


class PointerReader(Protocol):
    """Reads every table's current metadata location of a namespace in one cheap request."""

    def read(self, namespace: str) -> dict[str, str]:
        """Table name -> current metadata location.

        Raises:
            PointerReadError: the catalog could not be read.
        """
        ...


class _SqlitePointers:
    def __init__(self, path: Path, catalog_name: str) -> None:
        self.path = path
        self.catalog_name = catalog_name

    def read(self, namespace: str) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        try:
            return read_sqlite_pointers(self.path, catalog_name=self.catalog_name, namespace=namespace)
        except sqlite3.Error as exc:
            raise PointerReadError(str(exc)) from exc


class _ObjectPointers:
    def __init__(self, versions: Versions) -> None:
        self.versions = versions

    def read(self, namespace: str) -> dict[str, str]:
        try:
            return read_table_pointers(self.versions, tuple(namespace.split(".")))
        except (VersionStoreError, ValueError) as exc:
            raise PointerReadError(str(exc)) from exc


def open_pointer_reader(properties: Mapping[str, str], *, catalog_name: str) -> PointerReader | None:
    """A cheap pointer reader for the catalog these pyiceberg properties open; None where there is none."""
    if properties.get("py-catalog-impl") == OBJECT_CATALOG_IMPL:
        return _ObjectPointers(Versions(open_version_store(properties["warehouse"], properties)))
    if properties.get("type") == "sql" and (path := sqlite_catalog_file(properties.get("uri", ""))) is not None:
        return _SqlitePointers(path, catalog_name)
    return None


def read_table_state(name: str, metadata_location: str, *, s3: S3Access | None) -> TableState:
    """Read a table's metadata file (``file://`` or ``s3://``) and say where it stands."""
    metadata = _read_json(metadata_location, s3=s3)
    current = metadata.get("current-snapshot-id")
    snapshots = tuple(
        SnapshotRef(int(s["snapshot-id"]), s.get("parent-snapshot-id"), int(s["timestamp-ms"]))
        for s in metadata.get("snapshots") or []
    )
    return TableState(
        name=name,
        metadata_location=metadata_location,
        location=str(metadata["location"]),
        current_snapshot_id=int(current) if current is not None and int(current) >= 0 else None,
        snapshots=snapshots,
    )


def _read_json(location: str, *, s3: S3Access | None) -> dict[str, Any]:
    url = urlparse(location)
    if url.scheme in ("", "file"):
        data = Path(url.path).read_bytes()
    elif url.scheme in ("s3", "s3a"):
        data = _s3_filesystem(s3).open_input_stream(f"{url.netloc}{url.path}").read()
    else:
        raise ValueError(f"cannot read {location}: only file:// and s3:// are read without pyiceberg")
    if location.endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    found: dict[str, Any] = json.loads(data)
    return found


def _s3_filesystem(s3: S3Access | None) -> Any:
    from pyarrow import fs  # only for s3:// lakes

    if s3 is None:
        return fs.S3FileSystem()
    endpoint = urlparse(s3.endpoint) if s3.endpoint else None
    return fs.S3FileSystem(
        access_key=s3.access_key_id,
        secret_key=s3.secret_access_key,
        region=s3.region,
        endpoint_override=(endpoint.netloc or endpoint.path) if endpoint else None,
        scheme=endpoint.scheme if endpoint and endpoint.scheme else "https",
        force_virtual_addressing=not s3.path_style,
    )
