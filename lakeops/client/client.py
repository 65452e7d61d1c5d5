"""``Client``: one API for training code and notebooks, over HTTP or embedded."""

from __future__ import annotations

import atexit
import functools
import getpass
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lakeops.client.display import ExperimentView, RunView
from lakeops.client.runs import ActiveRun, check_key
from lakeops.client.sender import RETRYABLE, Sender
from lakeops.client.transport import EmbeddedTransport, HttpTransport, Transport, now_ms
from lakeops.errors import AlreadyExistsError, InvalidArgumentError, LakeopsError, NotFoundError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from lakeops.client.plots import Chart
    from lakeops.settings import LakeopsSettings

log = logging.getLogger("lakeops.client")
T = TypeVar("T")

DEFAULT_EXPERIMENT_ID = "0"
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
VIEW_TYPES = {"active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY", "all": "ALL"}


def connect(
    url: str | None = None,
    *,
    embedded: bool | None = None,
    settings: LakeopsSettings | None = None,
    max_buffered_points: int = 500_000,
    batch_size: int = 100_000,
    flush_interval_s: float = 0.2,
    flush_timeout_s: float = 60.0,
    timeout_s: float = 30.0,
) -> Client:
    """Connect to lakeops.

    ``connect("http://host:5000")`` talks to a running ``lakeops serve``. ``connect()`` (or
    ``connect(embedded=True, settings=...)``) opens the lake in this process — by default the
    embedded lake in ``$LAKEOPS_HOME`` or ``./.lakeops`` — and writes straight to it.

    Args:
        url: base URL of ``lakeops serve``; ``None`` means embedded.
        embedded: force embedded mode (an error together with ``url``).
        settings: the lake to open when embedded (default: read from the environment).
        max_buffered_points: bound of the client's queue; ``log_metric`` blocks while it is full.
        batch_size: at most this many points per shipped batch.
        flush_interval_s: how often the sender ships what has accumulated.
        flush_timeout_s: how long ending a run or closing the client waits for the server.
        timeout_s: HTTP timeout of one request.

    Raises:
        InvalidArgumentError: ``url`` together with ``embedded=True``, or ``settings`` with a URL.
    """
    if url is not None and (embedded or settings is not None):
        raise InvalidArgumentError("Pass a URL for a server, or embedded=True/settings for the local lake, not both")
    if url is not None and embedded is False and not url.startswith(("http://", "https://")):
        raise InvalidArgumentError(f"Not an http(s) URL: {url!r}")
    transport: Transport
    if url is None:
        if embedded is False:
            raise InvalidArgumentError("embedded=False needs a URL")
        from lakeops.settings import LakeopsSettings

        transport = EmbeddedTransport(settings or LakeopsSettings())
    else:
        if not url.startswith(("http://", "https://")):
            raise InvalidArgumentError(f"Not an http(s) URL: {url!r}")
        transport = HttpTransport(url, timeout_s=timeout_s)
    return Client(
        transport,
        max_buffered_points=max_buffered_points,
        batch_size=batch_size,
        flush_interval_s=flush_interval_s,
        flush_timeout_s=flush_timeout_s,
    )


class Client:
    """Log runs from training code, and read them back as DataFrames and charts."""

    def __init__(
        self,
        transport: Transport,
        *,
        max_buffered_points: int = 500_000,
        batch_size: int = 100_000,
        flush_interval_s: float = 0.2,
        flush_timeout_s: float = 60.0,
    ) -> None:
        self.transport = transport
        self.flush_timeout_s = flush_timeout_s
        self.sender = Sender(
            transport.ingest, max_buffered=max_buffered_points, batch_size=batch_size, interval_s=flush_interval_s
        )
        self._closed = False
        atexit.register(self.close)

    @property
    def location(self) -> str:
        """The server URL, or the warehouse URI when embedded."""
        return self.transport.location

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (a closed client logs nothing more)."""
        return self._closed

    @property
    def embedded(self) -> bool:
        """Whether the lake is opened in this process."""
        return isinstance(self.transport, EmbeddedTransport)

    def _call(self, fn: Callable[[], T], *, timeout_s: float | None = None) -> T:
        """A synchronous call, retried with backoff while the server is unreachable."""
        deadline = time.monotonic() + (self.flush_timeout_s if timeout_s is None else timeout_s)
        delay = 0.05
        while True:
            try:
                return fn()
            except RETRYABLE:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- experiments and runs ------------------------------------------------------------------

    def experiment_id(self, experiment: str | None, *, create: bool = False) -> str:
        """The id of an experiment given by name or id (``None``: the Default experiment).

        Raises:
            NotFoundError: no experiment by that name or id (and ``create`` is false).
        """
        if experiment is None:
            return DEFAULT_EXPERIMENT_ID
        try:
            return str(self._call(lambda: self.transport.experiment_by_name(experiment))["experiment_id"])
        except NotFoundError:
            pass
        try:
            return str(self._call(lambda: self.transport.experiment(experiment))["experiment_id"])
        except (NotFoundError, InvalidArgumentError):
            pass
        if not create:
            raise NotFoundError(f"No experiment named or numbered {experiment!r}")
        try:
            return str(self._call(lambda: self.transport.create_experiment(experiment, tags={}))["experiment_id"])
        except AlreadyExistsError:  # created concurrently by someone else
            return str(self._call(lambda: self.transport.experiment_by_name(experiment))["experiment_id"])

    def start_run(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ActiveRun:
        """Start a run in ``experiment`` (a name, created if missing, or an id; default: Default).

        Use it as a context manager: ``with client.start_run("churn", params={...}) as run:``.
        The server must be reachable to start a run (retried for ``flush_timeout_s``); after
        that, logging never waits on it.
        """
        experiment_id = self.experiment_id(experiment, create=True)
        clean_tags = {check_key("tag", k): str(v) for k, v in (tags or {}).items()}
        user = _user()
        info = self._call(
            lambda: self.transport.create_run(experiment_id, run_name=name, user_id=user, tags=clean_tags)
        )
        run = ActiveRun(self, info)
        if params:
            clean = {check_key("param", k): "" if v is None else str(v) for k, v in params.items()}
            self._call(lambda: self.transport.log_batch(run.run_id, params=clean, tags={}))
        return run

    def finish_run(self, run_id: str, status: str) -> None:
        """Set a run's final status and end time (retried while the server is unreachable)."""
        end = now_ms()
        self._call(lambda: self.transport.update_run(run_id, status=status, end_time=end))

    def get_run(self, run_id: str) -> RunView:
        """A stored run (shows as a card in Jupyter)."""
        return RunView(self.transport.run(run_id))

    def experiment(self, experiment: str) -> ExperimentView:
        """An experiment by name or id, with its runs (shows as a card in Jupyter)."""
        experiment_id = self.experiment_id(experiment)
        runs = self.transport.search_runs(
            [experiment_id], filter=None, order_by=["attributes.start_time DESC"], view_type="ACTIVE_ONLY"
        )
        return ExperimentView(self.transport.experiment(experiment_id), runs)

    def experiments(self) -> pl.DataFrame:
        """Every active experiment: experiment_id, name, lifecycle_stage, creation_time."""
        import polars as pl

        rows = [
            {
                "experiment_id": e["experiment_id"],
                "name": e["name"],
                "lifecycle_stage": e["lifecycle_stage"],
                "creation_time": e.get("creation_time"),
            }
            for e in self.transport.experiments()
        ]
        schema = {
            "experiment_id": pl.String,
            "name": pl.String,
            "lifecycle_stage": pl.String,
            "creation_time": pl.Int64,
        }
        frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
        return frame.with_columns(pl.from_epoch("creation_time", time_unit="ms").dt.replace_time_zone("UTC"))

    # -- analysis ------------------------------------------------------------------------------

    def runs(
        self,
        experiment: str | Sequence[str] | None = None,
        *,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        view: str = "active",
    ) -> pl.DataFrame:
        """Runs of one or more experiments (names or ids) as a polars DataFrame.

        Columns: run_id, run_name, experiment_id, status, user_id, start_time, end_time, then
        ``params.<key>``, ``metrics.<key>`` (latest value) and ``tags.<key>``. ``filter`` and
        ``order_by`` use MLflow's search language (``"metrics.acc > 0.9"``,
        ``"metrics.acc DESC"``); ``view`` is ``active``, ``deleted`` or ``all``.
        """
        from lakeops.client.frames import runs_frame

        if view not in VIEW_TYPES:
            raise InvalidArgumentError(f"view must be one of {sorted(VIEW_TYPES)}, got {view!r}")
        names = [experiment] if experiment is None or isinstance(experiment, str) else list(experiment)
        ids = [self.experiment_id(e) for e in names]
        orders = [order_by] if isinstance(order_by, str) else list(order_by or [])
        found = self.transport.search_runs(ids, filter=filter, order_by=orders, view_type=VIEW_TYPES[view])
        return runs_frame(found)

    def metric_history(self, run_ids: str | Iterable[str] | pl.DataFrame, keys: str | Iterable[str]) -> pl.DataFrame:
        """Every point of the given metrics of the given runs: run_id, key, step, timestamp, value.

        ``run_ids`` may be a frame from ``runs()`` (its ``run_id`` column is used). A run that
        never logged a key contributes no rows.
        """
        from lakeops.client.frames import history_frame

        ids = _run_ids(run_ids)
        key_list = [keys] if isinstance(keys, str) else list(keys)
        parts = [(run_id, key, self.transport.metric_history(run_id, key)) for run_id in ids for key in key_list]
        return history_frame(parts)

    def sql(self, query: str, *, params: Sequence[Any] | None = None, as_of: str | None = None) -> pl.DataFrame:
        """A read-only SQL query over the lake's views, as a polars DataFrame.

        Over HTTP it is ``POST /api/v1/sql`` answered in Arrow; embedded, ``lakeops.sql.SqlEngine``.
        ``as_of`` (an ISO time) reads the tables as they stood then.
        """
        import polars as pl

        frame = pl.from_arrow(self.transport.sql(query, params=params, as_of=as_of))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def plot_metric(self, runs: str | Iterable[str] | pl.DataFrame, key: str, *, title: str | None = None) -> Chart:
        """Curves of metric ``key`` by step, one line per run (labelled by run name when known)."""
        import polars as pl

        from lakeops.client.plots import metric_curves

        ids = _run_ids(runs)
        if isinstance(runs, pl.DataFrame) and "run_name" in runs.columns:
            labels = dict(zip(runs["run_id"].to_list(), runs["run_name"].to_list(), strict=True))
        else:
            labels = {run_id: str(self.get_run(run_id).name) for run_id in ids}
        return metric_curves(self.metric_history(ids, key), key, labels=labels, title=title)

    def plot_params(
        self,
        runs: str | pl.DataFrame,
        params: str | Sequence[str],
        metric: str,
        *,
        title: str | None = None,
    ) -> Chart:
        """Each run's param value(s) against its latest ``metric``; ``runs`` is a frame or an experiment."""
        from lakeops.client.plots import params_against

        frame = self.runs(runs) if isinstance(runs, str) else runs
        names = [params] if isinstance(params, str) else list(params)
        return params_against(frame, names, metric, title=title)

    # -- bulk ------------------------------------------------------------------------------------

    def import_metrics(
        self, points: pa.Table | pl.DataFrame, *, batch_size: int = 100_000, progress: bool | None = None
    ) -> int:
        """Bulk-load metric points of any runs, in batches, with a progress bar; returns the count.

        Columns: run_id, key, value, timestamp (ms), and optionally step. Synchronous: returns
        once every batch is stored. A refused batch raises; the batches before it stay stored.
        """
        import polars as pl

        from lakeops.progress import progress_bar

        table = points.to_arrow() if isinstance(points, pl.DataFrame) else points
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be positive, got {batch_size}")
        stored = 0
        with progress_bar(table.num_rows, desc="importing metrics", unit="points", enabled=progress) as bar:
            for offset in range(0, max(table.num_rows, 1), batch_size):
                chunk = table.slice(offset, batch_size)
                stored += self._call(functools.partial(self.transport.ingest, chunk))
                bar.update(chunk.num_rows)
        return stored

    def upload_artifact(self, path: str, source: Path, *, progress: bool | None = None) -> str:
        """Upload a file to ``path`` in the artifact store (a bar for files of 8 MiB or more)."""
        from lakeops.progress import progress_bar

        size = source.stat().st_size
        enabled = progress if progress is not None else (None if size >= PROGRESS_MIN_BYTES else False)
        with progress_bar(size, desc=f"uploading {source.name}", unit="B", enabled=enabled) as bar:
            result = self.transport.upload_artifact(path, source, progress=bar.update)
        return str(result["path"])

    def read_artifact(self, path: str, *, version_id: str | None = None) -> bytes:
        """The bytes of an artifact (``path`` as returned by ``run.log_artifact``), newest version by default."""
        return self.transport.read_artifact(path, version_id=version_id)

    # -- lifecycle -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until every point logged so far is stored; raise what the server refused meanwhile."""
        self.sender.flush(timeout)

    def close(self) -> None:
        """Flush (up to ``flush_timeout_s``), stop the sender and release the connection or store.

        Called at interpreter exit too. Points that could not be shipped by then are reported.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        lost = self.sender.close(self.flush_timeout_s)
        if lost:
            log.error("lakeops: closed with %d items not shipped (server %s unreachable)", lost, self.location)
        try:
            self.sender.raise_errors()
        except LakeopsError as exc:
            log.error("lakeops: a write was refused before closing: %s", exc)
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "embedded" if self.embedded else "http"
        return f"Client({mode}, {self.location})"


def _run_ids(runs: str | Iterable[str] | pl.DataFrame) -> list[str]:
    if isinstance(runs, str):
        return [runs]
    import polars as pl

    if isinstance(runs, pl.DataFrame):
        return [str(r) for r in runs["run_id"].to_list()]
    return [str(r) for r in runs]


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
