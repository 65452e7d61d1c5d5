"""Direct transfers for the HTTP client: parallel multipart uploads and ranged downloads, straight
to and from the object store through URLs lakeops signed.

Upload: the file's sha256 is computed first and sent with the request for an upload plan, so bytes
the store already holds are not sent at all (lakeops records a reference), and an interrupted
upload of the same bytes resumes: lakeops lists the parts the store already holds and signs URLs
for the others only. Parts go out from a small thread pool, each read from the file at its offset
(one part in memory per thread), and are retried a few times before the upload fails.

Download: the object's size comes with the signed URL; the file is cut into ranges fetched in
parallel and written at their offsets (``os.pwrite``), so memory holds one range per thread.

The object store is spoken to with urllib3, not httpx: measured here on a 64 MiB presigned GET,
urllib3 read 310-440 MB/s and httpx 90-130 MB/s (httpx reads bodies in small pieces).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import urllib3

from lakeops.errors import BackendUnavailableError, LakeopsError

HASH_CHUNK = 8 * 1024 * 1024
RANGE_BYTES = 16 * 1024 * 1024
WORKERS = 8
ATTEMPTS = 4

Progress = Callable[[int], object]


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def store_pool(workers: int = WORKERS) -> urllib3.PoolManager:
    """A connection pool for presigned URLs: one connection per worker, no retries of its own."""
    return urllib3.PoolManager(
        maxsize=max(workers, 4),
        retries=False,
        timeout=urllib3.Timeout(connect=10.0, read=120.0),
    )


def _retry(what: str, fn: Callable[[], Any]) -> Any:
    delay = 0.2
    for attempt in range(ATTEMPTS):
        try:
            return fn()
        except (urllib3.exceptions.HTTPError, _RetryableStatusError) as exc:
            if attempt == ATTEMPTS - 1:
                raise BackendUnavailableError(f"{what} failed after {ATTEMPTS} attempts: {exc}") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


class _RetryableStatusError(Exception):
    pass


def _check(response: urllib3.BaseHTTPResponse, what: str) -> urllib3.BaseHTTPResponse:
    if response.status >= 500:
        raise _RetryableStatusError(f"{what}: HTTP {response.status}")
    if response.status >= 400:
        body = response.data[:300].decode(errors="replace")
        raise LakeopsError(f"{what} was refused by the object store: HTTP {response.status} {body}")
    return response


def upload_parts(
    http: urllib3.PoolManager,
    source: Path,
    *,
    part_size: int,
    parts: list[Mapping[str, Any]],
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> list[tuple[int, str]]:
    """PUT each part's bytes to its URL in parallel; returns ``(part_number, etag)`` per part sent."""
    fd = os.open(source, os.O_RDONLY)

    def send(part: Mapping[str, Any]) -> tuple[int, str]:
        number = int(part["part_number"])
        data = os.pread(fd, part_size, (number - 1) * part_size)
        headers = dict(part.get("headers") or {})
        response = _retry(
            f"uploading part {number} of {source.name}",
            lambda: _check(http.request("PUT", part["url"], body=data, headers=headers), f"part {number}"),
        )
        if progress is not None:
            progress(len(data))
        return number, response.headers.get("etag", "").strip('"')

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(parts)))) as pool:
            return list(pool.map(send, parts))
    finally:
        os.close(fd)


def download_ranges(
    http: urllib3.PoolManager,
    url: str,
    dest: Path,
    *,
    size: int,
    headers: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    workers: int = WORKERS,
    range_bytes: int = RANGE_BYTES,
) -> None:
    """GET ``size`` bytes from ``url`` in parallel ranges into ``dest``."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        starts = list(range(0, size, range_bytes))

        def fetch(start: int) -> None:
            end = min(start + range_bytes, size) - 1
            wanted = {**(headers or {}), "Range": f"bytes={start}-{end}"}
            response = _retry(
                f"downloading bytes {start}-{end} of {dest.name}",
                lambda: _check(http.request("GET", url, headers=wanted), f"range {start}-{end}"),
            )
            data = response.data
            if len(data) != end - start + 1:
                raise LakeopsError(f"the object store sent {len(data)} bytes for range {start}-{end}")
            os.pwrite(fd, data, start)
            if progress is not None:
                progress(len(data))

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(starts)))) as pool:
            list(pool.map(fetch, starts))
    finally:
        os.close(fd)
