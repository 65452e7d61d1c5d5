"""Object storage for artifacts: content-addressed blobs on a local directory or any S3 endpoint.

Artifact bytes are stored once per content: a *blob* is keyed by the sha256 of its bytes
(``<root>/.blobs/ab/abcd…`` locally, ``<prefix>/blobs/sha256/ab/abcd…`` on S3), and the
``artifact_versions`` table references it with the object key ``sha256:<digest>`` (a key that no
artifact path can take: paths may not carry a scheme). Logging the same bytes again — another
run's copy of a base model, a dataset re-logged — adds a reference, not an object.

Artifacts stored before blobs existed keep their path-keyed objects, and keep working: S3 objects
under ``<prefix>/artifacts/<path>`` with bucket versioning, local files under
``.versions/<path>/<version_id>`` (with the newest hard-linked at ``<path>``).

S3 stores also offer *direct transfers* (``DirectTransfers``): multipart uploads and downloads
through presigned URLs, so clients move bytes straight to and from the object store while lakeops
signs the URLs and records what was stored. The local store has none (``direct`` is None): its
bytes go through the server.

The multipart calls use the minio SDK's protected methods (``_create_multipart_upload`` and its
siblings): minio, already our S3 client, has no public API for a multipart upload whose parts
another process sends, and these methods are the S3 operations themselves, stable across 7.x.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
BLOB_SCHEME = "sha256:"
# A version whose bytes are a staged upload not hashed yet (MLflow's multipart upload, completed
# and acknowledged before its sha256 is known): ``staged:<token>``, the object at ``staging_name(token)``.
STAGED_SCHEME = "staged:"
_HEX = frozenset("0123456789abcdef")


def blob_key(digest: str) -> str:
    """The object key an ``artifact_versions`` row carries for a blob."""
    return f"{BLOB_SCHEME}{digest}"


def blob_digest(object_key: str) -> str | None:
    """The digest of a blob key, or None for a path-keyed (pre-blob) object."""
    return object_key[len(BLOB_SCHEME) :] if object_key.startswith(BLOB_SCHEME) else None


def staged_key(token: str) -> str:
    """The object key an ``artifact_versions`` row carries for a staged upload pending its sha256."""
    return f"{STAGED_SCHEME}{token}"


def staged_token(object_key: str) -> str | None:
    """The staging token of a staged key, or None for any other key."""
    return object_key[len(STAGED_SCHEME) :] if object_key.startswith(STAGED_SCHEME) else None


def is_digest(text: str) -> bool:
    """A lowercase hex sha256."""
    return len(text) == 64 and set(text) <= _HEX


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its digest, size and last modification (seconds since the epoch)."""

    digest: str
    size_bytes: int
    modified_at: float


@dataclass(frozen=True)
class UploadPart:
    """A part of a multipart upload already in the store."""

    part_number: int
    etag: str
    size_bytes: int


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload started and neither completed nor aborted."""

    object_name: str
    upload_id: str
    started_at: float


class DirectTransfers(Protocol):
    """Multipart uploads and presigned URLs on an S3 store (object names are full bucket keys)."""

    def blob_name(self, digest: str) -> str:
        """The bucket key of a blob."""
        ...

    def staging_name(self, token: str) -> str:
        """A bucket key for an upload whose digest is not known yet."""
        ...

    def object_name(self, object_key: str) -> str:
        """The bucket key of an ``artifact_versions`` object key (a blob key or a legacy path)."""
        ...

    def start_upload(self, name: str) -> str:
        """Start a multipart upload; returns its id."""
        ...

    def find_upload(self, name: str) -> str | None:
        """The newest multipart upload in progress to ``name``, if any."""
        ...

    def uploaded_parts(self, name: str, upload_id: str) -> list[UploadPart]:
        """The parts an upload already holds.

        Raises:
            FileNotFoundError: no such upload.
        """
        ...

    def presign_part(self, name: str, upload_id: str, part_number: int, *, expires_s: int) -> str:
        """A URL a client PUTs one part's bytes to."""
        ...

    def complete_upload(self, name: str, upload_id: str, parts: list[tuple[int, str]]) -> str:
        """Assemble the parts (``(number, etag)``); returns the object's version id.

        Raises:
            FileNotFoundError: no such upload.
            ValueError: the store refused the parts (a missing part, a wrong etag, a part too small).
        """
        ...

    def abort_upload(self, name: str, upload_id: str) -> None:
        """Drop an upload and the parts it holds."""
        ...

    def pending_uploads(self, prefix: str) -> list[PendingUpload]:
        """Multipart uploads in progress under ``prefix``."""
        ...

    def staged_objects(self) -> list[BlobInfo]:
        """Objects left under the staging prefix (``digest`` is their bucket key)."""
        ...

    def presign_get(self, name: str, version_id: str | None, *, expires_s: int) -> str:
        """A URL a client GETs (ranges allowed) one object version from."""
        ...

    def size(self, name: str, version_id: str | None = None) -> int:
        """An object's size.

        Raises:
            FileNotFoundError: no such object.
        """
        ...

    def read(self, name: str) -> Iterator[bytes]:
        """Stream an object's current bytes."""
        ...

    def copy(self, source: str, target: str) -> None:
        """Copy an object inside the store (no byte passes through lakeops)."""
        ...

    def remove(self, name: str) -> None:
        """Remove every version of an object."""
        ...


class ObjectStore(Protocol):
    """Where artifact bytes live."""

    @property
    def direct(self) -> DirectTransfers | None:
        """Direct transfers, if the store offers them."""
        ...

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is stored."""
        ...

    def put_blob(self, digest: str, source: Path) -> None:
        """Store ``source`` (whose sha256 is ``digest``) as a blob, unless it is stored already.

        ``source`` is consumed either way.
        """
        ...

    def iter_blob(self, digest: str) -> Iterator[bytes]:
        """Stream a blob's bytes in chunks.

        Raises:
            FileNotFoundError: the blob does not exist.
        """
        ...

    def list_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob."""
        ...

    def delete_blob(self, digest: str) -> int:
        """Free a blob's bytes (every version); returns the bytes freed."""
        ...

    def spare_blob_versions(self) -> list[tuple[str, str, int]]:
        """``(digest, version id, size)`` of blob versions that are not the current one.

        Two uploads of the same new bytes at once both write the blob; the bytes are equal, and
        on a versioned bucket the older copy is spare.
        """
        ...

    def delete_blob_version(self, digest: str, version_id: str) -> int:
        """Free one spare version of a blob; returns the bytes freed."""
        ...

    def iter_bytes(self, key: str, version_id: str) -> Iterator[bytes]:
        """Stream one version of a path-keyed (pre-blob) object.

        Raises:
            FileNotFoundError: the version does not exist.
        """
        ...

    def delete(self, key: str) -> None:
        """Hide a path-keyed object's current version (older versions stay until freed)."""
        ...

    def delete_version(self, key: str, version_id: str) -> int:
        """Free one version of a path-keyed object; returns the bytes freed."""
        ...


class OutsideRootError(PermissionError):
    """A path in a local store resolves outside the store's root (through a symbolic link): never followed."""


class LocalObjectStore:
    """Blobs (and pre-blob versioned objects) in a local directory.

    Every path is resolved before use and must stay inside the root: a symbolic link planted in the
    directory that points elsewhere makes reads and writes through it fail with ``OutsideRootError``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / ".blobs"
        root.mkdir(parents=True, exist_ok=True)
        self._real_root = root.resolve()

    @property
    def direct(self) -> DirectTransfers | None:
        return None

    def _inside(self, path: Path) -> Path:
        if not path.resolve().is_relative_to(self._real_root):
            raise OutsideRootError(
                f"{path.relative_to(self.root)} leads outside the artifact store's directory (a symbolic link): refused"
            )
        return path

    def _blob_path(self, digest: str) -> Path:
        return self._inside(self.blobs / digest[:2] / digest)

    def has_blob(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def put_blob(self, digest: str, source: Path) -> None:
        target = self._blob_path(digest)
        if target.is_file():
            source.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{digest}.{uuid.uuid4().hex}.tmp")
        try:
            source.replace(staged)  # the spooled upload becomes the blob: no copy
        except OSError:
            shutil.copyfile(source, staged)
            source.unlink(missing_ok=True)
        with staged.open("rb") as f:
            os.fsync(f.fileno())
        staged.replace(target)

    def iter_blob(self, digest: str) -> Iterator[bytes]:
        return _iter_file(self._blob_path(digest))  # the path is checked now, not at the first chunk

    def list_blobs(self) -> Iterator[BlobInfo]:
        if not self.blobs.is_dir():
            return
        for path in self.blobs.glob("*/*"):
            if is_digest(path.name) and path.resolve().is_relative_to(self._real_root):
                stat = path.stat()
                yield BlobInfo(path.name, stat.st_size, stat.st_mtime)

    def delete_blob(self, digest: str) -> int:
        path = self._blob_path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def spare_blob_versions(self) -> list[tuple[str, str, int]]:
        return []  # a local blob is one file, replaced atomically: there is never a spare copy

    def delete_blob_version(self, digest: str, version_id: str) -> int:  # noqa: ARG002 - the protocol's
        return 0

    # -- pre-blob objects ----------------------------------------------------------------------

    def _version_path(self, key: str, version_id: str) -> Path:
        return self._inside(self.root / ".versions" / key / version_id)

    def iter_bytes(self, key: str, version_id: str) -> Iterator[bytes]:
        return _iter_file(self._version_path(key, version_id))

    def delete(self, key: str) -> None:
        self._inside(self.root / key).unlink(missing_ok=True)

    def delete_version(self, key: str, version_id: str) -> int:
        path = self._version_path(key, version_id)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size


def _iter_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class S3ObjectStore:
    """Blobs (and pre-blob versioned objects) in an S3 bucket (MinIO, SeaweedFS, AWS), through minio."""

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        prefix: str,
        access_key: str | None,
        secret_key: str | None,
        region: str,
        blob_prefix: str | None = None,
        direct_transfers: bool = True,
    ) -> None:
        from minio import Minio
        from minio.commonconfig import ENABLED
        from minio.error import S3Error
        from minio.versioningconfig import VersioningConfig

        secure = endpoint.startswith("https://")
        host = endpoint.split("://", 1)[-1].rstrip("/")
        self.client = Minio(host, access_key=access_key, secret_key=secret_key, region=region, secure=secure)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.blob_prefix = (blob_prefix or f"{self.prefix}/blobs".lstrip("/")).strip("/")
        self._direct = direct_transfers
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
            self.client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
        except S3Error as exc:  # versioning may be refused by policy: uploads still work, overwrites replace
            log.warning("could not enable versioning on bucket %s: %s", bucket, exc)

    @property
    def direct(self) -> DirectTransfers | None:
        return self if self._direct else None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- names -----------------------------------------------------------------------------------

    def blob_name(self, digest: str) -> str:
        return f"{self.blob_prefix}/sha256/{digest[:2]}/{digest}"

    def staging_name(self, token: str) -> str:
        return f"{self.blob_prefix}/staging/{token}"

    def object_name(self, object_key: str) -> str:
        digest = blob_digest(object_key)
        return self.blob_name(digest) if digest is not None else self._key(object_key)

    # -- blobs -----------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        try:
            self.size(self.blob_name(digest))
        except FileNotFoundError:
            return False
        return True

    def put_blob(self, digest: str, source: Path) -> None:
        try:
            if not self.has_blob(digest):
                self.client.fput_object(self.bucket, self.blob_name(digest), str(source), part_size=16 * CHUNK)
        finally:
            source.unlink(missing_ok=True)

    def iter_blob(self, digest: str) -> Iterator[bytes]:
        return self._stream(self.blob_name(digest), None)

    def list_blobs(self) -> Iterator[BlobInfo]:
        for obj in self.client.list_objects(self.bucket, prefix=f"{self.blob_prefix}/sha256/", recursive=True):
            name = obj.object_name or ""
            digest = name.rsplit("/", 1)[-1]
            if is_digest(digest):
                modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
                yield BlobInfo(digest, obj.size or 0, modified)

    def delete_blob(self, digest: str) -> int:
        return self._remove_versions(self.blob_name(digest))

    def spare_blob_versions(self) -> list[tuple[str, str, int]]:
        spare = []
        prefix = f"{self.blob_prefix}/sha256/"
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True, include_version=True):
            digest = (obj.object_name or "").rsplit("/", 1)[-1]
            is_latest = str(obj.is_latest).lower() == "true"  # minio gives the XML text, "true" or "false"
            if is_digest(digest) and not is_latest and obj.version_id and not obj.is_delete_marker:
                spare.append((digest, obj.version_id, obj.size or 0))
        return spare

    def delete_blob_version(self, digest: str, version_id: str) -> int:
        return self._remove_versions(self.blob_name(digest), version_id)

    def _remove_versions(self, name: str, version_id: str | None = None) -> int:
        freed = 0
        for obj in self.client.list_objects(self.bucket, prefix=name, include_version=True):
            if obj.object_name != name or (version_id is not None and obj.version_id != version_id):
                continue
            freed += obj.size or 0
            self.client.remove_object(self.bucket, name, version_id=obj.version_id)
        return freed

    def _stream(self, name: str, version_id: str | None) -> Iterator[bytes]:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, name, version_id=version_id)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion"):
                raise FileNotFoundError(f"{name} version {version_id}") from exc
            raise
        try:
            yield from response.stream(CHUNK)
        finally:
            response.close()
            response.release_conn()

    # -- pre-blob objects ------------------------------------------------------------------------

    def iter_bytes(self, key: str, version_id: str) -> Iterator[bytes]:
        return self._stream(self._key(key), None if version_id == "null" else version_id)

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._key(key))

    def delete_version(self, key: str, version_id: str) -> int:
        return self._remove_versions(self._key(key), None if version_id == "null" else version_id)

    # -- direct transfers ------------------------------------------------------------------------

    def start_upload(self, name: str) -> str:
        return self.client._create_multipart_upload(self.bucket, name, {})

    def find_upload(self, name: str) -> str | None:
        found = [u for u in self.pending_uploads(name) if u.object_name == name]
        return max(found, key=lambda u: u.started_at).upload_id if found else None

    def uploaded_parts(self, name: str, upload_id: str) -> list[UploadPart]:
        from minio.error import S3Error

        parts: list[UploadPart] = []
        marker: str | None = None
        while True:
            try:
                result = self.client._list_parts(self.bucket, name, upload_id, part_number_marker=marker)
            except S3Error as exc:
                if exc.code == "NoSuchUpload":
                    raise FileNotFoundError(f"no upload {upload_id} to {name}") from exc
                raise
            parts += [UploadPart(p.part_number, p.etag, p.size or 0) for p in result.parts]
            if not result.is_truncated or not result.next_part_number_marker:
                return parts
            marker = result.next_part_number_marker

    def presign_part(self, name: str, upload_id: str, part_number: int, *, expires_s: int) -> str:
        return self.client.get_presigned_url(
            "PUT",
            self.bucket,
            name,
            expires=timedelta(seconds=expires_s),
            extra_query_params={"partNumber": str(part_number), "uploadId": upload_id},
        )

    def complete_upload(self, name: str, upload_id: str, parts: list[tuple[int, str]]) -> str:
        from minio.datatypes import Part
        from minio.error import S3Error

        try:
            result = self.client._complete_multipart_upload(
                self.bucket, name, upload_id, [Part(n, etag.strip('"')) for n, etag in sorted(parts)]
            )
        except S3Error as exc:
            if exc.code == "NoSuchUpload":
                raise FileNotFoundError(f"no upload {upload_id} to {name}") from exc
            raise ValueError(f"the object store refused the parts: {exc.code} {exc.message}") from exc
        return result.version_id or "null"

    def abort_upload(self, name: str, upload_id: str) -> None:
        from minio.error import S3Error

        try:
            self.client._abort_multipart_upload(self.bucket, name, upload_id)
        except S3Error as exc:
            if exc.code != "NoSuchUpload":
                raise

    def pending_uploads(self, prefix: str) -> list[PendingUpload]:
        found: list[PendingUpload] = []
        key_marker: str | None = None
        upload_marker: str | None = None
        while True:
            result = self.client._list_multipart_uploads(
                self.bucket, prefix=prefix, key_marker=key_marker, upload_id_marker=upload_marker
            )
            for u in result.uploads:
                started = u.initiated_time.timestamp() if u.initiated_time else 0.0
                found.append(PendingUpload(u.object_name, u.upload_id or "", started))
            if not result.is_truncated:
                return found
            key_marker, upload_marker = result.next_key_marker, result.next_upload_id_marker

    def staged_objects(self) -> list[BlobInfo]:
        found = []
        for obj in self.client.list_objects(self.bucket, prefix=f"{self.blob_prefix}/staging/", recursive=True):
            modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
            found.append(BlobInfo(obj.object_name or "", obj.size or 0, modified))
        return found

    def presign_get(self, name: str, version_id: str | None, *, expires_s: int) -> str:
        return self.client.get_presigned_url(
            "GET",
            self.bucket,
            name,
            expires=timedelta(seconds=expires_s),
            version_id=None if version_id in (None, "null") else version_id,
        )

    def size(self, name: str, version_id: str | None = None) -> int:
        from minio.error import S3Error

        try:
            stat = self.client.stat_object(
                self.bucket, name, version_id=None if version_id in (None, "null") else version_id
            )
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion", "NoSuchObject", "ResourceNotFound"):
                raise FileNotFoundError(name) from exc
            raise
        return int(stat.size or 0)

    def read(self, name: str) -> Iterator[bytes]:
        return self._stream(name, None)

    def copy(self, source: str, target: str) -> None:
        from minio.commonconfig import ComposeSource, CopySource

        if self.size(source) <= 5 * 1024**3:
            self.client.copy_object(self.bucket, target, CopySource(self.bucket, source))
        else:  # a single S3 copy stops at 5 GiB; compose copies part by part inside the store
            self.client.compose_object(self.bucket, target, [ComposeSource(self.bucket, source)])

    def remove(self, name: str) -> None:
        self._remove_versions(name)
