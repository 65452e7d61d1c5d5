"""Issue 9's scale benchmark: a served lake of many runs and metric points, and two replicas on it.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scale.py [--scale small|medium|large] [--backend file|s3|both]

Prints a table of figures, each beside the issue's target with PASS or MISS (it is not a test).
Progress goes to stderr, the table to stdout.

Scales (every run has 10 params, 5 metrics and 3 tags; the full lake has 20 steps per metric, the
"10x fewer points" lake the same runs with 2 steps; the full lake also holds one run with a
100,000-point series for the history read):

    tiny      1,000 runs,       100,000 points (+100,000)   a smoke run of this script only
    small    10,000 runs,     1,000,000 points (+100,000)   the default: ~10 min on 2 shared cores
    medium   100,000 runs,   10,000,000 points (+100,000)
    large  1,000,000 runs,  100,000,000 points (+100,000)   the issue's sizes (hours to build)

The issue states its targets for 1M runs; at smaller scales they are printed unchanged.

On each backend (``file``: SQLite catalog and a ``file://`` warehouse; ``s3``: SQLite catalog and
an ``s3://`` warehouse on a SeaweedFS server started with ``tests/s3server.py``):

1. Build the full lake and the 10x-fewer lake. Metric points go through the Arrow bulk path
   (``TrackingService.log_metrics_table``, 10,000 runs' points per call); runs, params and tags
   go in as change rows through the store's one write primitive (``store.write``), 10,000 runs per
   write: one run at a time through the service, every param write would be a synchronous,
   conflict-checked commit (tens of ms), i.e. hours at 1M runs. Committed, then ``maintain()``
   (compaction), as the background committer does on a live lake.
2. Cold start: a fresh ``lakeops serve`` process on each lake, timed from spawn until a filtered
   top-100 search (``params.p1 = 'b' AND metrics.m0 > 0.5``, ordered by ``metrics.m1 DESC``)
   answers; median of ``--cold-starts`` alternating starts; the ratio full / 10x fewer, in wall
   time and in the server's CPU seconds until then (the latter hardly moves with other load on the
   machine; the wall time includes some 3-10 s of Python imports, printed for reference).
3. RSS of the full lake's server process after start and one search (the larger of: right after
   it, and once the server has gone idle; the read figures below are taken once it is idle).
4. On that server and in-process (``open_store`` + ``TrackingService``, as the server calls it):
   the filtered top-100 search and an unfiltered 1,000-run page (service call = server-side time;
   HTTP round trip for information: it includes this client decoding the JSON, ~50 ms for the
   1.3 MB of a 1,000-run page), the 100,000-point history as Arrow (service call and the native
   Arrow route), ``get_run``.
5. Two replicas: two ``lakeops serve`` processes on one fresh lake. 100 tries of the same param
   set at the same moment to ``a`` through replica A and to ``b`` through replica B (exactly one
   must be acknowledged, and both replicas must then show that value); 80 model versions created
   concurrently through both (4 threads each); visibility: a tag set through A, polled on B.
6. Concurrent loggers: 32 stock ``mlflow`` clients (4 processes x 8 threads, each
   ``MlflowClient(tracking_uri=...).log_batch`` of 10 metrics on its own run) vs 1, for
   ``--duration`` seconds each; on ``file`` the same against MLflow 3.17.2 on SQLite
   (``mlflow server`` from this venv, its default 4 workers), back to back. Beside each rate: the
   cores the server and the loggers used meanwhile (clients and server share this machine's cores,
   so the 32/1 ratio cannot exceed the cores left over by the 1-logger run).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
from pydantic import SecretStr

from catalog.tables import PARAMS, RUN_CHANGES, TAG_CHANGES, TableDef
from lakeops.entities import LifecycleStage, RunStatus
from lakeops.settings import LakeopsSettings, LocalStorageConfig, S3StorageConfig, SqlCatalogConfig
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mlflow_api import Server, clean_env, progress  # noqa: E402
from s3server import SeaweedServer  # noqa: E402
from serve_process import child_env  # noqa: E402


@dataclass(frozen=True)
class Scale:
    runs: int
    steps: int  # per metric in the full lake; the 10x-fewer lake has steps // 10


SCALES = {
    "tiny": Scale(runs=1_000, steps=20),  # a smoke run of this script, not a measurement
    "small": Scale(runs=10_000, steps=20),
    "medium": Scale(runs=100_000, steps=20),
    "large": Scale(runs=1_000_000, steps=20),
}
PARAM_KEYS = [f"p{i}" for i in range(10)]
METRIC_KEYS = [f"m{i}" for i in range(5)]
TAG_KEYS = [f"t{i}" for i in range(3)]
P1_VALUES = np.array(["a", "b", "c", "d"])
RUNS_PER_WRITE = 10_000
HISTORY_POINTS = 100_000
HISTORY_KEY = "loss"
SEARCH_FILTER = "params.p1 = 'b' AND metrics.m0 > 0.5"
SEARCH_ORDER = ["metrics.m1 DESC"]
SEARCH_CALLS = 20
PAGE_CALLS = 10
HISTORY_CALLS = 10
GET_RUN_CALLS = 200
CONFLICT_TRIES = 100
VERSION_THREADS = 4  # per replica
VERSIONS_PER_THREAD = 10
VISIBILITY_SAMPLES = 20
LOGGER_PROCESSES = 4
LOGGERS = 32
METRICS_PER_BATCH = 10
ARROW_STREAM = "application/vnd.apache.arrow.stream"
MLFLOW = Path(sys.executable).parent / "mlflow"

# Targets, from issue 9's "Benchmark" section.
COLD_START_S = 5.0
COLD_RATIO = 1.3
RSS_MB = 1536.0
SEARCH_MS = 50.0
PAGE_MS = 100.0
HISTORY_MS = 50.0
GET_RUN_MS = 2.0
VISIBILITY_S = 1.0
SCALE_UP = 3.0
VS_MLFLOW = 5.0


# -- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    backend: str
    name: str
    value: str
    target: str = "(info)"
    ok: bool | None = None  # None: information, no target

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "MISS")


class Report:
    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        progress(f"{figure.backend} {figure.name}: {figure.value}  {figure.target} {figure.verdict}")

    def at_most(self, backend: str, name: str, value: float, target: float, unit: str) -> None:
        self.add(Figure(backend, name, _fmt(value, unit), f"<= {_fmt(target, unit)}", value <= target))

    def at_least(self, backend: str, name: str, value: float, target: float, unit: str) -> None:
        self.add(Figure(backend, name, _fmt(value, unit), f">= {_fmt(target, unit)}", value >= target))

    def info(self, backend: str, name: str, value: str) -> None:
        self.add(Figure(backend, name, value))

    def print(self, header: str) -> None:
        name_w = max(len(f.name) for f in self.figures)
        value_w = max(len(f.value) for f in self.figures)
        target_w = max(len(f.target) for f in self.figures)
        print(header)
        print(f"{'backend':<7}  {'figure':<{name_w}}  {'value':>{value_w}}  {'target':<{target_w}}  verdict")
        for f in self.figures:
            print(f"{f.backend:<7}  {f.name:<{name_w}}  {f.value:>{value_w}}  {f.target:<{target_w}}  {f.verdict}")
        misses = [f for f in self.figures if f.ok is False]
        targets = sum(f.ok is not None for f in self.figures)
        print(f"{len(misses)} of {targets} targets missed" if misses else f"all {targets} targets met")


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:,.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    return f"{value:,.0f} {unit}"


def median_ms(call: Callable[[], object], times: int, *, warmup: int = 2) -> float:
    """Median wall time of ``times`` calls after ``warmup`` untimed ones, in milliseconds."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def p95(samples: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered), max(1, -(-95 * len(ordered) // 100))) - 1]


# -- building lakes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lake:
    settings: LakeopsSettings
    experiment_id: str
    runs: int
    points: int
    probe_run_id: str  # a regular run, for get_run
    history_run_id: str | None  # the run with the 100,000-point series, if any


def _rows(table: TableDef, n: int, columns: Mapping[str, Any]) -> pa.RecordBatch:
    """``n`` rows of ``table``: a list or array per column, a scalar repeated, absent columns null."""
    arrays = []
    for field in table.arrow_schema:
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(n, field.type))
        elif isinstance(value, list | np.ndarray | pa.Array):
            arrays.append(pa.array(value, field.type))
        else:
            arrays.append(pa.array([value] * n, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=table.arrow_schema)


def _run_rows(writer_id: str, experiment_id: str, run_ids: list[str], rng: np.random.Generator) -> dict[str, Any]:
    """Change rows creating ``run_ids`` with their params and tags, as the services write them."""
    n = len(run_ids)
    now_us = int(time.time() * 1_000_000)
    change = {"changed_at": now_us, "actor": "bench", "writer_id": writer_id, "wal_seq": 0}
    runs = _rows(
        RUN_CHANGES,
        n,
        {
            "run_id": run_ids,
            "experiment_id": experiment_id,
            "run_name": [f"run-{r[:8]}" for r in run_ids],
            "user_id": "bench",
            "status": RunStatus.FINISHED.value,
            "started_at": now_us - 60_000_000,
            "ended_at": now_us,
            "lifecycle_stage": LifecycleStage.ACTIVE.value,
            "artifact_uri": [f"mlflow-artifacts:/{experiment_id}/{r}/artifacts" for r in run_ids],
            **change,
            "operation": "create",
        },
    )
    tag_keys = [*TAG_KEYS, "mlflow.runName"]
    tag_ids = np.repeat(np.array(run_ids, dtype=object), len(tag_keys))
    tag_values = [v for r in run_ids for v in (f"team-{r[0]}", f"v{r[1]}", f"x{r[2:4]}", f"run-{r[:8]}")]
    tags = _rows(
        TAG_CHANGES,
        n * len(tag_keys),
        {
            "entity_type": "run",
            "entity_id": list(tag_ids),
            "key": tag_keys * n,
            "value": tag_values,
            "is_deleted": False,
            **change,
            "operation": "set_tag",
        },
    )
    p1 = P1_VALUES[rng.integers(0, len(P1_VALUES), n)]
    floats = rng.random((n, len(PARAM_KEYS)))
    param_values = [p1[i] if k == 1 else f"{floats[i, k]:.4f}" for i in range(n) for k in range(len(PARAM_KEYS))]
    params = _rows(
        PARAMS,
        n * len(PARAM_KEYS),
        {
            "run_id": list(np.repeat(np.array(run_ids, dtype=object), len(PARAM_KEYS))),
            "key": PARAM_KEYS * n,
            "value": param_values,
            "logged_at": now_us,
        },
    )
    return {RUN_CHANGES.name: runs, TAG_CHANGES.name: tags, PARAMS.name: params}


def _points(run_ids: list[str], keys: list[str], steps: int, rng: np.random.Generator) -> pa.Table:
    """``steps`` points of each key of each run, as ``log_metrics_table`` takes them."""
    per_run = len(keys) * steps
    total = len(run_ids) * per_run
    step = np.tile(np.arange(steps, dtype=np.int64), len(run_ids) * len(keys))
    return pa.table(
        {
            "run_id": pa.array(run_ids).take(pa.array(np.repeat(np.arange(len(run_ids)), per_run))),
            "key": pa.array(keys).take(pa.array(np.tile(np.repeat(np.arange(len(keys)), steps), len(run_ids)))),
            "value": rng.random(total),
            "timestamp": 1_700_000_000_000 + step * 1000,
            "step": step,
        }
    )


def build_lake(settings: LakeopsSettings, *, runs: int, steps: int, history: bool) -> tuple[Lake, float]:
    """A lake of ``runs`` runs with ``steps`` points per metric; returns it and the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(9)
    store = open_store(settings, start_committer=False)
    try:
        tracking = TrackingService(store, actor="bench")
        experiment_id = tracking.create_experiment("scale")
        run_ids = [uuid.uuid4().hex for _ in range(runs)]
        points = 0
        for start in range(0, runs, RUNS_PER_WRITE):
            chunk = run_ids[start : start + RUNS_PER_WRITE]
            rows = _run_rows(store.writer_id, experiment_id, chunk, rng)
            store.write(lambda _state, rows=rows: rows)
            points += tracking.log_metrics_table(_points(chunk, METRIC_KEYS, steps, rng))
            store.commit()
            if start and start % (10 * RUNS_PER_WRITE) == 0:
                progress(f"  {start:,} runs, {points:,} points")
        history_run_id = None
        if history:
            history_run_id = tracking.create_run(experiment_id, run_name="history").info.run_id
            points += tracking.log_metrics_table(_points([history_run_id], [HISTORY_KEY], HISTORY_POINTS, rng))
        store.commit()
        store.maintain()
    finally:
        store.close()
    lake = Lake(settings, experiment_id, runs, points, run_ids[len(run_ids) // 2], history_run_id)
    return lake, time.perf_counter() - started


# -- backends -------------------------------------------------------------------------------------


@contextlib.contextmanager
def backend(kind: str, root: Path) -> Iterator[Callable[[str], LakeopsSettings]]:
    """Settings for fresh lakes on ``kind`` (``file`` or ``s3``), each under ``root / name``."""
    if kind == "file":
        yield lambda name: LakeopsSettings(home=root / name, storage=LocalStorageConfig(), catalog=SqlCatalogConfig())
        return
    with SeaweedServer(root / "seaweed") as server:
        progress(f"SeaweedFS S3 server up at {server.endpoint} in {server.startup_seconds or 0:.1f} s")

        def make(name: str) -> LakeopsSettings:
            storage = S3StorageConfig(
                endpoint=server.endpoint,
                bucket=server.bucket,
                prefix=f"scale-{name}-{uuid.uuid4().hex[:8]}",
                access_key_id=server.access_key,
                secret_access_key=SecretStr(server.secret_key),
                region=server.region,
            )
            return LakeopsSettings(home=root / name, storage=storage, catalog=SqlCatalogConfig())

        yield make


def lakeops_server(settings: LakeopsSettings, name: str, *, checkpoints: bool = True) -> Server:
    """A (not yet started) ``lakeops serve`` child process on ``settings``' lake (``checkpoints=False``:
    start-up ignores the run checkpoints and folds every change row, as before they existed)."""
    argv = [sys.executable, "-m", "lakeops.cli", "serve", "--port", "{port}"]
    settings.home.mkdir(parents=True, exist_ok=True)
    env = child_env(settings)
    if not checkpoints:
        env["LAKEOPS_WRITE__RUN_CHECKPOINTS"] = "false"
    return Server(name, argv, env, settings.home / f"{name}.log", start_timeout=600)


def start_until(server: Server, ready: Callable[[], bool], timeout: float = 900) -> tuple[float, float]:
    """Spawn ``server``; the wall seconds until ``ready()`` first holds (polled every 50 ms), its CPU seconds then."""
    started = time.perf_counter()
    with server.log_path.open("ab") as log:
        server.proc = subprocess.Popen(
            server.argv, env=server.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    while time.perf_counter() - started < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if ready():
                return time.perf_counter() - started, _cpu_seconds(server.proc.pid)
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{server.name} did not answer in {timeout:.0f} s:\n{server.log_tail()}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(server: Server, *, below: float = 0.05, window: float = 1.0, timeout: float = 120.0) -> float:
    """Wait until the server uses less than ``below`` of a core over ``window`` s; the seconds waited.

    A freshly started server finishes work in the background after its first answer (imports it
    defers, its first commit and refresh); latency figures are for the steady state after that.
    """
    assert server.proc is not None
    started = time.perf_counter()
    before = _cpu_seconds(server.proc.pid)
    while time.perf_counter() - started < timeout:
        time.sleep(window)
        now = _cpu_seconds(server.proc.pid)
        if now - before < below * window:
            break
        before = now
    return time.perf_counter() - started


def search_body(lake: Lake, *, max_results: int = 100, filtered: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"experiment_ids": [lake.experiment_id], "max_results": max_results}
    if filtered:
        body |= {"filter": SEARCH_FILTER, "order_by": SEARCH_ORDER}
    return body


def http_search(client: httpx.Client, url: str, lake: Lake, **kwargs: Any) -> list[dict[str, Any]]:
    response = client.post(f"{url}/api/2.0/mlflow/runs/search", json=search_body(lake, **kwargs), timeout=300)
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json().get("runs", [])
    return runs


# -- 2-4: cold start, memory, reads ---------------------------------------------------------------


def measure_serving(report: Report, kind: str, full: Lake, fewer: Lake, cold_starts: int) -> None:
    cold: dict[str, list[float]] = {"full": [], "fewer": []}
    cpu: dict[str, list[float]] = {"full": [], "fewer": []}
    rss = 0.0
    client = httpx.Client()
    server: Server | None = None
    try:
        # For reference: the same start-up folding every change row (no run checkpoint).
        server = lakeops_server(full.settings, "cold-folded", checkpoints=False)
        url = server.url
        seconds, cpu_s = start_until(server, lambda: bool(http_search(client, url, full)))
        rss_folded = server.rss_mb()
        server.stop()
        progress(f"{kind}: cold start without a run checkpoint: {seconds:.2f} s ({cpu_s:.2f} s CPU)")
        report.info(
            kind,
            "cold start without a run checkpoint (every change row folded)",
            f"{seconds:.2f} s, {cpu_s:.2f} s CPU, {rss_folded:,.0f} MB RSS",
        )
        for i in range(cold_starts):
            for label, lake in (("fewer", fewer), ("full", full)):
                server = lakeops_server(lake.settings, f"cold-{label}-{i}")
                url = server.url
                seconds, cpu_s = start_until(server, lambda lake=lake, url=url: bool(http_search(client, url, lake)))
                cold[label].append(seconds)
                cpu[label].append(cpu_s)
                progress(f"{kind}: cold start {label} #{i + 1}: {seconds:.2f} s ({cpu_s:.2f} s CPU)")
                if label == "full":
                    rss = max(rss, server.rss_mb())
                if label == "fewer" or i < cold_starts - 1:  # the last one, on the full lake, stays up
                    server.stop()
        # the last server is the full lake's: read from it
        full_s, fewer_s = statistics.median(cold["full"]), statistics.median(cold["fewer"])
        name = f"cold start to first search ({full.points:,} points, {full.runs:,} runs)"
        report.at_most(kind, name, full_s, COLD_START_S, "s")
        report.info(kind, f"cold start, 10x fewer points ({fewer.points:,})", _fmt(fewer_s, "s"))
        report.at_most(kind, "cold start ratio full / 10x fewer (wall time)", full_s / fewer_s, COLD_RATIO, "x")
        full_cpu, fewer_cpu = statistics.median(cpu["full"]), statistics.median(cpu["fewer"])
        report.info(kind, "cold start, server CPU: full / 10x fewer", f"{full_cpu:.2f} s / {fewer_cpu:.2f} s")
        report.at_most(kind, "cold start ratio full / 10x fewer (server CPU)", full_cpu / fewer_cpu, COLD_RATIO, "x")
        assert server is not None
        settled = wait_idle(server)
        progress(f"{kind}: server idle {settled:.1f} s after its first search")
        rss = max(rss, server.rss_mb())
        report.at_most(kind, "server RSS after start and one search (max of: at once, once idle)", rss, RSS_MB, "MB")
        url = server.url
        report.info(
            kind,
            "filtered top-100 search, HTTP round trip",
            _fmt(median_ms(lambda: http_search(client, url, full), SEARCH_CALLS), "ms"),
        )
        report.info(
            kind,
            "1,000-run page, HTTP round trip",
            _fmt(median_ms(lambda: http_search(client, url, full, max_results=1000, filtered=False), PAGE_CALLS), "ms"),
        )
        assert full.history_run_id is not None
        history_url = f"{url}/api/v1/runs/{full.history_run_id}/metrics/{HISTORY_KEY}/history"

        def arrow_history() -> None:
            response = client.get(history_url, headers={"accept": ARROW_STREAM}, timeout=60)
            response.raise_for_status()
            assert pa.ipc.open_stream(response.content).read_all().num_rows == HISTORY_POINTS

        history_ms = median_ms(arrow_history, HISTORY_CALLS)
        report.at_most(kind, "100k-point history, native Arrow route (HTTP)", history_ms, HISTORY_MS, "ms")
        params = {"run_id": full.probe_run_id}
        get_ms = median_ms(lambda: client.get(f"{url}/api/2.0/mlflow/runs/get", params=params).raise_for_status(), 50)
        report.info(kind, "get_run, HTTP round trip", _fmt(get_ms, "ms"))
    finally:
        if server is not None:
            server.stop()
        client.close()
    measure_in_process(report, kind, full)


def measure_in_process(report: Report, kind: str, lake: Lake) -> None:
    """Service calls, timed in this process on a store opened on the lake (what a request handler runs)."""
    store = open_store(lake.settings, start_committer=False)
    try:
        tracking = TrackingService(store, actor="bench")
        experiments = [lake.experiment_id]

        def top100() -> None:
            page = tracking.search_runs(
                experiments, filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=100
            )
            assert len(page.runs) == 100

        def page1000() -> None:
            assert len(tracking.search_runs(experiments, max_results=1000).runs) == 1000

        assert lake.history_run_id is not None
        history_run_id = lake.history_run_id

        def history() -> None:
            assert tracking.metric_history_table(history_run_id, HISTORY_KEY).num_rows == HISTORY_POINTS

        probe = lake.probe_run_id
        for name, call, times, target in (
            ("filtered top-100 search, service call", top100, SEARCH_CALLS, SEARCH_MS),
            ("1,000-run page, service call", page1000, PAGE_CALLS, PAGE_MS),
            ("100k-point history as Arrow, service call", history, HISTORY_CALLS, HISTORY_MS),
            ("get_run, service call", lambda: tracking.get_run(probe), GET_RUN_CALLS, GET_RUN_MS),
        ):
            report.at_most(kind, name, median_ms(call, times), target, "ms")
    finally:
        store.close()


# -- 5: two replicas ------------------------------------------------------------------------------


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls on threads released at the same moment; their results in order."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def go(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _wait_for(check: Callable[[], bool], timeout: float = 30.0) -> float:
    """Poll ``check`` every 10 ms; the seconds until it held (``timeout`` if it never did)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return time.perf_counter() - started
        time.sleep(0.01)
    return timeout


def measure_replicas(report: Report, kind: str, settings: LakeopsSettings) -> None:
    a, b = lakeops_server(settings, "replica-a"), lakeops_server(settings, "replica-b")
    ca, cb = httpx.Client(timeout=120), httpx.Client(timeout=120)
    try:
        a.start()
        b.start()
        wait_idle(a)
        wait_idle(b)
        api_a, api_b = f"{a.url}/api/2.0/mlflow", f"{b.url}/api/2.0/mlflow"
        experiment_id = ca.post(f"{api_a}/experiments/create", json={"name": "replicas"}).json()["experiment_id"]
        run_id = ca.post(f"{api_a}/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
        _wait_for(lambda: cb.get(f"{api_b}/runs/get", params={"run_id": run_id}).status_code == 200)

        # conflicting param writes
        exactly_one = both = 0
        acknowledged: dict[str, str] = {}
        for i in range(CONFLICT_TRIES):
            key = f"k{i}"
            codes = _at_once(
                *(
                    lambda client=client, api=api, body={"run_id": run_id, "key": key, "value": value}: (
                        client.post(f"{api}/runs/log-parameter", json=body).status_code
                    )
                    for client, api, value in ((ca, api_a, "a"), (cb, api_b, "b"))
                )
            )
            oks = [v for v, code in zip("ab", codes, strict=True) if code == 200]
            exactly_one += len(oks) == 1
            both += len(oks) == 2
            if len(oks) == 1:
                acknowledged[key] = oks[0]

        def params_of(client: httpx.Client, api: str) -> dict[str, str]:
            data = client.get(f"{api}/runs/get", params={"run_id": run_id}).json()["run"]["data"]
            return {p["key"]: p["value"] for p in data.get("params", [])}

        def settled() -> bool:
            pa_, pb = params_of(ca, api_a), params_of(cb, api_b)
            return all(k in pa_ and k in pb for k in (f"k{i}" for i in range(CONFLICT_TRIES)))

        _wait_for(settled, timeout=15)
        pa_, pb = params_of(ca, api_a), params_of(cb, api_b)
        agree = sum(1 for k, v in acknowledged.items() if pa_.get(k) == pb.get(k) == v)
        report.add(
            Figure(
                kind,
                f"conflicting param writes: tries with exactly one acknowledged ({both} with both)",
                f"{exactly_one}/{CONFLICT_TRIES}",
                f"= {CONFLICT_TRIES}/{CONFLICT_TRIES}",
                exactly_one == CONFLICT_TRIES,
            )
        )
        report.add(
            Figure(
                kind,
                "  ... and both replicas then show the acknowledged value",
                f"{agree}/{CONFLICT_TRIES}",
                f"= {CONFLICT_TRIES}/{CONFLICT_TRIES}",
                agree == CONFLICT_TRIES,
            )
        )

        # concurrent model-version creation through both replicas
        model = "scale-model"
        ca.post(f"{api_a}/registered-models/create", json={"name": model}).raise_for_status()
        _wait_for(lambda: cb.get(f"{api_b}/registered-models/get", params={"name": model}).status_code == 200)
        numbers: list[int] = []
        refused = 0
        lock = threading.Lock()

        def create_versions(client: httpx.Client, api: str, tag: str) -> None:
            nonlocal refused
            for j in range(VERSIONS_PER_THREAD):
                response = client.post(
                    f"{api}/model-versions/create", json={"name": model, "source": f"s3://bench/{tag}/{j}"}
                )
                with lock:
                    if response.status_code == 200:
                        numbers.append(int(response.json()["model_version"]["version"]))
                    else:
                        refused += 1

        _at_once(
            *(
                lambda client=client, api=api, t=f"{side}{t}": create_versions(client, api, t)
                for side, client, api in (("a", ca, api_a), ("b", cb, api_b))
                for t in range(VERSION_THREADS)
            )
        )
        wanted = 2 * VERSION_THREADS * VERSIONS_PER_THREAD
        unique = len(set(numbers)) == len(numbers)
        gapless = sorted(numbers) == list(range(1, len(numbers) + 1))
        distinct = len(set(numbers))
        report.add(
            Figure(
                kind,
                f"concurrent model versions via both replicas ({len(numbers)} acknowledged, {refused} refused)",
                "unique, gapless"
                if unique and gapless
                else f"{distinct} distinct numbers, highest {max(numbers, default=0)}",
                f"unique, gapless, {wanted}",
                unique and gapless and len(numbers) == wanted,
            )
        )

        # visibility: a write acknowledged by A, polled on B
        samples = []
        for i in range(VISIBILITY_SAMPLES):
            ca.post(f"{api_a}/runs/set-tag", json={"run_id": run_id, "key": "vis", "value": str(i)}).raise_for_status()

            def seen(value: str = str(i)) -> bool:
                tags = cb.get(f"{api_b}/runs/get", params={"run_id": run_id}).json()["run"]["data"].get("tags", [])
                return any(t["key"] == "vis" and t["value"] == value for t in tags)

            samples.append(_wait_for(seen, timeout=15))
        report.at_most(kind, f"visibility A -> B, p95 of {VISIBILITY_SAMPLES}", p95(samples), VISIBILITY_S, "s")
        report.info(kind, "visibility A -> B, median", _fmt(statistics.median(samples), "s"))
    finally:
        ca.close()
        cb.close()
        b.stop()
        a.stop()


# -- 6: concurrent stock-mlflow-client loggers ----------------------------------------------------


def _logger_process(url: str, run_ids: list[str], duration: float, barrier: Any, results: Any) -> None:
    """One process of loggers: a thread per run, each its own ``MlflowClient``, for ``duration`` s."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    clients = [MlflowClient(tracking_uri=url) for _ in run_ids]
    done = [0] * len(run_ids)
    failed = [0] * len(run_ids)
    barrier.wait()
    cpu_started = time.process_time()
    deadline = time.monotonic() + duration

    def log(i: int) -> None:
        step = 0
        while time.monotonic() < deadline:
            now = int(time.time() * 1000)
            metrics = [Metric(f"m{k}", float(step), now, step) for k in range(METRICS_PER_BATCH)]
            try:
                clients[i].log_batch(run_ids[i], metrics=metrics)
            except Exception:  # counted, not raised: a refused request is a figure too
                failed[i] += 1
            else:
                if time.monotonic() < deadline:
                    done[i] += 1
            step += 1

    threads = [threading.Thread(target=log, args=(i,)) for i in range(len(run_ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((sum(done), sum(failed), time.process_time() - cpu_started))


@dataclass(frozen=True)
class LoggingRate:
    requests_per_s: float
    failed: int
    server_cores: float  # CPU seconds of the server's process tree per second
    client_cores: float  # the same for the logger processes

    def text(self) -> str:
        return (
            f"{_fmt(self.requests_per_s, 'req/s')} ({self.failed} failed; cores used: "
            f"server {self.server_cores:.2f}, clients {self.client_cores:.2f})"
        )


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (MLflow's server runs worker processes)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            total += _cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return total


def logging_rate(server: Server, loggers: int, duration: float) -> LoggingRate:
    """Requests/s of ``loggers`` concurrent ``log_batch`` loops against ``server``, the failures, CPU used."""
    from mlflow import MlflowClient

    assert server.proc is not None
    client = MlflowClient(tracking_uri=server.url)
    experiment_id = client.create_experiment(f"loggers-{uuid.uuid4().hex[:8]}")
    run_ids = [client.create_run(experiment_id).info.run_id for _ in range(loggers)]
    processes = min(LOGGER_PROCESSES, loggers)
    # fork, not spawn: a spawned child re-imports this script (lakeops, pyiceberg) and mlflow, which
    # takes a minute per round on a loaded 2-core machine; forked, they start with mlflow loaded. No
    # thread of this process is running at this point (stores closed, HTTP clients closed).
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(processes + 1), context.Queue()
    workers = [
        context.Process(target=_logger_process, args=(server.url, run_ids[p::processes], duration, barrier, results))
        for p in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        barrier.wait(timeout=120)
        server_cpu = _tree_cpu_seconds(server.proc.pid)
        counts = [results.get(timeout=duration + 300) for _ in workers]
        server_cpu = _tree_cpu_seconds(server.proc.pid) - server_cpu
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.kill()
    return LoggingRate(
        requests_per_s=sum(c[0] for c in counts) / duration,
        failed=sum(c[1] for c in counts),
        server_cores=server_cpu / duration,
        client_cores=sum(c[2] for c in counts) / duration,
    )


def measure_loggers(
    report: Report, kind: str, settings: LakeopsSettings, duration: float, mlflow_home: Path | None
) -> None:
    rates: dict[str, tuple[float, float]] = {}
    servers: list[tuple[str, Server]] = [("lakeops", lakeops_server(settings, "loggers"))]
    if mlflow_home is not None:
        mlflow_home.mkdir(parents=True, exist_ok=True)
        argv = [
            str(MLFLOW),
            "server",
            "--backend-store-uri",
            f"sqlite:///{mlflow_home / 'mlflow.db'}",
            "--artifacts-destination",
            str(mlflow_home / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ]
        env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        servers.append(("mlflow", Server("mlflow", argv, env, mlflow_home / "server.log", start_timeout=300)))
    try:
        for _name, server in servers:
            server.start()
        for _name, server in servers:
            wait_idle(server)
        for name, server in servers:  # back to back, so drifting load elsewhere hits both alike
            one = logging_rate(server, 1, duration)
            many = logging_rate(server, LOGGERS, duration)
            rates[name] = (one.requests_per_s, many.requests_per_s)
            label = "lakeops" if name == "lakeops" else "MLflow 3.17.2 + SQLite (4 workers)"
            report.info(kind, f"{label}: 1 mlflow-client logger", one.text())
            report.info(kind, f"{label}: {LOGGERS} mlflow-client loggers", many.text())
    finally:
        for _name, server in servers:
            server.stop()
    one, many = rates["lakeops"]
    report.at_least(kind, f"lakeops {LOGGERS} loggers / 1 logger", many / one, SCALE_UP, "x")
    if "mlflow" in rates:
        report.at_least(kind, f"lakeops / MLflow, {LOGGERS} loggers each", many / rates["mlflow"][1], VS_MLFLOW, "x")


# -- main -----------------------------------------------------------------------------------------


def _rate(lake: Lake, seconds: float) -> str:
    return f"{seconds:.1f} s ({lake.points / seconds:,.0f} points/s)"


def import_seconds() -> float:
    """Wall time of a fresh interpreter importing the server (``import api.main``): cold start's floor."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import api.main"], cwd=ROOT, check=True)
    return time.perf_counter() - started


def run_backend(report: Report, kind: str, root: Path, scale: Scale, args: argparse.Namespace) -> None:
    with backend(kind, root) as make:
        if "serving" in args.parts:
            progress(f"{kind}: building the full lake ({scale.runs:,} runs, {scale.steps} steps per metric)")
            full, seconds = build_lake(make("full"), runs=scale.runs, steps=scale.steps, history=True)
            report.info(kind, f"build: {full.points:,} points, {full.runs:,} runs", _rate(full, seconds))
            progress(f"{kind}: building the 10x-fewer lake")
            fewer, seconds = build_lake(make("fewer"), runs=scale.runs, steps=scale.steps // 10, history=False)
            report.info(kind, f"build: {fewer.points:,} points, {fewer.runs:,} runs", _rate(fewer, seconds))
            report.info(kind, "for reference: a fresh python importing the server", _fmt(import_seconds(), "s"))
            measure_serving(report, kind, full, fewer, args.cold_starts)
        if "replicas" in args.parts:
            progress(f"{kind}: two replicas")
            measure_replicas(report, kind, make("replicas"))
        if "loggers" in args.parts:
            progress(f"{kind}: concurrent loggers")
            mlflow_home = root / "mlflow" if kind == "file" else None
            measure_loggers(report, kind, make("loggers"), args.duration, mlflow_home)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--backend", choices=["file", "s3", "both"], default="both")
    parser.add_argument("--cold-starts", type=int, default=3, help="cold starts per lake (median)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per logger measurement")
    parser.add_argument(
        "--parts",
        type=lambda text: set(text.split(",")),
        default={"serving", "replicas", "loggers"},
        help="comma-separated subset of serving (1-4), replicas (5), loggers (6); default all",
    )
    args = parser.parse_args()
    scale = SCALES[args.scale]
    kinds = ["file", "s3"] if args.backend == "both" else [args.backend]
    report = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lakeops-bench-scale-") as tmp:
        for kind in kinds:
            run_backend(report, kind, Path(tmp) / kind, scale, args)
    report.print(
        f"issue 9 scale benchmark, --scale {args.scale}: {scale.runs:,} runs x (10 params, 5 metrics, 3 tags); "
        f"targets as stated for 1M runs; {time.perf_counter() - started:.0f} s on {multiprocessing.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
