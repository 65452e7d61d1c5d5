"""Versioned pointer objects in the object store: the storage under the object-store catalog.

The object-store catalog (``catalog/objectcatalog.py``) keeps what a database would keep — each
table's current metadata location and each namespace's properties — as small JSON objects in the
warehouse itself, under ``<warehouse>/_catalog/``::

    _catalog/namespaces/<namespace>/v0000000001.json      {"namespace": [...], "properties": {...}}
    _catalog/tables/<namespace>/<table>/v0000000007.json  {"metadata-location": "...", ...}

Every change is a *new* object with the next version number, created only if absent: S3's
``PUT`` with ``If-None-Match: *`` (AWS S3, MinIO and SeaweedFS refuse it with 412 when the key
exists), and on ``file://`` a fully written temporary file hard-linked to its final name
(``link`` fails with ``EEXIST``, and a reader never sees a half-written file). Whoever creates
version N+1 first wins; a second committer that read version N is refused and retries on top of
N+1. So one primitive — create if absent — gives compare-and-swap on both backends, no lost
update, and no lock anywhere. (A single object rewritten with ``If-Match: <etag>`` would do the
same on S3, but ``file://`` has no atomic compare-and-rename; create-only versions work on both.)

The current state of an entry is its highest version; a version whose body says
``"dropped": true`` is a tombstone (the name may be created again above it). Version objects are
immutable, so a reader caches their bodies by key forever and one ``LIST`` of a namespace's
table prefix tells which tables moved (their highest key changed) at the cost of a single
request; only moved tables' new pointers are fetched. Old versions are pruned by the committer
that creates every ``PRUNE_EVERY``-th version, keeping the latest ``KEEP`` (never the current).

Nothing here imports pyiceberg: the short read-only commands read pointers without it
(see ``catalog/pointers.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlparse

#: pyiceberg's ``py-catalog-impl`` for the object-store catalog (named here: importing it costs pyiceberg).
OBJECT_CATALOG_IMPL = "catalog.objectcatalog.ObjectStoreCatalog"
CATALOG_DIR = "_catalog"
NAMESPACES = "namespaces"
TABLES = "tables"
KEEP = 4
PRUNE_EVERY = 16
_LEVEL_SEPARATOR = "\x1f"  # between the levels of a nested namespace (the Iceberg REST spec's separator)


class VersionStoreError(OSError):
    """The object store could not be read or written."""


class VersionStore(Protocol):
    """Create-only objects under one root (a directory or an S3 prefix)."""

    @property
    def root(self) -> str:
        """Where the objects live, as a URI."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (relative to the root), at any depth."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes; None if there is none."""
        ...

    def create(self, key: str, data: bytes, *, contended: bool = True) -> bool:
        """Create the object unless it exists: True if created, False if it was already there.

        ``contended``: other writers may create the same key (a catalog pointer's next version); False
        for keys only their owner writes (a log segment of the lease holder), which spares S3 a check.
        """
        ...

    def delete(self, keys: Iterable[str]) -> None:
        """Remove objects (missing ones are ignored)."""
        ...


class LocalVersionStore:
    """Create-only files under a directory: written aside, fsync'd, then hard-linked into place."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def root(self) -> str:
        """The directory as a ``file://`` URI."""
        return self._root.absolute().as_uri()

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``; temporary files being written are left out."""
        base = self._root / prefix
        if not base.is_dir():
            return []
        found: list[str] = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self._root).as_posix()
            found.extend(f"{rel}/{name}" for name in files if not name.startswith("."))
        return found

    def get(self, key: str) -> bytes | None:
        """The file's bytes, or None."""
        try:
            return (self._root / key).read_bytes()
        except FileNotFoundError:
            return None

    def create(self, key: str, data: bytes, *, contended: bool = True) -> bool:  # noqa: ARG002 (the protocol's)
        """Write ``data`` to a temporary file, fsync it, and link it to ``key`` unless that exists
        (``link`` decides alone, contended or not)."""
        path = self._root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def delete(self, keys: Iterable[str]) -> None:
        """Remove files."""
        for key in keys:
            (self._root / key).unlink(missing_ok=True)


class S3VersionStore:
    """Create-only objects under an S3 prefix: ``PUT`` with ``If-None-Match: *``."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")

    @property
    def root(self) -> str:
        """The prefix as an ``s3://`` URI."""
        return f"s3://{self._bucket}/{self._prefix}"

    def _key(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (one ``LIST`` per 1,000 keys)."""
        from minio.error import S3Error

        start = len(self._prefix) + 1 if self._prefix else 0
        try:
            objects = self._client.list_objects(self._bucket, prefix=self._key(prefix), recursive=True)
            return [str(o.object_name)[start:] for o in objects]
        except S3Error as exc:
            raise VersionStoreError(f"cannot list {self.root}/{prefix}: {exc.code}") from exc

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None."""
        from minio.error import S3Error

        try:
            response = self._client.get_object(self._bucket, self._key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise VersionStoreError(f"cannot read {self.root}/{key}: {exc.code}") from exc
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def create(self, key: str, data: bytes, *, contended: bool = True) -> bool:
        """``PUT`` with ``If-None-Match: *``; True only if the object now holds ``data``.

        A 412 (or 409, a concurrent conditional write) means the key exists, but it may be *ours*:
        minio's HTTP pool retries a ``PUT`` whose answer was lost (a read timeout, a 5xx after the
        write), and the retry meets the object its first attempt created. So on a refusal, and
        after a success, the object's ETag (the MD5 of a single ``PUT``'s bytes) is compared with
        ours: a refusal of our own write counts as created (a commit or a log segment that landed is
        never reported lost, and then written twice), and a success whose object holds other bytes
        (a store whose conditional write was overtaken) counts as refused, so the caller retries on
        top of what is stored instead of acknowledging a write that is not there. That check after a
        success costs a request, and is made only for ``contended`` keys.
        """
        from minio.error import S3Error

        try:
            # minio's public put_object turns unknown headers into x-amz-meta-*; _put_object is the
            # plain PutObject call (as objects.py uses minio's multipart internals).
            self._client._put_object(
                self._bucket,
                self._key(key),
                data,
                headers={"If-None-Match": "*", "Content-Type": "application/json"},
            )
        except S3Error as exc:
            if exc.code in ("PreconditionFailed", "ConditionalRequestConflict") or exc.response.status in (409, 412):
                return self._holds(key, data)
            raise VersionStoreError(f"cannot write {self.root}/{key}: {exc.code}") from exc
        return self._holds(key, data) if contended else True

    def _holds(self, key: str, data: bytes) -> bool:
        """The object at ``key`` holds ``data`` (its ETag is their MD5)."""
        from minio.error import S3Error

        try:
            stat = self._client.stat_object(self._bucket, self._key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return False
            raise VersionStoreError(f"cannot read {self.root}/{key}: {exc.code}") from exc
        return str(stat.etag or "").strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()

    def delete(self, keys: Iterable[str]) -> None:
        """Remove objects in one batch request."""
        from minio.deleteobjects import DeleteObject

        errors = self._client.remove_objects(self._bucket, [DeleteObject(self._key(k)) for k in keys])
        for error in errors:  # the iterator performs the request
            raise VersionStoreError(f"cannot delete {error.name}: {error.code}")


def open_version_store(warehouse: str, properties: Mapping[str, str], *, directory: str = CATALOG_DIR) -> VersionStore:
    """Create-only objects under ``<warehouse>/<directory>`` (pyiceberg's ``s3.*`` properties for ``s3://``)."""
    url = urlparse(warehouse.rstrip("/"))
    if url.scheme in ("", "file"):
        return LocalVersionStore(Path(url.path) / directory)
    if url.scheme in ("s3", "s3a"):
        return S3VersionStore(_minio_client(properties), url.netloc, f"{url.path.strip('/')}/{directory}")
    raise ValueError(f"the object-store catalog needs a file:// or s3:// warehouse, not {warehouse!r}")


def _minio_client(properties: Mapping[str, str]) -> Any:
    from minio import Minio
    from minio.credentials.providers import AWSConfigProvider, ChainedProvider, EnvAWSProvider, IamAwsProvider

    region = properties.get("s3.region") or "us-east-1"
    endpoint = urlparse(properties.get("s3.endpoint") or f"https://s3.{region}.amazonaws.com")
    # Without keys in the settings, the AWS chain (environment, ~/.aws, instance or pod role), as pyarrow's FileIO does.
    keys = properties.get("s3.access-key-id")
    return Minio(
        endpoint.netloc or endpoint.path,
        access_key=keys,
        secret_key=properties.get("s3.secret-access-key"),
        session_token=properties.get("s3.session-token"),
        secure=endpoint.scheme != "http",
        region=region,
        credentials=None if keys else ChainedProvider([EnvAWSProvider(), AWSConfigProvider(), IamAwsProvider()]),
    )


# -- layout ------------------------------------------------------------------------------------


def namespace_segment(namespace: tuple[str, ...]) -> str:
    """A namespace as one path segment (levels joined by the unit separator, then percent-encoded)."""
    return _segment(_LEVEL_SEPARATOR.join(namespace))


def namespace_from_segment(segment: str) -> tuple[str, ...]:
    """The namespace a path segment names."""
    return tuple(unquote(segment).split(_LEVEL_SEPARATOR))


def name_segment(name: str) -> str:
    """A table name as one path segment."""
    return _segment(name)


def _segment(text: str) -> str:
    if not text or text in (".", ".."):
        raise ValueError(f"invalid catalog name {text!r}")
    return quote(text, safe="").replace(".", "%2E")


def namespace_prefix(namespace: tuple[str, ...]) -> str:
    """Where a namespace's versions live."""
    return f"{NAMESPACES}/{namespace_segment(namespace)}/"


def table_prefix(namespace: tuple[str, ...], name: str) -> str:
    """Where a table's pointer versions live."""
    return f"{TABLES}/{namespace_segment(namespace)}/{name_segment(name)}/"


def version_key(prefix: str, version: int) -> str:
    """The key of one version of an entry."""
    return f"{prefix}v{version:010d}.json"


def _version_of(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    if name.startswith("v") and name.endswith(".json") and name[1:-5].isdigit():
        return int(name[1:-5])
    return None


@dataclass(frozen=True)
class Version:
    """One version of a catalog entry: its number, key and body (``None`` number 0: no entry yet)."""

    number: int
    key: str
    body: dict[str, Any]
    older: tuple[str, ...] = ()

    @property
    def dropped(self) -> bool:
        """A tombstone: the entry was dropped at this version."""
        return bool(self.body.get("dropped"))


class Versions:
    """Reads and writes versioned entries of one store; caches immutable bodies by key."""

    def __init__(self, store: VersionStore) -> None:
        self.store = store
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _body(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        data = self.store.get(key)
        if data is None:
            return None
        body: dict[str, Any] = json.loads(data)
        with self._lock:
            if len(self._cache) > 10_000:  # bodies of superseded versions are never asked for again
                self._cache.clear()
            self._cache[key] = body
        return body

    def latest(self, prefix: str) -> Version | None:
        """The highest version under ``prefix`` (an entry's directory), or None if it has none."""
        for _attempt in range(5):
            keys = sorted((v, k) for k in self.store.list(prefix) if (v := _version_of(k)) is not None)
            if not keys:
                return None
            number, key = keys[-1]
            body = self._body(key)
            if body is not None:
                return Version(number, key, body, tuple(k for _, k in keys[:-1]))
            # pruned between the listing and the read: a newer version exists; list again
        raise VersionStoreError(f"the versions under {self.store.root}/{prefix} keep moving")

    def latest_under(self, prefix: str) -> dict[str, Version]:
        """The highest version of every entry under ``prefix`` in one listing, by entry segment."""
        highest: dict[str, tuple[int, str]] = {}
        for key in self.store.list(prefix):
            number = _version_of(key)
            if number is None:
                continue
            entry = key[len(prefix) :].split("/", 1)[0]
            if entry not in highest or highest[entry][0] < number:
                highest[entry] = (number, key)
        found: dict[str, Version] = {}
        for entry, (number, key) in highest.items():
            body = self._body(key)
            if body is None:  # pruned since the listing: read that entry alone
                latest = self.latest(f"{prefix}{entry}/")
                if latest is None:
                    continue
                found[entry] = latest
            else:
                found[entry] = Version(number, key, body)
        return found

    def put_next(self, prefix: str, current: Version | None, body: Mapping[str, Any]) -> Version | None:
        """Create the version after ``current``; None if somebody else created it first."""
        number = (current.number if current else 0) + 1
        key = version_key(prefix, number)
        # The writer's nonce: two writers of equal bodies (the same namespace created twice) never
        # write equal bytes, so the store can tell whose create landed (``S3VersionStore.create``).
        body = {**body, "writer": uuid.uuid4().hex}
        data = json.dumps(body, separators=(",", ":")).encode()
        if not self.store.create(key, data):
            return None
        with self._lock:
            self._cache[key] = body
        if current is not None and number % PRUNE_EVERY == 0:
            stale = [k for k in current.older if (_version_of(k) or 0) <= number - KEEP]
            with contextlib.suppress(VersionStoreError):  # pruning is housekeeping; the next one retries
                self.store.delete(stale)
        return Version(number, key, body)


def read_table_pointers(versions: Versions, namespace: tuple[str, ...]) -> dict[str, str]:
    """Table name -> current metadata location of every table in ``namespace``: one listing."""
    prefix = f"{TABLES}/{namespace_segment(namespace)}/"
    return {
        unquote(entry): str(v.body["metadata-location"])
        for entry, v in versions.latest_under(prefix).items()
        if not v.dropped and v.body.get("metadata-location")
    }
