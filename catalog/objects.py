"""Object storage for artifacts: versioned objects on a local directory or any S3 endpoint.

Both stores keep every version of a key. S3 does it with bucket versioning (enabled when the
store opens; the version id comes from the PUT). The local store writes each upload once
under ``.versions/<key>/<version_id>`` and hard-links the newest to ``<key>``, so the tree
under the root looks like the artifacts themselves and no byte is copied twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


class ObjectStore(Protocol):
    """Where artifact bytes live."""

    def put_file(self, key: str, source: Path) -> str:
        """Store ``source`` under ``key`` as a new version; returns the version id."""
        ...

    def iter_bytes(self, key: str, version_id: str) -> Iterator[bytes]:
        """Stream one version's bytes in chunks.

        Raises:
            FileNotFoundError: the version does not exist.
        """
        ...

    def delete(self, key: str) -> None:
        """Hide ``key``'s current object (versions stay retrievable where the store keeps them)."""
        ...


class LocalObjectStore:
    """Versioned objects in a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _version_path(self, key: str, version_id: str) -> Path:
        return self.root / ".versions" / key / version_id

    def put_file(self, key: str, source: Path) -> str:
        version_id = uuid.uuid4().hex
        target = self._version_path(key, version_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            source.replace(target)  # the spooled upload becomes the version: no copy
        except OSError:
            shutil.copyfile(source, target)
        with target.open("rb") as f:
            os.fsync(f.fileno())
        current = self.root / key
        current.parent.mkdir(parents=True, exist_ok=True)
        tmp = current.with_name(f".{current.name}.{version_id}.tmp")
        tmp.hardlink_to(target)
        tmp.replace(current)
        return version_id

    def iter_bytes(self, key: str, version_id: str) -> Iterator[bytes]:
        path = self._version_path(key, version_id)
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


class S3ObjectStore:
    """Versioned objects in an S3 bucket (MinIO, SeaweedFS, AWS), through the minio SDK."""

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        prefix: str,
        access_key: str | None,
        secret_key: str | None,
        region: str,
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
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
            self.client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
        except S3Error as exc:  # versioning may be refused by policy: uploads still work, overwrites replace
            log.warning("could not enable versioning on bucket %s: %s", bucket, exc)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, source: Path) -> str:
        result = self.client.fput_object(self.bucket, self._key(key), str(source), part_size=16 * CHUNK)
        return result.version_id or "null"  # S3's own name for the version of an unversioned object

    def iter_bytes(self, key: str, version_id: str) -> Iterator[bytes]:
        from minio.error import S3Error

        try:
            response = self.client.get_object(
                self.bucket, self._key(key), version_id=None if version_id == "null" else version_id
            )
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion"):
                raise FileNotFoundError(f"{key} version {version_id}") from exc
            raise
        try:
            yield from response.stream(CHUNK)
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._key(key))
