"""How the client reaches the lake: over HTTP to ``lakeops serve``, or embedded in the process.

Both transports speak the same small vocabulary (create a run, log a batch, ingest metric
points as Arrow, search, read history, run SQL, upload an artifact) and return the native
API's JSON shapes as plain dicts, so everything above them is written once.

Errors are the domain's: a native error body ``{"error": {"code": "not_found", ...}}`` becomes
``NotFoundError`` again on this side. A server that cannot be used is a ``BackendUnavailableError``
whose subclass and message say what happened, because each calls for something else:

- connection refused / unknown host: ``ServerUnreachableError`` naming the URL (wrong port, or
  the server is not running);
- no answer within ``timeout_s``: ``ServerTimeoutError`` ("timed out after 30 s; raise timeout_s");
- the connection dropped before an answer (typically a keep-alive connection the server closed
  while the request was sent): an idempotent request (GET, PUT, DELETE, and the read-only POSTs
  search and SQL) is sent again once on a fresh connection, transparently; any other is a
  ``BackendUnavailableError`` saying the connection was dropped;
- 502/503/504: ``BackendUnavailableError`` with the status.

The HTTP transport never imports pyiceberg (the import costs ~0.5 s); the embedded one opens
the store when it is built.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import quote

from lakeops.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    ConflictError,
    DataQualityError,
    InvalidArgumentError,
    LakeopsError,
    NotFoundError,
    PermissionDeniedError,
    ServerTimeoutError,
    ServerUnreachableError,
    UnauthenticatedError,
)

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa
    import urllib3

    from lakeops.datasets import DatasetService
    from lakeops.lineage import LineageService
    from lakeops.quality.gate import QualityGate
    from lakeops.quality.suites import QualityService
    from lakeops.registry import RegistryService
    from lakeops.services.checkpoints import CheckpointService
    from lakeops.settings import LakeopsSettings

ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARTIFACT_SCHEME = re.compile(r"^mlflow-artifacts:/*")
CHUNK_BYTES = 1024 * 1024
# Files this large go straight to the object store where it allows (smaller ones: one request).
DIRECT_MIN_BYTES = 8 * 1024 * 1024

_ERRORS: dict[str, type[LakeopsError]] = {
    "not_found": NotFoundError,
    "already_exists": AlreadyExistsError,
    "conflict": ConflictError,
    "invalid_argument": InvalidArgumentError,
    "data_quality": DataQualityError,
    "backend_unavailable": BackendUnavailableError,
    "unauthenticated": UnauthenticatedError,
    "permission_denied": PermissionDeniedError,
}

Progress = Callable[[int], object]


class Transport(Protocol):
    """What the client needs from the lake. Every method raises ``LakeopsError`` subclasses."""

    location: str

    def experiment_by_name(self, name: str) -> dict[str, Any]:
        """The experiment called ``name``. Raises: NotFoundError."""
        ...

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment. Raises: NotFoundError."""
        ...

    def create_experiment(self, name: str, *, tags: Mapping[str, str]) -> dict[str, Any]:
        """A new experiment. Raises: AlreadyExistsError, InvalidArgumentError."""
        ...

    def experiments(self) -> list[dict[str, Any]]:
        """Every active experiment."""
        ...

    def create_run(
        self, experiment_id: str, *, run_name: str | None, user_id: str | None, tags: Mapping[str, str]
    ) -> dict[str, Any]:
        """A new running run. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def update_run(self, run_id: str, *, status: str, end_time: int | None) -> None:
        """Set a run's status (and end time). Raises: NotFoundError, InvalidArgumentError."""
        ...

    def log_batch(self, run_id: str, *, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        """Params and tags of one run, atomically. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def ingest(self, points: pa.Table) -> int:
        """Metric points (run_id, key, value, timestamp, step) of any runs. Raises: InvalidArgumentError."""
        ...

    def run(self, run_id: str) -> dict[str, Any]:
        """One run with params, latest metrics and tags. Raises: NotFoundError."""
        ...

    def search_runs(
        self, experiment_ids: Sequence[str], *, filter: str | None, order_by: Sequence[str], view_type: str
    ) -> list[dict[str, Any]]:
        """Every matching run, in order (all pages). Raises: InvalidArgumentError."""
        ...

    def metric_history(
        self,
        run_id: str,
        key: str,
        *,
        points: int | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> pa.Table:
        """``step``, ``timestamp`` (ms), ``value`` of one metric; with ``points``, downsampled
        (``lakeops.downsample``) between ``min_step`` and ``max_step``. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def sql(self, query: str, *, params: Sequence[Any] | None, as_of: str | None, max_rows: int | None) -> pa.Table:
        """The answer of a read-only SQL query. Raises: InvalidArgumentError."""
        ...

    def upload_artifact(self, path: str, source: Path, *, progress: Progress | None) -> dict[str, Any]:
        """Store a file as the newest version of ``path``. Raises: InvalidArgumentError."""
        ...

    def read_artifact(self, path: str, *, version_id: str | None) -> bytes:
        """The bytes of a version of an artifact (the newest by default). Raises: NotFoundError."""
        ...

    def download_artifact(self, path: str, dest: Path, *, version_id: str | None) -> dict[str, Any]:
        """Write a version of an artifact to ``dest``, streaming; returns its version. Raises: NotFoundError."""
        ...

    # -- checkpoints -------------------------------------------------------------------------------

    def create_checkpoint(
        self, run_id: str, *, step: int, metrics: Mapping[str, float], is_dir: bool, files: list[str]
    ) -> dict[str, Any]:
        """Record uploaded files as the run's checkpoint at ``step``. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The run's current checkpoints, by step. Raises: NotFoundError."""
        ...

    def checkpoint(self, run_id: str, *, step: int | None, metric: str | None, mode: str) -> dict[str, Any]:
        """The checkpoint at ``step``, the best by ``metric``, or the latest (both None). Raises: NotFoundError."""
        ...

    def delete_checkpoint(self, run_id: str, step: int) -> None:
        """Remove the checkpoint at ``step``. Raises: NotFoundError."""
        ...

    # -- datasets, quality, lineage ----------------------------------------------------------------

    def log_dataframe(
        self, name: str, table: pa.Table, *, run_id: str | None, direction: str, validate: bool
    ) -> dict[str, Any]:
        """A table as a dataset version (stored as Parquet). Raises: InvalidArgumentError, DataQualityError."""
        ...

    def log_dataset_artifact(self, name: str, path: str, *, run_id: str | None, direction: str) -> dict[str, Any]:
        """A file or folder of the artifact store as a dataset version. Raises: NotFoundError."""
        ...

    def log_dataset_location(self, name: str, uri: str, *, run_id: str | None, direction: str) -> dict[str, Any]:
        """Data already in the object store, by reference. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def dataset_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a dataset, oldest first. Raises: NotFoundError."""
        ...

    def dataset_version(self, version_id: str) -> dict[str, Any]:
        """One dataset version. Raises: NotFoundError."""
        ...

    def attach_suite(self, name: str, suite_name: str, expectations: list[dict[str, Any]]) -> dict[str, Any]:
        """Attach (or replace) an expectation suite on a dataset name. Raises: InvalidArgumentError."""
        ...

    def validate(self, version_id: str, suite_name: str | None) -> list[dict[str, Any]]:
        """Validate a dataset version; the stored results. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def validations(self, version_id: str) -> list[dict[str, Any]]:
        """Every validation of a dataset version. Raises: NotFoundError."""
        ...

    def quality_gate(self, run_id: str) -> dict[str, Any]:
        """What the alias gate says about a model trained by this run: allowed, reasons, training_datasets."""
        ...

    def post_comment(self, target: str, body: str, *, author: str | None) -> dict[str, Any]:
        """A comment on ``run:<id>``, ``model:<name>`` or ``version:<name>/<n>``. Raises: NotFoundError."""
        ...

    def comments(self, target: str) -> list[dict[str, Any]]:
        """The comments on a target, oldest first. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def lineage(self, kind: str, node_id: str, *, direction: str, depth: int, as_of: str | None) -> dict[str, Any]:
        """Nodes and edges around one node. Raises: InvalidArgumentError, NotFoundError."""
        ...

    # -- registry ------------------------------------------------------------------------------------

    def create_registered_model(self, name: str) -> dict[str, Any]:
        """A new registered model. Raises: AlreadyExistsError, InvalidArgumentError."""
        ...

    def create_model_version(self, name: str, source: str, *, run_id: str | None) -> dict[str, Any]:
        """A new version of a registered model. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def model_version(self, name: str, version: int) -> dict[str, Any]:
        """One model version. Raises: NotFoundError."""
        ...

    def model_version_by_alias(self, name: str, alias: str) -> dict[str, Any]:
        """The version an alias points at. Raises: NotFoundError."""
        ...

    def set_alias(self, name: str, alias: str, version: int, *, force: bool, reason: str | None) -> dict[str, Any]:
        """Point an alias at a version. Raises: NotFoundError, DataQualityError, InvalidArgumentError."""
        ...

    def record_deployment(
        self, name: str, version: int, *, environment: str, application_version: str | None
    ) -> dict[str, Any]:
        """Record that a version runs in an environment. Raises: NotFoundError, InvalidArgumentError."""
        ...

    def close(self) -> None:
        """Release connections (and the store, embedded)."""
        ...


def artifact_path(artifact_uri: str, name: str) -> str:
    """Where a run's artifact ``name`` lives in the artifact store (``<exp>/<run>/artifacts/<name>``)."""
    if not ARTIFACT_SCHEME.match(artifact_uri):
        raise InvalidArgumentError(
            f"Run artifact location {artifact_uri!r} is not served by lakeops; log artifacts there directly"
        )
    return f"{ARTIFACT_SCHEME.sub('', artifact_uri).rstrip('/')}/{name.lstrip('/')}"


def _read_chunks(handle: BinaryIO, progress: Progress | None) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_BYTES):
        if progress is not None:
            progress(len(chunk))
        yield chunk


# -- HTTP -----------------------------------------------------------------------------------------


class HttpTransport:
    """The native API of a running ``lakeops serve`` (``/api/v1``)."""

    # Requests that may be sent twice without harm (no write, or a write of the same final state).
    IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
    IDEMPOTENT_POSTS = frozenset({"/runs/search", "/sql"})
    # Calls that may wait for great-expectations on the server (seconds to import, then validation).
    SLOW_TIMEOUT_S = 300.0

    def __init__(
        self, url: str, *, timeout_s: float = 30.0, token: str | None = None, auth: tuple[str, str] | None = None
    ) -> None:
        import httpx

        self.location = url.rstrip("/")
        self._api = f"{self.location}/api/v1"
        self.timeout_s = timeout_s
        self.answered = False  # whether the server ever answered this client
        # One pool per thread that uses it: the sender thread and the caller's. Idle connections
        # are dropped after 2 s, well before the server closes them (uvicorn: 5 s; lakeops serve: 65 s).
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        # Credentials go to lakeops only (presigned object-store URLs are fetched by another client).
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            timeout=self._timeout, limits=httpx.Limits(keepalive_expiry=2.0), headers=headers, auth=auth
        )

    def _request(self, method: str, path: str, *, timeout_s: float | None = None, **kwargs: Any) -> httpx.Response:
        import httpx

        url = f"{self._api}{path}"
        if timeout_s is not None:
            kwargs["timeout"] = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        waited = timeout_s if timeout_s is not None else self.timeout_s
        replayable = method in self.IDEMPOTENT_METHODS or (method == "POST" and path in self.IDEMPOTENT_POSTS)
        replayable = replayable and not _is_stream(kwargs.get("content"))
        for attempt in (1, 2):
            try:
                response = self._http.request(method, url, **kwargs)
                break
            except httpx.ConnectError as exc:
                raise ServerUnreachableError(
                    f"cannot connect to lakeops at {self.location}: {_reason(exc)}. Is `lakeops serve` running "
                    "there (host and port)?",
                    details={"url": self.location},
                ) from exc
            except httpx.TimeoutException as exc:
                what = "connect" if isinstance(exc, httpx.ConnectTimeout) else "answer"
                raise ServerTimeoutError(
                    f"lakeops at {self.location} did not {what} {method} {path} in time: timed out after "
                    f"{waited:g} s; raise timeout_s (lakeops.connect(url, timeout_s=...)) if the server is busy",
                    details={"url": self.location, "timeout_s": waited},
                ) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if replayable and attempt == 1:
                    continue  # a dropped keep-alive connection: send it again on a fresh one
                raise BackendUnavailableError(
                    f"lakeops at {self.location} dropped the connection before answering {method} {path} "
                    f"({_reason(exc)}); see the server's log",
                    details={"url": self.location},
                ) from exc
        self.answered = True
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def experiment_by_name(self, name: str) -> dict[str, Any]:
        """The experiment called ``name``."""
        if "/" in name:  # the by-name route takes one path segment; look such names up in the list
            for experiment in self.experiments():
                if experiment["name"] == name:
                    return experiment
            raise NotFoundError(f"Experiment with name={name!r} not found")
        result: dict[str, Any] = self._request("GET", f"/experiments/by-name/{quote(name, safe='')}").json()
        return result

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment."""
        result: dict[str, Any] = self._request("GET", f"/experiments/{quote(experiment_id, safe='')}").json()
        return result

    def create_experiment(self, name: str, *, tags: Mapping[str, str]) -> dict[str, Any]:
        """A new experiment."""
        result: dict[str, Any] = self._request("POST", "/experiments", json={"name": name, "tags": dict(tags)}).json()
        return result

    def experiments(self) -> list[dict[str, Any]]:
        """Every active experiment (all pages)."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"max_results": 1000, **({"page_token": token} if token else {})}
            page = self._request("GET", "/experiments", params=params).json()
            out.extend(page["experiments"])
            token = page.get("next_page_token")
            if not token:
                return out

    def create_run(
        self, experiment_id: str, *, run_name: str | None, user_id: str | None, tags: Mapping[str, str]
    ) -> dict[str, Any]:
        """A new running run."""
        body = {"run_name": run_name, "user_id": user_id, "tags": dict(tags)}
        result: dict[str, Any] = self._request(
            "POST", f"/experiments/{quote(experiment_id, safe='')}/runs", json=body
        ).json()
        return result

    def update_run(self, run_id: str, *, status: str, end_time: int | None) -> None:
        """Set a run's status and end time."""
        self._request("PATCH", f"/runs/{run_id}", json={"status": status, "end_time": end_time})

    def log_batch(self, run_id: str, *, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        """Params and tags of one run."""
        self._request("POST", f"/runs/{run_id}/batch", json={"params": dict(params), "tags": dict(tags)})

    def ingest(self, points: pa.Table) -> int:
        """Metric points as one Arrow IPC stream to ``POST /metrics/ingest``."""
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, points.schema) as writer:
            writer.write_table(points)
        body = sink.getvalue()
        response = self._request(
            "POST", "/metrics/ingest", content=body.to_pybytes(), headers={"content-type": ARROW_STREAM}
        )
        return int(response.json()["ingested"])

    def run(self, run_id: str) -> dict[str, Any]:
        """One run."""
        result: dict[str, Any] = self._request("GET", f"/runs/{run_id}").json()
        return result

    def search_runs(
        self, experiment_ids: Sequence[str], *, filter: str | None, order_by: Sequence[str], view_type: str
    ) -> list[dict[str, Any]]:
        """Every matching run, following page tokens to the end."""
        runs: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            body = {
                "experiment_ids": list(experiment_ids),
                "filter": filter,
                "order_by": list(order_by),
                "view_type": view_type,
                "max_results": 1000,
                "page_token": token,
            }
            page = self._request("POST", "/runs/search", json=body).json()
            runs.extend(page["runs"])
            token = page.get("next_page_token")
            if not token:
                return runs

    def metric_history(
        self,
        run_id: str,
        key: str,
        *,
        points: int | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> pa.Table:
        """One metric's history through the Arrow history endpoint (the downsampled one with ``points``)."""
        import pyarrow as pa

        if points is None:
            path, query = f"/runs/{run_id}/metrics/{quote(key)}/history", {}
        else:
            path = f"/runs/{run_id}/metrics/{quote(key)}/downsampled"
            bounds = {"min_step": min_step, "max_step": max_step}
            query = {"points": points, **{k: v for k, v in bounds.items() if v is not None}}
        response = self._request("GET", path, params=query, headers={"accept": ARROW_STREAM})
        return pa.ipc.open_stream(pa.py_buffer(response.content)).read_all()

    def sql(self, query: str, *, params: Sequence[Any] | None, as_of: str | None, max_rows: int | None) -> pa.Table:
        """``POST /sql`` answered as an Arrow IPC stream."""
        import pyarrow as pa

        body: dict[str, Any] = {"sql": query}
        if params is not None:
            body["params"] = list(params)
        if as_of is not None:
            body["as_of"] = as_of
        if max_rows is not None:
            body["max_rows"] = max_rows
        response = self._request("POST", "/sql", json=body, headers={"accept": ARROW_STREAM})
        return pa.ipc.open_stream(pa.py_buffer(response.content)).read_all()

    @functools.cached_property
    def _store_http(self) -> urllib3.PoolManager:
        """A pool for the object store's presigned URLs."""
        from lakeops.client.transfers import store_pool

        return store_pool()

    def upload_artifact(self, path: str, source: Path, *, progress: Progress | None) -> dict[str, Any]:
        """Store a file: small ones through lakeops, large ones straight to the object store.

        A file of ``DIRECT_MIN_BYTES`` or more is hashed first; lakeops then records it at once if
        the store holds those bytes already, or signs part URLs the parts go to in parallel (a
        store without direct transfers answers ``proxy`` and the bytes go through lakeops).
        """
        from lakeops.client.transfers import file_sha256, upload_parts

        size = source.stat().st_size
        if size >= DIRECT_MIN_BYTES:
            sha256 = file_sha256(source)
            plan = self._json("POST", "/artifact-uploads", json={"path": path, "size_bytes": size, "sha256": sha256})
            if plan["status"] == "stored":
                if progress is not None:
                    progress(size)
                return dict(plan["version"])
            if plan["status"] == "upload":
                if progress is not None:
                    progress(sum(int(p["size_bytes"]) for p in plan["done_parts"]))
                sent = upload_parts(
                    self._store_http, source, part_size=int(plan["part_size"]), parts=plan["parts"], progress=progress
                )
                parts = sorted([*sent, *((int(p["part_number"]), p["etag"]) for p in plan["done_parts"])])
                body = {
                    "path": path,
                    "size_bytes": size,
                    "sha256": sha256,
                    "parts": [{"part_number": n, "etag": e} for n, e in parts],
                }
                return self._json("POST", f"/artifact-uploads/{quote(plan['upload_id'], safe='')}/complete", json=body)
        return self._proxied_upload(path, source, size=size, progress=progress)

    def _proxied_upload(self, path: str, source: Path, *, size: int, progress: Progress | None) -> dict[str, Any]:
        """Stream a file to ``PUT /artifacts/{path}`` in 1 MiB chunks."""
        with source.open("rb") as handle:
            response = self._request(
                "PUT",
                f"/artifacts/{quote(path)}",
                content=_read_chunks(handle, progress),
                headers={"content-length": str(size), "content-type": "application/octet-stream"},
            )
        result: dict[str, Any] = response.json()
        return result

    def read_artifact(self, path: str, *, version_id: str | None) -> bytes:
        """``GET /artifacts/{path}``."""
        params = {"version_id": version_id} if version_id else {}
        return self._request("GET", f"/artifacts/{quote(path)}", params=params).content

    def download_artifact(self, path: str, dest: Path, *, version_id: str | None) -> dict[str, Any]:
        """Write a version to ``dest``: straight from the object store in parallel ranges when lakeops
        signs a URL for it, else streamed through lakeops."""
        from lakeops.client.transfers import download_ranges

        params = {"version_id": version_id} if version_id else {}
        found = self._json("GET", f"/artifact-urls/{quote(path)}", params=params)
        version: dict[str, Any] = found["version"]
        if found["url"] is not None:
            download_ranges(
                self._store_http, found["url"], dest, size=int(version["size_bytes"]), headers=found["headers"]
            )
            return version
        return self._proxied_download(path, dest, version_id=version["version_id"])

    def _proxied_download(self, path: str, dest: Path, *, version_id: str | None) -> dict[str, Any]:
        """``GET /artifacts/{path}``, streamed to ``dest`` in 1 MiB chunks."""
        import httpx

        params = {"version_id": version_id} if version_id else {}
        try:
            with self._http.stream("GET", f"{self._api}/artifacts/{quote(path)}", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                with dest.open("wb") as out:
                    for chunk in response.iter_bytes(CHUNK_BYTES):
                        out.write(chunk)
                headers = response.headers
        except httpx.TransportError as exc:
            raise BackendUnavailableError(f"lakeops at {self.location} is unreachable: {exc}") from exc
        return {
            "path": path,
            "version_id": headers.get("x-lakeops-version-id"),
            "sha256": headers.get("x-lakeops-sha256"),
            "size_bytes": dest.stat().st_size,
        }

    # -- checkpoints -------------------------------------------------------------------------------

    def create_checkpoint(
        self, run_id: str, *, step: int, metrics: Mapping[str, float], is_dir: bool, files: list[str]
    ) -> dict[str, Any]:
        """``POST /runs/{run_id}/checkpoints``."""
        body = {"step": step, "metrics": dict(metrics), "is_dir": is_dir, "files": files}
        return self._json("POST", f"/runs/{quote(run_id)}/checkpoints", json=body)

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """``GET /runs/{run_id}/checkpoints``."""
        found: list[dict[str, Any]] = self._json("GET", f"/runs/{quote(run_id)}/checkpoints")["checkpoints"]
        return found

    def checkpoint(self, run_id: str, *, step: int | None, metric: str | None, mode: str) -> dict[str, Any]:
        """``GET /runs/{run_id}/checkpoints/{step | latest | best}``."""
        base = f"/runs/{quote(run_id)}/checkpoints"
        if step is not None:
            return self._json("GET", f"{base}/{int(step)}")
        if metric is not None:
            return self._json("GET", f"{base}/best", params={"metric": metric, "mode": mode})
        return self._json("GET", f"{base}/latest")

    def delete_checkpoint(self, run_id: str, step: int) -> None:
        """``DELETE /runs/{run_id}/checkpoints/{step}``."""
        self._request("DELETE", f"/runs/{quote(run_id)}/checkpoints/{int(step)}")

    # -- datasets, quality, lineage ----------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request(method, path, **kwargs).json()
        return result

    def log_dataframe(
        self, name: str, table: pa.Table, *, run_id: str | None, direction: str, validate: bool
    ) -> dict[str, Any]:
        """``POST /datasets/{name}/dataframe`` with the table as an Arrow IPC stream."""
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        query: dict[str, Any] = {"direction": direction, "validate": "true" if validate else "false"}
        if run_id is not None:
            query["run_id"] = run_id
        return self._json(
            "POST",
            f"/datasets/{quote(name)}/dataframe",
            params=query,
            content=sink.getvalue().to_pybytes(),
            headers={"content-type": ARROW_STREAM},
            timeout_s=max(self.timeout_s, self.SLOW_TIMEOUT_S) if validate else None,
        )

    def log_dataset_artifact(self, name: str, path: str, *, run_id: str | None, direction: str) -> dict[str, Any]:
        """``POST /datasets`` for a file or folder of the artifact store."""
        body = {"name": name, "artifact_path": path, "run_id": run_id, "direction": direction}
        return self._json("POST", "/datasets", json=body)

    def log_dataset_location(self, name: str, uri: str, *, run_id: str | None, direction: str) -> dict[str, Any]:
        """``POST /datasets`` for data already in the object store."""
        body = {"name": name, "location": uri, "run_id": run_id, "direction": direction}
        return self._json("POST", "/datasets", json=body)

    def dataset_versions(self, name: str) -> list[dict[str, Any]]:
        """``GET /datasets/{name}/versions``."""
        versions: list[dict[str, Any]] = self._json("GET", f"/datasets/{quote(name)}/versions")["versions"]
        return versions

    def dataset_version(self, version_id: str) -> dict[str, Any]:
        """``GET /dataset-versions/{id}``."""
        return self._json("GET", f"/dataset-versions/{quote(version_id, safe='')}")

    def attach_suite(self, name: str, suite_name: str, expectations: list[dict[str, Any]]) -> dict[str, Any]:
        """``PUT /datasets/{name}/suites/{suite}``."""
        return self._json(
            "PUT",
            f"/datasets/{quote(name)}/suites/{quote(suite_name, safe='')}",
            json={"expectations": expectations},
            timeout_s=max(self.timeout_s, self.SLOW_TIMEOUT_S),
        )

    def validate(self, version_id: str, suite_name: str | None) -> list[dict[str, Any]]:
        """``POST /dataset-versions/{id}/validations``."""
        path = f"/dataset-versions/{quote(version_id, safe='')}/validations"
        timeout_s = max(self.timeout_s, self.SLOW_TIMEOUT_S)
        found: list[dict[str, Any]] = self._json("POST", path, json={"suite_name": suite_name}, timeout_s=timeout_s)[
            "validations"
        ]
        return found

    def validations(self, version_id: str) -> list[dict[str, Any]]:
        """``GET /dataset-versions/{id}/validations``."""
        path = f"/dataset-versions/{quote(version_id, safe='')}/validations"
        found: list[dict[str, Any]] = self._json("GET", path)["validations"]
        return found

    def quality_gate(self, run_id: str) -> dict[str, Any]:
        """``GET /quality/gate?run_id=``."""
        return self._json("GET", "/quality/gate", params={"run_id": run_id})

    def post_comment(self, target: str, body: str, *, author: str | None) -> dict[str, Any]:
        """``POST /comments``."""
        payload: dict[str, Any] = {"target": target, "body": body}
        if author is not None:
            payload["author"] = author
        return self._json("POST", "/comments", json=payload)

    def comments(self, target: str) -> list[dict[str, Any]]:
        """``GET /comments?target=``."""
        found: list[dict[str, Any]] = self._json("GET", "/comments", params={"target": target})["comments"]
        return found

    def lineage(self, kind: str, node_id: str, *, direction: str, depth: int, as_of: str | None) -> dict[str, Any]:
        """``GET /lineage/{kind}/{id}``."""
        query: dict[str, Any] = {"direction": direction, "depth": depth}
        if as_of is not None:
            query["as_of"] = as_of
        return self._json("GET", f"/lineage/{quote(kind, safe='')}/{quote(node_id)}", params=query)

    # -- registry ------------------------------------------------------------------------------------

    def create_registered_model(self, name: str) -> dict[str, Any]:
        """``POST /registered-models``."""
        return self._json("POST", "/registered-models", json={"name": name})

    def create_model_version(self, name: str, source: str, *, run_id: str | None) -> dict[str, Any]:
        """``POST /registered-models/{name}/versions``."""
        return self._json(
            "POST", f"/registered-models/{quote(name, safe='')}/versions", json={"source": source, "run_id": run_id}
        )

    def model_version(self, name: str, version: int) -> dict[str, Any]:
        """``GET /registered-models/{name}/versions/{version}``."""
        return self._json("GET", f"/registered-models/{quote(name, safe='')}/versions/{int(version)}")

    def model_version_by_alias(self, name: str, alias: str) -> dict[str, Any]:
        """``GET /registered-models/{name}/aliases/{alias}``."""
        return self._json("GET", f"/registered-models/{quote(name, safe='')}/aliases/{quote(alias, safe='')}")

    def set_alias(self, name: str, alias: str, version: int, *, force: bool, reason: str | None) -> dict[str, Any]:
        """``PUT /registered-models/{name}/aliases/{alias}``."""
        return self._json(
            "PUT",
            f"/registered-models/{quote(name, safe='')}/aliases/{quote(alias, safe='')}",
            json={"version": int(version), "force": force, "reason": reason},
        )

    def record_deployment(
        self, name: str, version: int, *, environment: str, application_version: str | None
    ) -> dict[str, Any]:
        """``POST /deployments``."""
        body = {
            "model_name": name,
            "version": int(version),
            "environment": environment,
            "application_version": application_version,
        }
        return self._json("POST", "/deployments", json=body)

    def close(self) -> None:
        """Close the connection pools."""
        self._http.close()
        if "_store_http" in self.__dict__:
            self._store_http.clear()


def _is_stream(content: object) -> bool:
    """Whether a request body is an iterator (cannot be sent twice)."""
    return content is not None and not isinstance(content, bytes | bytearray | str)


def _reason(exc: Exception) -> str:
    """The innermost cause of a transport error, in words ("[Errno 111] Connection refused")."""
    text = str(exc) or type(exc).__name__
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text


def _error_from(response: httpx.Response) -> LakeopsError:
    """The domain error a native error response stands for."""
    try:
        error = response.json()["error"]
        cls = _ERRORS.get(str(error["code"]), LakeopsError)
        return cls(str(error["message"]), details=error.get("details") or {})
    except (ValueError, KeyError, TypeError):
        pass
    text = response.text[:500]
    if response.status_code == 404:
        return NotFoundError(f"lakeops has no {response.request.url.path}: {text}")
    if response.status_code in (502, 503, 504):
        return BackendUnavailableError(f"lakeops answered {response.status_code}: {text}")
    return LakeopsError(f"lakeops answered {response.status_code} to {response.request.url.path}: {text}")


# -- embedded -------------------------------------------------------------------------------------


class EmbeddedTransport:
    """The lake itself, opened in this process: ``TrackingService`` over the Iceberg store."""

    def __init__(self, settings: LakeopsSettings) -> None:
        from lakeops.entities import to_dict
        from lakeops.lake import Lake

        self.settings = settings
        self.location = settings.warehouse()
        self.lake = Lake(settings)  # the same wiring as the HTTP app and the CLI (lakeops/lake.py)
        self.store = self.lake.store
        self.tracking = self.lake.tracking
        self._artifacts = self.lake.artifacts
        self._to_dict = to_dict

    def experiment_by_name(self, name: str) -> dict[str, Any]:
        """The experiment called ``name``."""
        return self._to_dict(self.tracking.get_experiment_by_name(name))

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment."""
        return self._to_dict(self.tracking.get_experiment(experiment_id))

    def create_experiment(self, name: str, *, tags: Mapping[str, str]) -> dict[str, Any]:
        """A new experiment."""
        return self.experiment(self.tracking.create_experiment(name, tags=dict(tags)))

    def experiments(self) -> list[dict[str, Any]]:
        """Every active experiment (all pages)."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.tracking.search_experiments(max_results=1000, page_token=token)
            out.extend(self._to_dict(e) for e in page.experiments)
            token = page.next_page_token
            if not token:
                return out

    def create_run(
        self, experiment_id: str, *, run_name: str | None, user_id: str | None, tags: Mapping[str, str]
    ) -> dict[str, Any]:
        """A new running run."""
        run = self.tracking.create_run(experiment_id, run_name=run_name, user_id=user_id, tags=dict(tags))
        return self._to_dict(run)

    def update_run(self, run_id: str, *, status: str, end_time: int | None) -> None:
        """Set a run's status and end time."""
        self.tracking.update_run(run_id, status=status, end_time=end_time)

    def log_batch(self, run_id: str, *, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        """Params and tags of one run."""
        self.tracking.log_batch(run_id, params=params, tags=tags)

    def ingest(self, points: pa.Table) -> int:
        """Metric points straight into the store's write-ahead log."""
        return self.tracking.log_metrics_table(points)

    def run(self, run_id: str) -> dict[str, Any]:
        """One run."""
        return self._to_dict(self.tracking.get_run(run_id))

    def search_runs(
        self, experiment_ids: Sequence[str], *, filter: str | None, order_by: Sequence[str], view_type: str
    ) -> list[dict[str, Any]]:
        """Every matching run, following page tokens to the end."""
        from lakeops.entities import ViewType

        runs: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.tracking.search_runs(
                experiment_ids,
                filter_string=filter,
                order_by=list(order_by),
                run_view_type=ViewType(view_type),
                max_results=1000,
                page_token=token,
            )
            runs.extend(self._to_dict(r) for r in page.runs)
            token = page.next_page_token
            if not token:
                return runs

    def metric_history(
        self,
        run_id: str,
        key: str,
        *,
        points: int | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> pa.Table:
        """One metric's history (downsampled with ``points``)."""
        history = self.tracking.metric_history_table(run_id, key)
        if points is None:
            return history
        from lakeops.downsample import downsample

        return downsample(history, points, min_step=min_step, max_step=max_step).table

    def sql(self, query: str, *, params: Sequence[Any] | None, as_of: str | None, max_rows: int | None) -> pa.Table:
        """The SQL engine of ``lakeops.sql`` (DuckDB over the lake) on this store."""
        table: pa.Table = self.lake.sql.query(query, params=params, as_of=_parse_as_of(as_of), max_rows=max_rows)
        return table

    def upload_artifact(self, path: str, source: Path, *, progress: Progress | None) -> dict[str, Any]:
        """Copy the file to the spool directory (hashing it), then into the object store.

        A large file is hashed in place first: bytes the store already holds are only referenced.
        """
        size = source.stat().st_size
        if size >= DIRECT_MIN_BYTES:
            from lakeops.client.transfers import file_sha256

            sha256 = file_sha256(source)
            if self._artifacts.objects.has_blob(sha256):
                if progress is not None:
                    progress(size)
                return self._artifacts.record_blob(path, sha256=sha256, size=size).model_dump()
        spool_dir = self._artifacts.spool_dir
        spool_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=spool_dir, prefix="client-", delete=False) as out:
            with source.open("rb") as handle:
                for chunk in _read_chunks(handle, progress):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            spooled = Path(out.name)
        try:
            version = self._artifacts.upload_file(path, spooled, size=size, sha256=digest.hexdigest())
        finally:
            spooled.unlink(missing_ok=True)
        return version.model_dump()

    def read_artifact(self, path: str, *, version_id: str | None) -> bytes:
        """The bytes of a version of an artifact from the object store."""
        _version, chunks = self._artifacts.open(path, version_id)
        return b"".join(chunks)

    def download_artifact(self, path: str, dest: Path, *, version_id: str | None) -> dict[str, Any]:
        """Stream a version of an artifact from the object store to ``dest``."""
        version, chunks = self._artifacts.open(path, version_id)
        with dest.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        return version.model_dump()

    # -- checkpoints -------------------------------------------------------------------------------

    @property
    def _checkpoints(self) -> CheckpointService:
        return self.lake.checkpoints

    def create_checkpoint(
        self, run_id: str, *, step: int, metrics: Mapping[str, float], is_dir: bool, files: list[str]
    ) -> dict[str, Any]:
        """Record the uploaded files as the run's checkpoint."""
        return self._checkpoints.create(run_id, step=step, metrics=metrics, is_dir=is_dir, files=files).model_dump()

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The run's current checkpoints."""
        return [c.model_dump() for c in self._checkpoints.of_run(run_id)]

    def checkpoint(self, run_id: str, *, step: int | None, metric: str | None, mode: str) -> dict[str, Any]:
        """One checkpoint: by step, best by a metric, or the latest."""
        if step is not None:
            return self._checkpoints.get(run_id, int(step)).model_dump()
        if metric is not None:
            if mode not in ("min", "max"):
                raise InvalidArgumentError(f"Invalid mode {mode!r}: min or max")
            return self._checkpoints.best(run_id, metric, "min" if mode == "min" else "max").model_dump()
        return self._checkpoints.latest(run_id).model_dump()

    def delete_checkpoint(self, run_id: str, step: int) -> None:
        """Remove a checkpoint."""
        self._checkpoints.delete(run_id, int(step))

    # -- datasets, quality, lineage ----------------------------------------------------------------

    @property
    def _datasets(self) -> DatasetService:
        return self.lake.datasets

    @property
    def _quality(self) -> QualityService:
        return self.lake.quality

    @property
    def _gate(self) -> QualityGate:
        return self.lake.quality_gate

    @property
    def _lineage(self) -> LineageService:
        return self.lake.lineage

    @property
    def _registry(self) -> RegistryService:
        return self.lake.registry

    def log_dataframe(
        self, name: str, table: pa.Table, *, run_id: str | None, direction: str, validate: bool
    ) -> dict[str, Any]:
        """``DatasetService.log_dataframe`` (``QualityService.log_validated_dataframe`` with ``validate``)."""
        log = self._quality.log_validated_dataframe if validate else self._datasets.log_dataframe
        return log(name, table, run_id=run_id, direction=direction)

    def log_dataset_artifact(self, name: str, path: str, *, run_id: str | None, direction: str) -> dict[str, Any]:
        """``DatasetService.log_artifact``."""
        return self._datasets.log_artifact(name, path, run_id=run_id, direction=direction)

    def log_dataset_location(self, name: str, uri: str, *, run_id: str | None, direction: str) -> dict[str, Any]:
        """``DatasetService.log_location``."""
        return self._datasets.log_location(name, uri, run_id=run_id, direction=direction)

    def dataset_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a dataset."""
        return self._datasets.list_versions(name)

    def dataset_version(self, version_id: str) -> dict[str, Any]:
        """One dataset version."""
        return self._datasets.get_version(version_id)

    def attach_suite(self, name: str, suite_name: str, expectations: list[dict[str, Any]]) -> dict[str, Any]:
        """``QualityService.attach_suite``."""
        return self._quality.attach_suite(name, suite_name, expectations)

    def validate(self, version_id: str, suite_name: str | None) -> list[dict[str, Any]]:
        """``QualityService.validate``."""
        return self._quality.validate(version_id, suite_name)

    def validations(self, version_id: str) -> list[dict[str, Any]]:
        """``QualityService.validations``."""
        return self._quality.validations(version_id)

    @property
    def _comments(self) -> Any:
        return self.lake.comments

    def post_comment(self, target: str, body: str, *, author: str | None) -> dict[str, Any]:
        """A comment through ``CommentService``."""
        result: dict[str, Any] = self._comments.post(target, body, author=author).to_dict()
        return result

    def comments(self, target: str) -> list[dict[str, Any]]:
        """The comments on a target."""
        return [c.to_dict() for c in self._comments.comments_on(target)]

    def quality_gate(self, run_id: str) -> dict[str, Any]:
        """What ``QualityGate`` says about a model version trained by this run."""
        reasons = self._gate.check_model_version(source_run_id=run_id, model_id=None)
        return {
            "allowed": not reasons,
            "reasons": reasons,
            "training_datasets": self._gate.training_datasets(source_run_id=run_id, model_id=None),
        }

    def lineage(self, kind: str, node_id: str, *, direction: str, depth: int, as_of: str | None) -> dict[str, Any]:
        """``LineageService.query``."""
        return self._lineage.query(kind, node_id, direction=direction, depth=depth, as_of=as_of)

    # -- registry ------------------------------------------------------------------------------------

    def create_registered_model(self, name: str) -> dict[str, Any]:
        """A new registered model."""
        return self._to_dict(self._registry.create_registered_model(name))

    def create_model_version(self, name: str, source: str, *, run_id: str | None) -> dict[str, Any]:
        """A new version of a registered model."""
        return self._to_dict(self._registry.create_model_version(name, source, run_id=run_id))

    def model_version(self, name: str, version: int) -> dict[str, Any]:
        """One model version."""
        return self._to_dict(self._registry.get_model_version(name, version))

    def model_version_by_alias(self, name: str, alias: str) -> dict[str, Any]:
        """The version an alias points at."""
        return self._to_dict(self._registry.get_model_version_by_alias(name, alias))

    def set_alias(self, name: str, alias: str, version: int, *, force: bool, reason: str | None) -> dict[str, Any]:
        """Point an alias at a version (protected aliases pass the quality gate first)."""
        return self._to_dict(
            self._registry.set_registered_model_alias(name, alias, version, force=force, reason=reason)
        )

    def record_deployment(
        self, name: str, version: int, *, environment: str, application_version: str | None
    ) -> dict[str, Any]:
        """Record that a version runs in an environment."""
        deployment = self._registry.record_deployment(
            name, version, environment=environment, application_version=application_version
        )
        return self._to_dict(deployment)

    def close(self) -> None:
        """Commit what is queued and release the store."""
        self.lake.close()


def _parse_as_of(text: str | None) -> datetime | None:
    """An ISO-8601 time (UTC when it has no zone), as ``POST /sql`` reads ``as_of``."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgumentError(f"as_of must be an ISO-8601 time, got {text!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def now_ms() -> int:
    """Wall-clock time in integer milliseconds."""
    return time.time_ns() // 1_000_000
