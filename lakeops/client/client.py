"""``Client``: one API for training code and notebooks, over HTTP or embedded."""

from __future__ import annotations

import atexit
import contextlib
import functools
import getpass
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lakeops.client.display import DatasetVersionView, ExperimentView, LineageView, ModelVersionView, RunView
from lakeops.client.runs import ActiveRun, check_key
from lakeops.client.sender import RETRYABLE, Sender
from lakeops.client.transport import EmbeddedTransport, HttpTransport, Transport, now_ms
from lakeops.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    LakeopsError,
    NotFoundError,
    ServerTimeoutError,
    ServerUnreachableError,
)

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
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
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
        token: an API token for a server with authentication on (default: ``$LAKEOPS_TOKEN``).
        username: with ``password``, HTTP Basic credentials instead of a token (default:
            ``$LAKEOPS_USERNAME`` and ``$LAKEOPS_PASSWORD``).
        password: the password of ``username``.

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
        import os

        token = token or os.environ.get("LAKEOPS_TOKEN") or None
        username = username or os.environ.get("LAKEOPS_USERNAME") or None
        password = password or os.environ.get("LAKEOPS_PASSWORD") or None
        basic = (username, password) if username is not None and password is not None and not token else None
        transport = HttpTransport(url, timeout_s=timeout_s, token=token, auth=basic)
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
        """A synchronous call, retried with backoff while a server that answered before is away.

        Fails at once where waiting cannot help: nothing ever answered at the URL (a wrong
        port or host, or no server started), or the server did not answer within the HTTP
        timeout (trying again would wait as long again).
        """
        deadline = time.monotonic() + (self.flush_timeout_s if timeout_s is None else timeout_s)
        delay = 0.05
        while True:
            try:
                return fn()
            except ServerTimeoutError:
                raise
            except ServerUnreachableError as exc:
                if not getattr(self.transport, "answered", True):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("lakeops: %s; retrying until it is back (for %.0f s)", exc.message, self.flush_timeout_s)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
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
        The server must be reachable to start a run: a server that answered this client before
        is waited for (``flush_timeout_s``); a URL where nothing ever answered fails at once
        (``ServerUnreachableError``). After that, logging never waits on it.
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

    def metric_history(
        self,
        run_ids: str | Iterable[str] | pl.DataFrame,
        keys: str | Iterable[str],
        *,
        points: int | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> pl.DataFrame:
        """Every point of the given metrics of the given runs: run_id, key, step, timestamp, value.

        ``run_ids`` may be a frame from ``runs()`` (its ``run_id`` column is used). A run that
        never logged a key contributes no rows. With ``points``, each history is downsampled on the
        server to at most that many real points between ``min_step`` and ``max_step`` (each step
        bucket's min and max value kept, NaN and inf left out: ``lakeops.downsample``), for charts
        of long histories.

        Raises:
            NotFoundError: an unknown run.
            InvalidArgumentError: ``points`` outside [4, 100000], or ``min_step`` > ``max_step``.
        """
        from lakeops.client.frames import history_frame

        ids = _run_ids(run_ids)
        key_list = [keys] if isinstance(keys, str) else list(keys)
        parts = [
            (
                run_id,
                key,
                self.transport.metric_history(run_id, key, points=points, min_step=min_step, max_step=max_step),
            )
            for run_id in ids
            for key in key_list
        ]
        return history_frame(parts)

    def sql(
        self,
        query: str,
        *,
        params: Sequence[Any] | None = None,
        as_of: str | None = None,
        max_rows: int | None = None,
    ) -> pl.DataFrame:
        """A read-only SQL query over the lake's views, as a polars DataFrame.

        Over HTTP it is ``POST /api/v1/sql`` answered in Arrow; embedded, ``lakeops.sql.SqlEngine``
        on the client's own store (it sees every point already stored: ``flush()`` first to see
        points still buffered). ``params`` fill ``?`` placeholders; ``as_of`` (an ISO time) reads
        the tables as they stood then; at most ``max_rows`` rows (and the server's ``sql.max_rows``).

        Raises:
            InvalidArgumentError: the SQL is refused by the sandbox, invalid, or fails.
        """
        import polars as pl

        frame = pl.from_arrow(self.transport.sql(query, params=params, as_of=as_of, max_rows=max_rows))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def plot_metric(
        self,
        runs: str | Iterable[str] | pl.DataFrame,
        key: str,
        *,
        title: str | None = None,
        log_y: bool | None = None,
        smoothing: float = 0.0,
    ) -> Chart:
        """Curves of metric ``key`` by step, one line and colour per run (labelled by run name when known).

        ``log_y``: log value axis (default: when the values span two decades or more).
        ``smoothing``: 0 (none) to below 1, an exponential moving average as in TensorBoard.
        """
        import polars as pl

        from lakeops.client.plots import metric_curves

        ids = _run_ids(runs)
        if isinstance(runs, pl.DataFrame) and "run_name" in runs.columns:
            labels = dict(zip(runs["run_id"].to_list(), runs["run_name"].to_list(), strict=True))
        else:
            labels = {run_id: str(self.get_run(run_id).name) for run_id in ids}
        return metric_curves(
            self.metric_history(ids, key), key, labels=labels, title=title, log_y=log_y, smoothing=smoothing
        )

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

    # -- datasets and data quality ----------------------------------------------------------------

    def log_dataset(
        self,
        data: Any,
        *,
        name: str,
        run_id: str | None = None,
        direction: str = "input",
        validate: bool = False,
    ) -> DatasetVersionView:
        """Log a dataset version (same content, same version), as an input or output of a run.

        ``data`` is a polars or pandas DataFrame or an Arrow table (lakeops stores it as Parquet),
        or the path of a local file or folder (uploaded into the run's artifacts under
        ``datasets/``; Parquet and CSV files are profiled), or an ``s3://bucket/prefix`` URI of data
        already in the lake's object store (registered by reference: nothing is copied). With
        ``validate=True`` a DataFrame must pass every expectation suite attached to ``name`` first,
        else ``DataQualityError`` and nothing is stored.

        Raises:
            InvalidArgumentError: a bad name or direction, a path without a run, ``validate`` with a path.
            DataQualityError: ``validate=True`` and the data failed an expectation.
            NotFoundError: no such run.
        """
        if direction not in ("input", "output"):
            raise InvalidArgumentError(f"Invalid direction {direction!r}: input or output")
        if not isinstance(name, str) or not name.strip() or len(name) > 500 or any(ord(c) < 32 for c in name):
            # The service's rule, checked before a file is uploaded for nothing.
            raise InvalidArgumentError(f"Invalid dataset name {str(name)[:40]!r}: 1-500 printable characters")
        if isinstance(data, str) and data.startswith("s3://"):
            if validate:
                raise InvalidArgumentError("validate=True checks a DataFrame before storing it, not data in the store")
            located = self.transport.log_dataset_location(name, data, run_id=run_id, direction=direction)
            return DatasetVersionView(located)
        if isinstance(data, (str, Path)):
            return self._log_dataset_files(Path(data), name=name, run_id=run_id, direction=direction, validate=validate)
        table = _arrow_table(data)
        version = self.transport.log_dataframe(name, table, run_id=run_id, direction=direction, validate=validate)
        return DatasetVersionView(version)

    def _log_dataset_files(
        self, source: Path, *, name: str, run_id: str | None, direction: str, validate: bool
    ) -> DatasetVersionView:
        if run_id is None:
            raise InvalidArgumentError("Log a local file as a dataset of a run: run.log_dataset(path, name=...)")
        if validate:
            raise InvalidArgumentError(
                "validate=True checks a DataFrame before storing it; log the file, then client.validate(version)"
            )
        if not source.exists():
            raise InvalidArgumentError(f"No such file or folder to log as a dataset: {source}")
        artifact_uri = str(self.transport.run(run_id)["info"].get("artifact_uri") or "")
        from lakeops.client.transport import artifact_path

        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        if not files:
            raise InvalidArgumentError(f"Folder {source} has no files to log as a dataset")
        root = artifact_path(artifact_uri, f"datasets/{source.name}")
        for file in files:
            target = root if file == source else f"{root}/{file.relative_to(source).as_posix()}"
            self.upload_artifact(target, file)
        version = self.transport.log_dataset_artifact(name, root, run_id=run_id, direction=direction)
        return DatasetVersionView(version)

    def dataset_version(self, version_id: str) -> DatasetVersionView:
        """One dataset version by id (shows as a card in Jupyter)."""
        return DatasetVersionView(self.transport.dataset_version(version_id))

    def dataset_versions(self, name: str) -> pl.DataFrame:
        """Every version of a dataset, oldest first: id, digest, source, rows, bytes, created_at."""
        import polars as pl

        rows = [
            {
                "dataset_version_id": v["dataset_version_id"],
                "digest": v["digest"],
                "source_type": v["source_type"],
                "row_count": v.get("row_count"),
                "size_bytes": v.get("size_bytes"),
                "created_at": v.get("created_at"),
            }
            for v in self.transport.dataset_versions(name)
        ]
        schema = {
            "dataset_version_id": pl.String,
            "digest": pl.String,
            "source_type": pl.String,
            "row_count": pl.Int64,
            "size_bytes": pl.Int64,
            "created_at": pl.Int64,
        }
        frame = pl.DataFrame(rows, schema=schema, orient="row")
        return frame.with_columns(pl.from_epoch("created_at", time_unit="ms").dt.replace_time_zone("UTC"))

    def attach_suite(self, dataset: str, suite: str, expectations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Attach (or replace) a great-expectations suite on a dataset name.

        ``expectations`` are GX 1.x configurations:
        ``{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}``.
        """
        return self.transport.attach_suite(dataset, suite, [dict(e) for e in expectations])

    def validate(self, version: str | DatasetVersionView, suite: str | None = None) -> pl.DataFrame:
        """Validate a dataset version against its suites (or one); the stored results as a frame.

        Columns: suite_name, success, evaluated, failed (the failed expectations), validation_id.

        Raises:
            NotFoundError: no such version or suite.
            InvalidArgumentError: no suite is attached to the dataset's name.
        """
        version_id = version.id if isinstance(version, DatasetVersionView) else version
        return _validations_frame(self.transport.validate(version_id, suite))

    def validations(self, version: str | DatasetVersionView) -> pl.DataFrame:
        """Every validation of a dataset version, oldest first (columns as ``validate``)."""
        version_id = version.id if isinstance(version, DatasetVersionView) else version
        return _validations_frame(self.transport.validations(version_id))

    def quality_gate(self, run: str | ActiveRun | RunView) -> dict[str, Any]:
        """What the alias gate says about a model trained by ``run``: allowed, reasons, training_datasets.

        Raises:
            NotFoundError: no such run.
        """
        run_id = _run_id(run)
        self.transport.run(run_id)
        return self.transport.quality_gate(run_id)

    # -- comments ----------------------------------------------------------------------------------

    def comment(self, target: str, body: str, *, author: str | None = None) -> dict[str, Any]:
        """Post a comment on ``run:<run_id>``, ``model:<name>`` or ``version:<name>/<version>``.

        ``@name`` in the body mentions a user (the answer lists them under ``mentions``). Comments
        are rows of an append-only Iceberg table (``comments`` in SQL; posts and deletions appear
        in the ``activity`` view).

        Raises:
            NotFoundError: no such run, model or version.
            InvalidArgumentError: a malformed target or an empty body.
        """
        return self.transport.post_comment(target, body, author=author)

    def comments(self, target: str) -> list[dict[str, Any]]:
        """The comments on a target, oldest first: comment_id, target, author, body, mentions, created_at.

        Raises:
            NotFoundError: no such run, model or version.
            InvalidArgumentError: a malformed target.
        """
        return self.transport.comments(target)

    def lineage(
        self, kind: str, node_id: str, *, direction: str = "upstream", depth: int = 5, as_of: str | None = None
    ) -> LineageView:
        """The lineage graph around one node, up to ``depth`` hops (shows as a card in Jupyter).

        ``kind`` is ``dataset_version``, ``run``, ``model_version`` (id ``<name>/<version>``),
        ``deployment``, ``logged_model`` or ``job``; ``as_of`` (ISO time) reads the graph as it stood then.
        """
        return LineageView(self.transport.lineage(kind, node_id, direction=direction, depth=depth, as_of=as_of))

    # -- model registry ----------------------------------------------------------------------------

    def register_model(
        self,
        run: str | ActiveRun | RunView,
        name: str,
        *,
        artifact_path: str = "",
        alias: str | None = None,
    ) -> ModelVersionView:
        """Register the model a run logged (``artifact_path`` inside its artifacts) as a new version of ``name``.

        The registered model is created if it does not exist. With ``alias`` the new version
        gets it too; a protected alias (``production``) passes the quality gate first — if the
        gate refuses, the version stays registered without the alias and ``DataQualityError``
        says why.

        Raises:
            NotFoundError: no such run.
            InvalidArgumentError: a bad model name or alias.
            DataQualityError: the quality gate refused the alias.
        """
        run_id = _run_id(run)
        with contextlib.suppress(AlreadyExistsError):
            self.transport.create_registered_model(name)
        source = f"runs:/{run_id}/{artifact_path.strip('/')}"
        version = ModelVersionView(self.transport.create_model_version(name, source, run_id=run_id))
        if alias is not None:
            return self.set_alias(name, alias, version.version)
        return version

    def set_alias(
        self, name: str, alias: str, version: int, *, force: bool = False, reason: str | None = None
    ) -> ModelVersionView:
        """Point ``alias`` at a version of ``name``; protected aliases pass the quality gate first.

        ``force=True`` with a ``reason`` overrides a refusal (recorded in the alias history).

        Raises:
            DataQualityError: the gate refused (``exc.details["reasons"]`` says why).
            NotFoundError: no such model or version.
        """
        return ModelVersionView(self.transport.set_alias(name, alias, int(version), force=force, reason=reason))

    def model_version(self, name: str, version: int | None = None, *, alias: str | None = None) -> ModelVersionView:
        """A model version by number or by alias (shows as a card in Jupyter)."""
        if (version is None) == (alias is None):
            raise InvalidArgumentError("Give a model version number or an alias, not both")
        if alias is not None:
            return ModelVersionView(self.transport.model_version_by_alias(name, alias))
        assert version is not None
        return ModelVersionView(self.transport.model_version(name, int(version)))

    def record_deployment(
        self, name: str, version: int, environment: str, *, application_version: str | None = None
    ) -> dict[str, Any]:
        """Record that version ``version`` of ``name`` now runs in ``environment``; the deployment (with its id)."""
        return self.transport.record_deployment(
            name, int(version), environment=environment, application_version=application_version
        )

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

    # -- checkpoints -----------------------------------------------------------------------------

    def log_checkpoint(
        self,
        run: str | ActiveRun | RunView,
        path: str | Path,
        *,
        step: int,
        metrics: Mapping[str, float] | None = None,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Upload a file or a directory as the run's checkpoint at ``step``, with the metrics at that step.

        The files go under the run's ``checkpoints/step-<step>/`` artifacts; lakeops then records
        them with their versions and sha256. Logging the same step again replaces the checkpoint.
        Returns the recorded checkpoint.

        Raises:
            InvalidArgumentError: no such file or directory, a negative step, non-numeric metrics.
            NotFoundError: no such run.
        """
        from lakeops.client.checkpoints import log_checkpoint

        run_id = _run_id(run)
        if isinstance(run, ActiveRun):
            artifact_uri = run.artifact_uri
        else:
            artifact_uri = self._call(lambda: self.transport.run(run_id))["info"]["artifact_uri"]
        return log_checkpoint(
            self, run_id=run_id, artifact_uri=artifact_uri, path=path, step=step, metrics=metrics, progress=progress
        )

    def checkpoints(self, run: str | ActiveRun | RunView) -> pl.DataFrame:
        """The run's checkpoints, by step: step, size, files, when, and a ``metrics.<name>`` column per metric."""
        from lakeops.client.checkpoints import checkpoints_frame

        run_id = _run_id(run)
        return checkpoints_frame(self._call(lambda: self.transport.checkpoints(run_id)))

    def checkpoint(
        self, run: str | ActiveRun | RunView, which: str | int = "latest", *, best: str | None = None, mode: str = "min"
    ) -> dict[str, Any]:
        """One checkpoint's record: ``"latest"``, a step, or ``best=<metric>`` (``mode`` min or max)."""
        from lakeops.client.checkpoints import select_checkpoint

        return select_checkpoint(self, _run_id(run), which, best=best, mode=mode)

    def load_checkpoint(
        self,
        run: str | ActiveRun | RunView,
        which: str | int = "latest",
        *,
        best: str | None = None,
        mode: str = "min",
        dest: str | Path | None = None,
    ) -> Path:
        """Download a checkpoint and return where it is: the file, or the directory that was logged.

        ``which`` is ``"latest"`` (the highest step) or a step number; ``best="val_loss"`` picks the
        checkpoint with the lowest value of that metric (``mode="max"``: the highest). Files land in
        ``dest`` (default: a new temporary directory) and are checked against their sha256.

        Raises:
            NotFoundError: no such run, no checkpoint at that step, none carrying the metric.
        """
        from lakeops.client.checkpoints import download_checkpoint

        return download_checkpoint(self, self.checkpoint(run, which, best=best, mode=mode), dest)

    def delete_checkpoint(self, run: str | ActiveRun | RunView, step: int) -> None:
        """Remove the checkpoint at ``step`` (its bytes are reclaimed by ``lakeops maintain --gc``)."""
        run_id = _run_id(run)
        self._call(lambda: self.transport.delete_checkpoint(run_id, step))

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


def _run_id(run: str | ActiveRun | RunView) -> str:
    return run if isinstance(run, str) else run.run_id


def _arrow_table(data: Any) -> pa.Table:
    """A polars or pandas DataFrame (or an Arrow table) as an Arrow table."""
    import pyarrow as pa

    table: Any = None
    if isinstance(data, pa.Table):
        table = data
    elif type(data).__module__.startswith("polars") and callable(getattr(data, "to_arrow", None)):
        table = data.to_arrow()
    elif type(data).__module__.startswith("pandas"):
        table = pa.Table.from_pandas(data, preserve_index=False)
    if not isinstance(table, pa.Table):
        raise InvalidArgumentError(
            f"Cannot log a {type(data).__name__} as a dataset: give a polars or pandas DataFrame, "
            "an Arrow table or a path"
        )
    # The same data from polars or pandas is the same version: one string type, no library metadata.
    fields = [
        pa.field(f.name, pa.string() if f.type in (pa.large_string(), pa.string_view()) else f.type, f.nullable)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _validations_frame(validations: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    import polars as pl

    rows = []
    for v in validations:
        stats = v.get("statistics") or {}
        failed = [
            f"{r['type']}({r.get('kwargs', {}).get('column', '')})" for r in v.get("results") or [] if not r["success"]
        ]
        rows.append(
            {
                "suite_name": v["suite_name"],
                "success": bool(v["success"]),
                "evaluated": stats.get("evaluated_expectations"),
                "failed": ", ".join(failed),
                "validation_id": v["validation_id"],
            }
        )
    schema = {
        "suite_name": pl.String,
        "success": pl.Boolean,
        "evaluated": pl.Int64,
        "failed": pl.String,
        "validation_id": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")
