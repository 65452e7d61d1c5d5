"""A run being logged from training code: the hot path of the client.

``log_metric`` validates a key the first time it sees it, then only appends a tuple to the
sender's queue: no lock, no I/O, no allocation beyond the tuple (≈1 µs; see
``benchmarks/bench_client.py``). Everything else (params, tags) is queued in order behind the
points; artifacts are uploaded synchronously, with a progress bar for large files.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lakeops.client.display import DatasetVersionView, html_card
from lakeops.client.sender import Call
from lakeops.client.transport import artifact_path
from lakeops.errors import InvalidArgumentError, LakeopsError

if TYPE_CHECKING:
    from lakeops.client.client import Client

# The same rules as lakeops.tracking.validation.validate_key, checked here so that a bad key fails
# in the training loop at once instead of refusing a whole batch later (that module imports
# pyiceberg, which the HTTP client must not).
MAX_KEY_LENGTH = 250
_KEY = re.compile(r"^[/\w.\- :]+$")


def check_key(kind: str, key: object) -> str:
    """A metric, param or tag name, or ``InvalidArgumentError``."""
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"Invalid {kind} name: must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH or not _KEY.match(key) or key.startswith("/") or ".." in key.split("/"):
        raise InvalidArgumentError(
            f"Invalid {kind} name {key[:60]!r}: 1-{MAX_KEY_LENGTH} letters, digits, '_', '-', '.', ' ', ':' "
            "or '/', relative, without '..'"
        )
    return key


class ActiveRun:
    """A run started by ``Client.start_run``; use it as a context manager.

    On a clean exit from the ``with`` block the buffered points are flushed and the run is
    marked FINISHED; on an exception it is marked FAILED (and the exception propagates).
    """

    def __init__(self, client: Client, run: Mapping[str, Any]) -> None:
        info = run["info"]
        self.run_id: str = info["run_id"]
        self.experiment_id: str = info["experiment_id"]
        self.name: str = info["run_name"]
        self.artifact_uri: str = info.get("artifact_uri") or ""
        self.status: str = info["status"]
        self._client = client
        self._sender = client.sender
        self._queue = client.sender.queue
        self._cap = client.sender.max_buffered
        self._keys: set[str] = set()
        self._ended = False

    # -- metrics (hot path) ------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int = 0, *, timestamp: int | None = None) -> None:
        """Queue one metric point; returns at once (blocks only while the buffer is full).

        ``timestamp`` is in milliseconds since the epoch (default: now).
        """
        if key not in self._keys:
            self._new_key(key)
        if len(self._queue) >= self._cap:
            self._sender.wait_for_room()
        self._queue.append(
            (
                self.run_id,
                key,
                float(value),
                time.time_ns() // 1_000_000 if timestamp is None else int(timestamp),
                int(step),
            )
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, *, timestamp: int | None = None) -> None:
        """Queue several metrics of the same step."""
        stamp = time.time_ns() // 1_000_000 if timestamp is None else int(timestamp)
        for key, value in metrics.items():
            self.log_metric(key, value, step, timestamp=stamp)

    def _new_key(self, key: str) -> None:
        if self._ended:
            raise InvalidArgumentError(f"Run {self.run_id} has ended; start a new run to log more")
        if self._client.closed:
            raise InvalidArgumentError("The client is closed; connect again to log more")
        self._keys.add(check_key("metric", key))

    # -- params, tags, artifacts -------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Queue one param (params are immutable: another value for the same key is refused)."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Queue params; they are shipped in order with the metrics."""
        clean = {check_key("param", k): "" if v is None else str(v) for k, v in params.items()}
        self._queue_batch(params=clean, tags={})

    def set_tag(self, key: str, value: Any) -> None:
        """Queue one tag."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Queue tags (a tag's newest value wins)."""
        clean = {check_key("tag", k): "" if v is None else str(v) for k, v in tags.items()}
        self._queue_batch(params={}, tags=clean)

    def _queue_batch(self, *, params: dict[str, str], tags: dict[str, str]) -> None:
        if self._ended:
            raise InvalidArgumentError(f"Run {self.run_id} has ended; start a new run to log more")
        if not params and not tags:
            return
        transport = self._client.transport
        run_id = self.run_id
        self._sender.submit(
            Call(
                lambda: transport.log_batch(run_id, params=params, tags=tags),
                f"{len(params)} params and {len(tags)} tags of run {run_id}",
            )
        )

    def log_artifact(self, path: str | Path, artifact_path: str | None = None, *, progress: bool | None = None) -> str:
        """Upload a local file as an artifact of this run; returns its path in the artifact store.

        ``artifact_path`` is a directory inside the run's artifacts (default: the top). Files of
        8 MiB or more show a progress bar in a terminal (``progress=True`` forces it).
        """
        source = Path(path)
        if not source.is_file():
            raise InvalidArgumentError(f"No such file to log as an artifact: {source}")
        name = f"{artifact_path.strip('/')}/{source.name}" if artifact_path else source.name
        return self._client.upload_artifact(_artifact_location(self.artifact_uri, name), source, progress=progress)

    def log_checkpoint(
        self,
        path: str | Path,
        *,
        step: int,
        metrics: Mapping[str, float] | None = None,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Upload a file or directory as this run's checkpoint at ``step``; see ``Client.log_checkpoint``.

        Synchronous: returns once the checkpoint is recorded.
        """
        if self._ended:
            raise InvalidArgumentError(f"Run {self.run_id} has ended; start a new run to log more")
        return self._client.log_checkpoint(self, path, step=step, metrics=metrics, progress=progress)

    def set_checkpoint_retention(
        self,
        *,
        keep_last: int | None = None,
        keep_best: int | None = None,
        metric: str | None = None,
        mode: str = "min",
        keep_every: int | None = None,
    ) -> None:
        """Set this run's retention policy (applied by ``lakeops maintain --checkpoints``).

        A checkpoint is kept if any rule keeps it: the ``keep_last`` highest steps, the
        ``keep_best`` best by ``metric`` (``mode`` min or max), every step divisible by ``keep_every``.
        """
        if keep_best is not None and not metric:
            raise InvalidArgumentError("keep_best needs a metric to rank checkpoints by")
        if mode not in ("min", "max"):
            raise InvalidArgumentError(f"Invalid mode {mode!r}: min or max")
        rules = {"keep_last": keep_last, "keep_best": keep_best, "keep_every": keep_every}
        for name, value in rules.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidArgumentError(f"{name} must be an integer >= 0, got {value!r}")
        if keep_every == 0:
            raise InvalidArgumentError("keep_every must be at least 1")
        tags = {f"lakeops.checkpoints.{k}": str(v) for k, v in rules.items() if v is not None}
        if keep_best is not None:
            tags |= {"lakeops.checkpoints.metric": str(metric), "lakeops.checkpoints.mode": mode}
        self.set_tags(tags)

    def log_dataset(
        self, data: Any, *, name: str, direction: str = "input", validate: bool = False
    ) -> DatasetVersionView:
        """Log a dataset version as an input (default) or output of this run; see ``Client.log_dataset``.

        Synchronous: returns the stored version (the same content logged again is the same version).
        """
        if self._client.closed:
            raise InvalidArgumentError("The client is closed; connect again to log more")
        return self._client.log_dataset(data, name=name, run_id=self.run_id, direction=direction, validate=validate)

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything logged so far is stored; raise what the server refused meanwhile."""
        self._sender.flush(timeout)

    def end(self, status: str = "FINISHED") -> None:
        """Flush, then set the run's final status (FINISHED, FAILED or KILLED) and end time."""
        if self._ended:
            return
        try:
            self.flush(self._client.flush_timeout_s)
        except LakeopsError:
            status = "FAILED"
            raise
        finally:
            self._ended = True
            self._client.finish_run(self.run_id, status)
            self.status = status

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
            return
        # The training error is the one to see; a flush error is logged by the sender.
        with contextlib.suppress(LakeopsError):
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")

    def _repr_html_(self) -> str:
        return html_card(
            f"Run {self.name}",
            {"run_id": self.run_id, "experiment_id": self.experiment_id, "status": self.status},
            {},
        )

    def __repr__(self) -> str:
        return f"ActiveRun(run_id={self.run_id!r}, name={self.name!r}, status={self.status!r})"


def _artifact_location(artifact_uri: str, name: str) -> str:
    return artifact_path(artifact_uri, name)
