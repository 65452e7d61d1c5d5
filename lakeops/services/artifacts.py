"""Artifacts as versioned objects: bytes in the object store, every version in Iceberg.

Each upload records path, size, sha256 and the object store's version id in the
``artifact_versions`` table, so an overwritten checkpoint stays retrievable by version.
Uploads arrive as a file already spooled to local disk (hashing on the way), so a large
artifact never has to fit in memory; downloads stream in chunks.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from catalog.objects import ObjectStore
from catalog.tables import ARTIFACT_VERSIONS
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import ArtifactVersionState, TrackingState

MAX_PATH_LENGTH = 1024


class ArtifactVersion(BaseModel):
    """One stored version of an artifact."""

    model_config = ConfigDict(frozen=True)

    path: str
    version_id: str
    size_bytes: int
    sha256: str
    created_at: int
    is_current: bool = False


class ArtifactEntry(BaseModel):
    """A file or directory in an artifact listing."""

    model_config = ConfigDict(frozen=True)

    path: str
    is_dir: bool
    file_size: int | None = None


def validate_artifact_path(path: str, *, allow_empty: bool = False) -> str:
    """A relative, normalised path; ``..``, absolute paths and odd characters are refused."""
    if not isinstance(path, str):
        raise InvalidArgumentError("Invalid artifact path: must be a string")
    clean = path.strip("/") if allow_empty else path
    if not clean:
        if allow_empty:
            return ""
        raise InvalidArgumentError("Invalid artifact path: empty")
    if clean.startswith("/") or "\\" in clean or "\x00" in clean or len(clean) > MAX_PATH_LENGTH:
        raise InvalidArgumentError(f"Invalid artifact path {path!r}: must be a relative POSIX path")
    if ":" in clean.split("/", 1)[0]:
        raise InvalidArgumentError(f"Invalid artifact path {path!r}: must not carry a scheme or drive")
    parts = clean.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidArgumentError(f"Invalid artifact path {path!r}: '.', '..' and empty segments are not allowed")
    return "/".join(parts)


async def spool(chunks: AsyncIterator[bytes], directory: Path, *, limit: int) -> tuple[Path, int, str]:
    """Write a byte stream to a temporary file, hashing it; returns (file, size, sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix="upload-", delete=False)  # noqa: SIM115 - handed on
    path = Path(handle.name)
    try:
        with handle:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise InvalidArgumentError(f"Artifact larger than the {limit} byte limit")
                digest.update(chunk)
                handle.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size, digest.hexdigest()


class ArtifactService:
    """Upload, list, download and version artifacts."""

    def __init__(self, store: IcebergStore, objects: ObjectStore, *, actor: str = "unknown") -> None:
        self.store = store
        self.objects = objects
        self.actor = actor
        self.spool_dir = store.settings.home / "spool"

    def _row(self, path: str, version_id: str, size: int, sha256: str, *, deleted: bool) -> Rows:
        now_us = int(time.time() * 1_000_000)
        columns = {
            "path": [path],
            "version_id": [version_id],
            "object_key": [path],
            "size_bytes": [size],
            "sha256": [sha256],
            "is_deleted": [deleted],
            "changed_at": [now_us],
            "actor": [self.actor],
            "operation": ["delete" if deleted else "upload"],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return {ARTIFACT_VERSIONS.name: pa.RecordBatch.from_pydict(columns, schema=ARTIFACT_VERSIONS.arrow_schema)}

    def upload_file(self, path: str, source: Path, *, size: int, sha256: str) -> ArtifactVersion:
        """Store a spooled file as the newest version of ``path`` (the file is consumed)."""
        path = validate_artifact_path(path)
        try:
            version_id = self.objects.put_file(path, source)
        finally:
            source.unlink(missing_ok=True)
        self.store.write(lambda _state: self._row(path, version_id, size, sha256, deleted=False))
        return self.current(path)

    def upload_bytes(self, path: str, data: bytes) -> ArtifactVersion:
        """Store small in-memory content (tests, the embedded client)."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.spool_dir, delete=False) as f:
            f.write(data)
        return self.upload_file(path, Path(f.name), size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def _versions(self, state: TrackingState, path: str) -> list[ArtifactVersionState]:
        return state.artifact_versions.get(path, [])

    def current(self, path: str) -> ArtifactVersion:
        """The newest version of ``path``."""
        path = validate_artifact_path(path)
        versions = self._versions(self.store.state, path)
        if not versions or versions[-1].is_deleted:
            raise NotFoundError(f"No artifact at {path!r}", details={"path": path})
        return _entity(versions[-1], current=True)

    def versions(self, path: str) -> list[ArtifactVersion]:
        """Every stored version of ``path``, oldest first."""
        path = validate_artifact_path(path)
        versions = [v for v in self._versions(self.store.state, path) if not v.is_deleted]
        if not versions:
            raise NotFoundError(f"No artifact at {path!r}", details={"path": path})
        head = self._versions(self.store.state, path)[-1]
        return [_entity(v, current=v is head) for v in versions]

    def open(self, path: str, version_id: str | None = None) -> tuple[ArtifactVersion, Iterator[bytes]]:
        """A version's metadata and a chunk iterator over its bytes (the newest by default)."""
        path = validate_artifact_path(path)
        if version_id is None:
            version = self.current(path)
        else:
            found = [
                v for v in self._versions(self.store.state, path) if v.version_id == version_id and not v.is_deleted
            ]
            if not found:
                raise NotFoundError(f"No version {version_id!r} of artifact {path!r}")
            version = _entity(found[-1])
        return version, self.objects.iter_bytes(path, version.version_id)

    def list(self, prefix: str = "") -> list[ArtifactEntry]:
        """Immediate children of ``prefix``: files with sizes, and directories."""
        prefix = validate_artifact_path(prefix, allow_empty=True)
        start = f"{prefix}/" if prefix else ""
        files: dict[str, int] = {}
        dirs: set[str] = set()
        for path, versions in list(self.store.state.artifact_versions.items()):
            if not path.startswith(start) or versions[-1].is_deleted:
                continue
            rest = path[len(start) :]
            head, sep, _tail = rest.partition("/")
            if sep:
                dirs.add(head)
            else:
                files[head] = versions[-1].size_bytes
        entries = [ArtifactEntry(path=f"{start}{d}", is_dir=True) for d in dirs]
        entries += [ArtifactEntry(path=f"{start}{f}", is_dir=False, file_size=s) for f, s in files.items()]
        return sorted(entries, key=lambda e: e.path)

    def delete(self, path: str) -> None:
        """Delete an artifact, or every artifact under a directory. Older versions stay retrievable."""
        path = validate_artifact_path(path)
        state = self.store.state
        targets = [p for p in list(state.artifact_versions) if p == path or p.startswith(path + "/")]
        targets = [p for p in targets if not state.artifact_versions[p][-1].is_deleted]
        if not targets:
            raise NotFoundError(f"No artifact at {path!r}", details={"path": path})
        for target in targets:
            head = state.artifact_versions[target][-1]
            self.objects.delete(target)
            self.store.write(_constant(self._row(target, head.version_id, head.size_bytes, head.sha256, deleted=True)))


def _constant(rows: Rows) -> Callable[[TrackingState], Rows]:
    return lambda _state: rows


def _entity(v: ArtifactVersionState, *, current: bool = False) -> ArtifactVersion:
    return ArtifactVersion(
        path=v.path,
        version_id=v.version_id,
        size_bytes=v.size_bytes,
        sha256=v.sha256,
        created_at=v.created_at,
        is_current=current,
    )
