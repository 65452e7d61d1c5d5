"""Artifacts as versioned references to content-addressed blobs: bytes in the object store, every
version in Iceberg.

Each upload records path, size, sha256 and a version id in the ``artifact_versions`` table, so an
overwritten checkpoint stays retrievable by version. The bytes are a blob keyed by their sha256
(``catalog/objects.py``): the same bytes logged twice are stored once, and the second version is
only a reference. Versions recorded before blobs existed point at path-keyed objects and read as
before.

Two ways in and out:
- proxied: the body streams through lakeops to a spool file on local disk (hashed on the way) and
  from there into the store; downloads stream from the store. Every store supports it.
- direct (S3 stores): lakeops hands out presigned multipart-upload part URLs and presigned GET
  URLs; the bytes never pass through it. Our client sends the sha256 first, so bytes already
  stored are not sent at all and the parts go straight to the blob's key; the digest of such an
  upload is the client's claim (lakeops checks the size, not the bytes). MLflow's client does not
  know the digest: its parts go to a staging key, and on completion lakeops reads the object back
  once to hash it, then copies it inside the store to its blob key (or drops it if the blob
  exists). ``transfers()`` counts the bytes of each path, so a test can see which one was taken.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from catalog.objects import (
    DirectTransfers,
    ObjectStore,
    OutsideRootError,
    blob_digest,
    blob_key,
    is_digest,
    staged_key,
    staged_token,
)
from catalog.tables import ARTIFACT_VERSIONS
from lakeops.actor import ActorField
from lakeops.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from lakeops.services.runs_as_of import as_of_ms
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import HASHED_OPERATION, ArtifactVersionState, TrackingState

log = logging.getLogger(__name__)

MAX_PATH_LENGTH = 1024
# Direct uploads: parts of at least 8 MiB (S3 wants >= 5 MiB but the last), at most 10,000 parts.
MIN_PART_BYTES = 8 * 1024 * 1024
MAX_PARTS = 10_000
PRESIGN_EXPIRES_S = 3600
# A presigned GET of a staged object pending its sha256 lives this long: the staged object is kept
# until the last one handed out has expired, so it should not be long.
STAGED_PRESIGN_EXPIRES_S = 900
# How often the finisher looks for pending versions it was not told about (another replica's).
FINISHER_POLL_S = 10.0


class ArtifactVersion(BaseModel):
    """One stored version of an artifact."""

    model_config = ConfigDict(frozen=True)

    path: str
    version_id: str
    size_bytes: int
    sha256: str = Field(description="empty while the version is pending: a stock-client multipart upload being hashed")
    created_at: int
    is_current: bool = False
    is_pending: bool = False


class ArtifactEntry(BaseModel):
    """A file or directory in an artifact listing."""

    model_config = ConfigDict(frozen=True)

    path: str
    is_dir: bool
    file_size: int | None = None


class PartUrl(BaseModel):
    """Where to PUT one part of a direct upload."""

    model_config = ConfigDict(frozen=True)

    part_number: int
    url: str
    headers: dict[str, str] = {}


class UploadPlan(BaseModel):
    """The answer to "I want to store these bytes here": already stored, send parts, or proxy."""

    model_config = ConfigDict(frozen=True)

    status: str  # "stored" (the bytes were there: a reference was recorded), "upload" or "proxy"
    version: ArtifactVersion | None = None
    upload_id: str | None = None
    part_size: int | None = None
    parts: list[PartUrl] = []
    done_parts: list[dict[str, Any]] = []


class DownloadUrl(BaseModel):
    """Where to GET a version's bytes directly."""

    model_config = ConfigDict(frozen=True)

    url: str | None = Field(description="None where the bytes go through lakeops (no direct transfers)")
    headers: dict[str, str] = {}
    version: ArtifactVersion


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

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(self, store: IcebergStore, objects: ObjectStore, *, actor: str = "unknown") -> None:
        self.store = store
        self.objects = objects
        self.actor = actor
        self.spool_dir = store.settings.home / "spool"
        self._counts_lock = threading.Lock()
        self._counts = {
            "proxied_upload_bytes": 0,
            "proxied_download_bytes": 0,
            "direct_uploads": 0,
            "direct_upload_bytes": 0,
            "direct_downloads": 0,
            "deduplicated_uploads": 0,
            "deduplicated_bytes": 0,
            "verified_bytes": 0,
            "pending_uploads": 0,
        }
        self.finisher = StagedUploadFinisher(self)

    # -- background work -------------------------------------------------------------------------

    def start(self) -> None:
        """Start filing stock-client uploads pending their sha256 (those a previous process left, too).

        A server does it unless its storage says ``hash_staged_uploads=false`` (then another replica does).
        """
        if getattr(self.store.settings.storage, "hash_staged_uploads", False):
            self.finisher.start()

    def stop(self) -> None:
        """Stop the background work; what is pending stays pending for the next start."""
        self.finisher.stop()

    # -- counters --------------------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def transfers(self) -> dict[str, int]:
        """Bytes and uploads by path since the service started (proxied, direct, deduplicated)."""
        with self._counts_lock:
            return dict(self._counts)

    @property
    def direct(self) -> DirectTransfers | None:
        """The store's direct transfers, or None when bytes must go through lakeops."""
        return self.objects.direct

    # -- recording -------------------------------------------------------------------------------

    def _row(
        self,
        path: str,
        version_id: str,
        object_key: str,
        size: int,
        sha256: str,
        *,
        deleted: bool,
        operation: str | None = None,
    ) -> Rows:
        now_us = int(time.time() * 1_000_000)
        columns = {
            "path": [path],
            "version_id": [version_id],
            "object_key": [object_key],
            "size_bytes": [size],
            "sha256": [sha256],
            "is_deleted": [deleted],
            "changed_at": [now_us],
            "actor": [self.actor],
            "operation": [operation or ("delete" if deleted else "upload")],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return {ARTIFACT_VERSIONS.name: pa.RecordBatch.from_pydict(columns, schema=ARTIFACT_VERSIONS.arrow_schema)}

    def record_blob(self, path: str, *, sha256: str, size: int) -> ArtifactVersion:
        """Record a stored blob as the newest version of ``path`` (a reference, no bytes move)."""
        path = validate_artifact_path(path)
        version_id = uuid.uuid4().hex
        self.store.write(lambda _state: self._row(path, version_id, blob_key(sha256), size, sha256, deleted=False))
        return self.current(path)

    def upload_file(self, path: str, source: Path, *, size: int, sha256: str) -> ArtifactVersion:
        """Store a spooled file as the newest version of ``path`` (the file is consumed).

        Bytes already stored (the same sha256) are not stored again: the version references them.
        """
        path = validate_artifact_path(path)
        self._count(proxied_upload_bytes=size)
        try:
            if self.objects.has_blob(sha256):
                self._count(deduplicated_uploads=1, deduplicated_bytes=size)
            self.objects.put_blob(sha256, source)
        except OutsideRootError as exc:
            raise PermissionDeniedError(f"Cannot store {path!r}: {exc}") from exc
        finally:
            source.unlink(missing_ok=True)
        return self.record_blob(path, sha256=sha256, size=size)

    def upload_bytes(self, path: str, data: bytes) -> ArtifactVersion:
        """Store small in-memory content (tests, the embedded client)."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.spool_dir, delete=False) as f:
            f.write(data)
        return self.upload_file(path, Path(f.name), size=len(data), sha256=hashlib.sha256(data).hexdigest())

    # -- direct uploads (our client: the digest first) ---------------------------------------------

    def begin_upload(self, path: str, *, size: int, sha256: str) -> UploadPlan:
        """Plan storing ``size`` bytes whose sha256 is ``sha256`` at ``path``.

        Bytes already stored are recorded at once (``stored``). Otherwise, on a store with direct
        transfers, a multipart upload to the blob's key is started — or the one already in progress
        is resumed, listing the parts it holds — and part URLs are signed (``upload``); elsewhere
        the client sends the bytes through lakeops (``proxy``).

        Raises:
            InvalidArgumentError: a bad path, size or digest.
        """
        path = validate_artifact_path(path)
        sha256 = _check_digest(sha256)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgumentError(f"Invalid size {size!r}: must be an integer >= 0")
        if self.objects.has_blob(sha256):
            self._count(deduplicated_uploads=1, deduplicated_bytes=size)
            return UploadPlan(status="stored", version=self.record_blob(path, sha256=sha256, size=size))
        direct = self.direct
        if direct is None or size == 0:
            return UploadPlan(status="proxy")
        part_size = max(MIN_PART_BYTES, math.ceil(size / MAX_PARTS / (1024 * 1024)) * 1024 * 1024)
        count = max(1, math.ceil(size / part_size))
        name = direct.blob_name(sha256)
        upload_id = direct.find_upload(name)
        done: list[dict[str, Any]] = []
        if upload_id is not None:
            held = direct.uploaded_parts(name, upload_id)
            # A part counts as done only if it has the size this plan gives it.
            done = [
                {"part_number": p.part_number, "etag": p.etag, "size_bytes": p.size_bytes}
                for p in held
                if 1 <= p.part_number <= count and p.size_bytes == _part_bytes(p.part_number, size, part_size)
            ]
        else:
            upload_id = direct.start_upload(name)
        have = {p["part_number"] for p in done}
        parts = [
            PartUrl(part_number=n, url=direct.presign_part(name, upload_id, n, expires_s=PRESIGN_EXPIRES_S))
            for n in range(1, count + 1)
            if n not in have
        ]
        return UploadPlan(status="upload", upload_id=upload_id, part_size=part_size, parts=parts, done_parts=done)

    def complete_upload(
        self, path: str, *, sha256: str, size: int, upload_id: str, parts: list[tuple[int, str]]
    ) -> ArtifactVersion:
        """Assemble a direct upload's parts into the blob and record it as the newest version of ``path``.

        Raises:
            InvalidArgumentError: a bad path or digest, parts the store refused, or a size that is
                not the announced one (the object is then removed).
            NotFoundError: no such upload.
        """
        path = validate_artifact_path(path)
        sha256 = _check_digest(sha256)
        direct = self._require_direct()
        name = direct.blob_name(sha256)
        try:
            direct.complete_upload(name, upload_id, parts)
        except FileNotFoundError as exc:
            if self.objects.has_blob(sha256):  # completed already (a retried request)
                return self.record_blob(path, sha256=sha256, size=size)
            if direct.find_upload(name) == upload_id:  # some stores say "no such upload" for unknown parts
                raise InvalidArgumentError(f"Cannot complete the upload of {path!r}: parts not in the store") from exc
            raise NotFoundError(f"No upload {upload_id!r} in progress for {path!r}") from exc
        except ValueError as exc:
            raise InvalidArgumentError(f"Cannot complete the upload of {path!r}: {exc}") from exc
        stored = direct.size(name)
        if stored != size:
            direct.remove(name)
            raise InvalidArgumentError(f"Upload of {path!r} holds {stored} bytes, not the {size} announced")
        self._count(direct_uploads=1, direct_upload_bytes=size)
        return self.record_blob(path, sha256=sha256, size=size)

    def abort_upload(self, *, sha256: str, upload_id: str) -> None:
        """Drop a direct upload and the parts it holds."""
        direct = self._require_direct()
        direct.abort_upload(direct.blob_name(_check_digest(sha256)), upload_id)

    def _require_direct(self) -> DirectTransfers:
        direct = self.direct
        if direct is None:
            raise InvalidArgumentError("This artifact store takes uploads through lakeops only (no direct transfers)")
        return direct

    # -- direct uploads (MLflow's multipart protocol: no digest up front) -----------------------------

    def start_staged_upload(self, path: str, *, num_parts: int) -> tuple[str, list[PartUrl]]:
        """Start a multipart upload of unknown content for ``path``; returns (upload id, part URLs).

        The upload id carries the staging key's token, so completing or aborting needs nothing else.
        """
        validate_artifact_path(path)
        if isinstance(num_parts, bool) or not isinstance(num_parts, int) or not 1 <= num_parts <= MAX_PARTS:
            raise InvalidArgumentError(f"num_parts must be between 1 and {MAX_PARTS}, got {num_parts!r}")
        direct = self._require_direct()
        token = uuid.uuid4().hex
        name = direct.staging_name(token)
        s3_upload_id = direct.start_upload(name)
        urls = [
            PartUrl(part_number=n, url=direct.presign_part(name, s3_upload_id, n, expires_s=PRESIGN_EXPIRES_S))
            for n in range(1, num_parts + 1)
        ]
        return f"{token}.{s3_upload_id}", urls

    def _staged(self, upload_id: str) -> tuple[DirectTransfers, str, str]:
        token, dot, s3_upload_id = upload_id.partition(".")
        if not dot or not is_digest(token.ljust(64, "0")) or len(token) != 32 or not s3_upload_id:
            raise InvalidArgumentError(f"Invalid upload id {upload_id!r}")
        direct = self._require_direct()
        return direct, direct.staging_name(token), s3_upload_id

    def complete_staged_upload(self, path: str, *, upload_id: str, parts: list[tuple[int, str]]) -> ArtifactVersion:
        """Assemble a staged upload and record it as the newest version of ``path``, pending its sha256.

        The version is readable at once (from the staged object); the finisher hashes it and files
        it under its blob key in the background (see the module docstring).

        Raises:
            InvalidArgumentError: a bad path or upload id, or parts the store refused.
            NotFoundError: no such upload.
        """
        path = validate_artifact_path(path)
        direct, name, s3_upload_id = self._staged(upload_id)
        token = upload_id.partition(".")[0]
        try:
            direct.complete_upload(name, s3_upload_id, parts)
        except FileNotFoundError as exc:
            raise NotFoundError(f"No upload {upload_id!r} in progress for {path!r}") from exc
        except ValueError as exc:
            raise InvalidArgumentError(f"Cannot complete the upload of {path!r}: {exc}") from exc
        size = direct.size(name)
        version_id = uuid.uuid4().hex
        rows = self._row(path, version_id, staged_key(token), size, "", deleted=False)
        self.store.write(_constant(rows))
        self._count(direct_uploads=1, direct_upload_bytes=size, pending_uploads=1)
        self.finisher.wake()
        return self.current(path)

    def finish_staged(self, path: str, version_id: str, object_key: str) -> bool:
        """Hash a pending version's staged object, file it under its blob and record that.

        Returns whether this call filed it (False: it was filed already, by us or another replica).

        Raises:
            FileNotFoundError: the staged object is gone (filed by another replica not seen yet).
        """
        direct = self._require_direct()
        token = staged_token(object_key)
        if token is None:
            return False
        name = direct.staging_name(token)
        digest = hashlib.sha256()
        size = 0
        for chunk in direct.read(name):
            digest.update(chunk)
            size += len(chunk)
        sha256 = digest.hexdigest()
        if self.objects.has_blob(sha256):
            self._count(deduplicated_uploads=1, deduplicated_bytes=size)
        else:
            direct.copy(name, direct.blob_name(sha256))
        filed = False

        def build(state: TrackingState) -> Rows:
            nonlocal filed
            if state.pending_artifacts.get(version_id) != (path, object_key):  # compare-and-swap
                return {}
            filed = True
            return self._row(
                path, version_id, blob_key(sha256), size, sha256, deleted=False, operation=HASHED_OPERATION
            )

        self.store.write(build)
        self._count(verified_bytes=size, pending_uploads=-1 if filed else 0)
        return filed

    def abort_staged_upload(self, upload_id: str) -> None:
        """Drop a staged upload and its parts."""
        direct, name, s3_upload_id = self._staged(upload_id)
        direct.abort_upload(name, s3_upload_id)

    # -- direct downloads ------------------------------------------------------------------------

    def download_url(self, path: str, version_id: str | None = None) -> DownloadUrl:
        """A presigned GET URL for a version (ranges allowed); ``url`` is None without direct transfers.

        Raises:
            NotFoundError: no such artifact or version.
        """
        state_version = self._find(path, version_id)
        current = self._versions(self.store.state, state_version.path)[-1] is state_version
        direct = self.direct
        if direct is None:
            return DownloadUrl(url=None, version=_entity(state_version, current=current))
        object_key = state_version.object_key
        token = staged_token(object_key)
        if token is not None:  # pending its sha256: the staged object, kept until this URL expires
            name = direct.staging_name(token)
            self.finisher.keep_until(name, time.time() + STAGED_PRESIGN_EXPIRES_S)
            url = direct.presign_get(name, None, expires_s=STAGED_PRESIGN_EXPIRES_S)
        else:
            name = direct.object_name(object_key)
            url = direct.presign_get(
                name, None if blob_digest(object_key) else state_version.version_id, expires_s=PRESIGN_EXPIRES_S
            )
        self._count(direct_downloads=1)
        return DownloadUrl(url=url, version=_entity(state_version, current=current))

    # -- reading ---------------------------------------------------------------------------------

    def _versions(self, state: TrackingState, path: str) -> list[ArtifactVersionState]:
        return state.artifact_versions.get(path, [])

    def _find(self, path: str, version_id: str | None) -> ArtifactVersionState:
        path = validate_artifact_path(path)
        versions = self._versions(self.store.state, path)
        if version_id is None:
            if not versions or versions[-1].is_deleted:
                raise NotFoundError(f"No artifact at {path!r}", details={"path": path})
            return versions[-1]
        found = [v for v in versions if v.version_id == version_id and not v.is_deleted]
        if not found:
            raise NotFoundError(f"No version {version_id!r} of artifact {path!r}")
        return found[-1]

    def current(self, path: str) -> ArtifactVersion:
        """The newest version of ``path``."""
        return _entity(self._find(path, None), current=True)

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
        found = self._find(path, version_id)
        return _entity(found, current=version_id is None), self._counted(self._chunks(found))

    def _chunks(self, found: ArtifactVersionState) -> Iterator[bytes]:
        digest = blob_digest(found.object_key)
        token = staged_token(found.object_key)
        try:
            if token is not None:  # pending its sha256: the staged object, or its blob if filed meanwhile
                return self._staged_chunks(found, token)
            if digest is not None:
                return self.objects.iter_blob(digest)
            return self.objects.iter_bytes(found.object_key, found.version_id)
        except OutsideRootError as exc:
            raise PermissionDeniedError(f"Cannot read {found.path!r}: {exc}") from exc

    def _staged_chunks(self, found: ArtifactVersionState, token: str) -> Iterator[bytes]:
        direct = self._require_direct()
        chunks = direct.read(direct.staging_name(token))
        try:
            first = next(chunks, b"")
        except FileNotFoundError:  # filed and removed between the look-up and the read
            self.store.refresh()
            again = self._find(found.path, found.version_id)
            if staged_token(again.object_key) is not None:
                raise NotFoundError(f"The bytes of {found.path!r} are missing from the store") from None
            yield from self._chunks(again)
            return
        yield first
        yield from chunks

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._count(proxied_download_bytes=len(chunk))
            yield chunk

    def list(self, prefix: str = "", *, as_of: datetime | None = None) -> list[ArtifactEntry]:
        """Immediate children of ``prefix``: files with sizes, and directories.

        With ``as_of``, as they stood then: the paths stored by that time and not deleted by then, each
        with the size of its version current then (every version is kept in the state, so any time is known).
        """
        prefix = validate_artifact_path(prefix, allow_empty=True)
        start = f"{prefix}/" if prefix else ""
        cutoff = None if as_of is None else as_of_ms(as_of)
        files: dict[str, int] = {}
        dirs: set[str] = set()
        for path, versions in list(self.store.state.artifact_versions.items()):
            if not path.startswith(start):
                continue
            head_version = versions[-1] if cutoff is None else _latest_by(versions, cutoff)
            if head_version is None or head_version.is_deleted:
                continue
            rest = path[len(start) :]
            head, sep, _tail = rest.partition("/")
            if sep:
                dirs.add(head)
            else:
                files[head] = head_version.size_bytes
        entries = [ArtifactEntry(path=f"{start}{d}", is_dir=True) for d in dirs]
        entries += [ArtifactEntry(path=f"{start}{f}", is_dir=False, file_size=s) for f, s in files.items()]
        return sorted(entries, key=lambda e: e.path)

    def delete(self, path: str) -> None:
        """Delete an artifact, or every artifact under a directory.

        Older versions stay retrievable by version id until ``lakeops maintain --gc`` frees them.
        """
        path = validate_artifact_path(path)
        state = self.store.state
        targets = [p for p in list(state.artifact_versions) if p == path or p.startswith(path + "/")]
        targets = [p for p in targets if not state.artifact_versions[p][-1].is_deleted]
        if not targets:
            raise NotFoundError(f"No artifact at {path!r}", details={"path": path})
        for target in targets:
            head = state.artifact_versions[target][-1]
            if blob_digest(head.object_key) is None and staged_token(head.object_key) is None:
                # a pre-blob object: hide it in the store too
                self.objects.delete(target)
            rows = self._row(target, head.version_id, head.object_key, head.size_bytes, head.sha256, deleted=True)
            self.store.write(_constant(rows))


def _latest_by(versions: list[ArtifactVersionState], cutoff_ms: int) -> ArtifactVersionState | None:
    """The last of ``versions`` (oldest first) stored at or before ``cutoff_ms``."""
    found = None
    for version in versions:
        if version.created_at <= cutoff_ms:
            found = version
    return found


def _check_digest(sha256: object) -> str:
    if not isinstance(sha256, str) or not is_digest(sha256.lower()):
        raise InvalidArgumentError(f"Invalid sha256 {sha256!r}: 64 hex digits")
    return sha256.lower()


def _part_bytes(part_number: int, size: int, part_size: int) -> int:
    """The size part ``part_number`` has when ``size`` bytes are cut into ``part_size`` parts."""
    return max(0, min(part_size, size - (part_number - 1) * part_size))


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
        is_pending=staged_token(v.object_key) is not None,
    )


class StagedUploadFinisher:
    """A background thread that hashes and files the versions pending their sha256.

    It works from the folded state (``state.pending_artifacts``), not from a queue of its own, so
    what a killed server left pending — or what another replica recorded — is found the same way:
    at start, when woken by a completed upload, and every ``FINISHER_POLL_S``. A staged object is
    removed once its version is filed, but not before the presigned URLs handed out for it expire.
    """

    def __init__(self, artifacts: ArtifactService) -> None:
        self.artifacts = artifacts
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._keep: dict[str, float] = {}  # staged object -> the last presigned URL's expiry
        self._retire: dict[str, float] = {}  # filed staged object -> when it may be removed
        self._failed: set[str] = set()  # version ids whose failure was logged (logged once)

    def start(self) -> None:
        """Start the thread (no-op without direct transfers, or when it runs already)."""
        with self._lock:
            if self._thread is not None or self.artifacts.direct is None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="lakeops-staged-finisher", daemon=True)
            self._thread.start()
        self._wake.set()

    def wake(self) -> None:
        """Look for pending versions now."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; a version it was hashing stays pending, for the next start."""
        with self._lock:
            thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)

    def keep_until(self, name: str, until: float) -> None:
        """Keep the staged object ``name`` at least until ``until`` (a presigned URL to it lives that long)."""
        with self._lock:
            self._keep[name] = max(until, self._keep.get(name, 0.0))

    def run_once(self) -> int:
        """File every pending version; returns how many this call filed."""
        artifacts = self.artifacts
        direct = artifacts.direct
        if direct is None:
            return 0
        filed = 0
        for version_id, (path, object_key) in list(artifacts.store.state.pending_artifacts.items()):
            if self._stop.is_set():
                break
            try:
                if artifacts.finish_staged(path, version_id, object_key):
                    filed += 1
            except Exception:  # retried on the next round; logged once
                if version_id not in self._failed:
                    self._failed.add(version_id)
                    log.warning("could not hash the staged upload of %s (%s) yet", path, version_id, exc_info=True)
                continue
            self._failed.discard(version_id)
            token = staged_token(object_key) or ""
            name = direct.staging_name(token)
            with self._lock:
                self._retire[name] = self._keep.pop(name, 0.0)
        self._remove_retired()
        return filed

    def _remove_retired(self) -> None:
        direct = self.artifacts.direct
        now = time.time()
        with self._lock:
            due = [name for name, at in self._retire.items() if at <= now]
        for name in due:
            try:
                if direct is not None:
                    direct.remove(name)
            except Exception:  # gc removes staged objects nothing references
                log.warning("could not remove the staged object %s", name, exc_info=True)
            with self._lock:
                self._retire.pop(name, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FINISHER_POLL_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception:  # the state or the store failed: try again on the next round
                log.warning("the staged upload finisher failed a round", exc_info=True)
