"""The MLflow REST protocol, end to end: the stock ``mlflow`` client against three servers.

Run from the repository root::

    .venv/bin/python benchmarks/bench_mlflow_api.py [--quick] [--servers lakeops,mlflow,stub]

One workload goes through ``mlflow.MlflowClient`` (3.17.2) to three servers, each on a free
loopback port with a fresh temporary home, all started here first and stopped at the end (also on
error). Each step runs against the three back to back before the next step starts, so that load
from elsewhere on the machine, which drifts over minutes, hits them alike:

- ``lakeops``: ``python -m lakeops.cli serve`` on the embedded default (``LAKEOPS_HOME=<tmp>``);
- ``mlflow``: a real MLflow 3.17.2 server on SQLite, one uvicorn worker, from its own venv in
  ``~/.cache/lakeops-bench/mlflow-venv`` (created with uv on first use, reused after); its
  background job runner (GenAI jobs, no part of tracking) is switched off;
- ``stub``: this script in ``--stub-server`` mode, a threaded ``http.server`` answering every
  call with a canned valid response at once, so the client's own cost per call shows.

Workload (targets apply to lakeops):

1. ``log_metric``: p50 of 500 single calls. Target <= 5 ms.
2. ``log_batch`` of 1,000 points: points/s over 20 batches. Target >= 20,000 points/s.
3. ``create_run`` + one ``log_batch`` of 10 params, 5 metrics, 3 tags: runs/s over 200 runs.
   Target >= 100 runs/s. The same pattern then fills the experiment up to 2,000 runs.
4. Filtered top-100 ``search_runs`` over those 2,000 runs (a param and a metric, ordered by a
   metric): median of 10. Target <= 60 ms.
5. Unfiltered ``search_runs`` returning 1,000 runs: median of 5. Target <= 550 ms.
6. ``get_metric_history`` of 100,000 points (logged in 1,000-point batches): median of 3.
   Target <= 2,500 ms.
7. Server RSS after the workload (VmRSS of the server process and its children). Target <= 400 MB.

Then, against lakeops only, its native API with httpx (no mlflow client in the way):
Arrow IPC ingest of 1,000-point batches (points/s over 50; target >= 200,000), a 1,000-run
``POST /api/v1/runs/search`` (median of 10; <= 50 ms) and a 100,000-point history as Arrow IPC
(median of 10; <= 50 ms).

``--quick`` scales the counts down (500 runs, a 20,000-point history) for a fast check; its
figures are not comparable with the targets. ``--servers`` picks a subset (e.g. ``lakeops`` alone,
to profile it). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_VERSION = "3.17.2"
CACHE_DIR = Path.home() / ".cache" / "lakeops-bench"
MLFLOW_VENV = CACHE_DIR / "mlflow-venv"
SERVERS = ("lakeops", "mlflow", "stub")

BATCH_POINTS = 1_000
HISTORY_PAGE = 25_000  # the mlflow client's page size for get_metric_history
PARAM_VALUES = ("a", "b", "c", "d")
SEARCH_FILTER = "params.p1 = 'b' AND metrics.m0 > 0.5"
SEARCH_ORDER = ["metrics.m1 DESC"]
SEARCH_TOP = 100
UNFILTERED_MAX = 1_000
ARROW_STREAM = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Scale:
    """How much work each step does."""

    metric_calls: int = 500
    batches: int = 20
    timed_runs: int = 200
    search_runs: int = 2_000
    search_calls: int = 10
    unfiltered_calls: int = 5
    history_points: int = 100_000
    history_calls: int = 3
    native_batches: int = 50
    native_calls: int = 10


FULL = Scale()
QUICK = Scale(
    metric_calls=100,
    batches=5,
    timed_runs=50,
    search_runs=500,
    search_calls=5,
    unfiltered_calls=3,
    history_points=20_000,
    history_calls=3,
    native_batches=10,
    native_calls=5,
)


def progress(message: str) -> None:
    """A progress line on stderr (the results table goes to stdout)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed_median_ms(call: Callable[[], object], times: int, *, warmup: int = 1) -> float:
    """Median wall time of ``times`` calls after ``warmup`` untimed ones, in milliseconds."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


# -- servers ------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without lakeops/mlflow settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEOPS_", "MLFLOW_"))}
    env.update(extra)
    return env


def tree_rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and all its descendants, in MB."""
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return total_kb / 1024


class Server:
    """A server subprocess in its own session, so that stopping it stops its children too."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, *, start_timeout: float) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = env
        self.log_path = log
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0

    def start(self) -> None:
        import httpx

        started = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    self.startup_s = time.perf_counter() - started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"{self.name} server did not answer /health in {self.start_timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM to the server's process group, then SIGKILL to whatever of it is left. Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def rss_mb(self) -> float:
        assert self.proc is not None
        return tree_rss_mb(self.proc.pid)

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def ensure_mlflow_venv() -> Path:
    """MLflow's own venv (cached); returns its ``mlflow`` executable."""
    python, mlflow = MLFLOW_VENV / "bin" / "python", MLFLOW_VENV / "bin" / "mlflow"
    if mlflow.exists():
        found = subprocess.run(
            [str(python), "-c", "import mlflow; print(mlflow.__version__)"], capture_output=True, text=True, check=False
        )
        if found.stdout.strip() == MLFLOW_VERSION:
            return mlflow
    progress(f"creating {MLFLOW_VENV} with mlflow=={MLFLOW_VERSION} ...")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "uv", "venv", "--allow-existing", str(MLFLOW_VENV)], check=True)
    subprocess.run(
        ["python3", "-m", "uv", "pip", "install", "--python", str(python), f"mlflow=={MLFLOW_VERSION}"], check=True
    )
    return mlflow


def make_server(name: str, home: Path, scale: Scale) -> Server:
    """The (not yet started) server ``name`` with its state under ``home``."""
    home.mkdir(parents=True)
    log = home / "server.log"
    if name == "lakeops":
        argv = [sys.executable, "-m", "lakeops.cli", "serve", "--port", "{port}"]
        return Server(name, argv, clean_env(LAKEOPS_HOME=str(home / "lakeops")), log, start_timeout=90)
    if name == "mlflow":
        argv = [
            str(ensure_mlflow_venv()),
            "server",
            "--backend-store-uri",
            f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination",
            str(home / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
        ]
        # Loopback requests pass MLflow's default host/CORS checks; no need to disable them.
        env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        return Server(name, argv, env, log, start_timeout=180)
    if name == "stub":
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--stub-server",
            "{port}",
            "--stub-runs",
            str(scale.search_runs),
            "--stub-history",
            str(scale.history_points),
        ]
        return Server(name, argv, clean_env(), log, start_timeout=30)
    raise ValueError(f"unknown server {name!r}")


# -- the stub server ------------------------------------------------------------------------------


def canned_run(index: int) -> dict[str, Any]:
    """A run in MLflow's JSON shape, as big as the runs the workload creates."""
    run_id = f"{index:032x}"
    return {
        "info": {
            "run_id": run_id,
            "run_uuid": run_id,
            "run_name": f"run-{index:05d}",
            "experiment_id": "1",
            "user_id": "bench",
            "status": "RUNNING",
            "start_time": 1_700_000_000_000 + index,
            "artifact_uri": f"mlflow-artifacts:/1/{run_id}/artifacts",
            "lifecycle_stage": "active",
        },
        "data": {
            "metrics": [{"key": f"m{k}", "value": 0.5, "timestamp": 1_700_000_000_000, "step": 0} for k in range(5)],
            "params": [{"key": f"p{k}", "value": "b"} for k in range(10)],
            "tags": [{"key": f"t{k}", "value": "x"} for k in range(3)]
            + [{"key": "mlflow.runName", "value": f"run-{index:05d}"}],
        },
        "inputs": {},
    }


def serve_stub(port: int, runs: int, history_points: int) -> None:
    """Answer the workload's MLflow calls with canned responses until killed."""
    experiment = {
        "experiment_id": "1",
        "name": "bench",
        "artifact_location": "mlflow-artifacts:/1",
        "lifecycle_stage": "active",
        "tags": [],
    }
    run_body = json.dumps({"run": canned_run(0)}).encode()
    fresh = canned_run(0)
    fresh["data"] = {"tags": [{"key": "mlflow.runName", "value": fresh["info"]["run_name"]}]}  # as runs/create answers
    fresh_run_id = fresh["info"]["run_id"].encode()
    created_body = json.dumps({"run": fresh}).encode()
    search_bodies: dict[int, bytes] = {}  # by page size
    history_page = json.dumps(
        {
            "metrics": [
                {"key": "loss", "value": 1.0 / (s + 1), "timestamp": 1_700_000_000_000, "step": s}
                for s in range(HISTORY_PAGE)
            ]
        }
    ).encode()
    pages = max(1, -(-history_points // HISTORY_PAGE))

    def search_body(max_results: int) -> bytes:
        count = min(max_results, runs)
        if count not in search_bodies:
            search_bodies[count] = json.dumps({"runs": [canned_run(i) for i in range(count)]}).encode()
        return search_bodies[count]

    def history_body(page_token: str | None) -> bytes:
        page = int(page_token or 0)
        if page + 1 >= pages:
            return history_page
        # The canned page with a token appended: '{"metrics":[...]}' -> '{"metrics":[...],"next_page_token":"n"}'
        return history_page[:-1] + f',"next_page_token":"{page + 1}"}}'.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real servers
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/health":
                self._reply(b"OK")
            elif url.path.endswith("/runs/get"):
                self._reply(run_body)
            elif url.path.endswith("/metrics/get-history"):
                self._reply(history_body(query.get("page_token")))
            elif url.path.endswith("/experiments/get"):
                self._reply(json.dumps({"experiment": experiment}).encode())
            else:
                self._reply(b"{}")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            if path.endswith("/runs/create"):
                self._reply(created_body.replace(fresh_run_id, uuid.uuid4().hex.encode()))
            elif path.endswith("/runs/search"):
                self._reply(search_body(int(json.loads(raw or b"{}").get("max_results") or 1000)))
            elif path.endswith("/experiments/create"):
                self._reply(b'{"experiment_id":"1"}')
            else:  # log-metric, log-batch, log-parameter, set-tag, runs/update, ...
                self._reply(b"{}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


# -- the workload through the mlflow client ---------------------------------------------------------


@dataclass
class Figures:
    """What one server measured; keys are the row ids of the table."""

    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_values(index: int) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    """Params, metrics and tags of the ``index``-th search run (the same on every server)."""
    rng = random.Random(index)
    params = {f"p{k}": rng.choice(PARAM_VALUES) for k in range(10)}
    metrics = {f"m{k}": rng.random() for k in range(5)}
    tags = {f"t{k}": f"tag-{rng.randrange(100)}" for k in range(3)}
    return params, metrics, tags


def expected_top(count: int) -> list[str]:
    """Run names the filtered search must return, in order (checked on the real servers)."""
    hits = []
    for i in range(count):
        params, metrics, _ = run_values(i)
        if params["p1"] == "b" and metrics["m0"] > 0.5:
            hits.append((-metrics["m1"], f"run-{i:05d}"))
    return [name for _, name in sorted(hits)[:SEARCH_TOP]]


class ClientWorkload:
    """The workload through ``MlflowClient`` against one server, one step (method) at a time."""

    STEPS = ("log_metric", "log_batch", "runs", "search_filtered", "search_unfiltered", "history", "memory")

    def __init__(self, server: Server, scale: Scale) -> None:
        from mlflow import MlflowClient

        self.server = server
        self.scale = scale
        self.client = MlflowClient(tracking_uri=server.url)
        self.real = server.name != "stub"  # the stub's canned answers are not checked
        self.figures = Figures()
        self.now = int(time.time() * 1000)
        self.experiment_id = self.client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")
        self.search_experiment_id = self.client.create_experiment(f"search-{uuid.uuid4().hex[:8]}")
        self.history_run_id = ""

    def record(self, key: str, value: float, shown: str) -> None:
        self.figures.values[key] = value
        progress(f"{self.server.name}: {shown}")

    def problem(self, message: str) -> None:
        self.figures.notes.append(f"{self.server.name}: {message}")

    def log_metric(self) -> None:
        client, now = self.client, self.now
        run_id = client.create_run(self.experiment_id, run_name="log-metric").info.run_id
        for step in range(10):
            client.log_metric(run_id, "warmup", 0.5, timestamp=now, step=step)
        samples = []
        for step in range(self.scale.metric_calls):
            started = time.perf_counter()
            client.log_metric(run_id, "loss", 1.0 / (step + 1), timestamp=now, step=step)
            samples.append(time.perf_counter() - started)
        p50 = statistics.median(samples) * 1000
        self.record("log_metric", p50, f"log_metric p50 {p50:.2f} ms")

    def log_batch(self) -> None:
        from mlflow.entities import Metric

        run_id = self.client.create_run(self.experiment_id, run_name="log-batch").info.run_id
        batches = [
            [Metric("loss", 1.0 / (s + 1), self.now, s) for s in range(b * BATCH_POINTS, (b + 1) * BATCH_POINTS)]
            for b in range(self.scale.batches + 1)
        ]
        self.client.log_batch(run_id, metrics=batches[0])  # warm-up
        started = time.perf_counter()
        for batch in batches[1:]:
            self.client.log_batch(run_id, metrics=batch)
        rate = self.scale.batches * BATCH_POINTS / (time.perf_counter() - started)
        self.record("log_batch", rate, f"log_batch {rate:,.0f} points/s")

    def _create_logged_run(self, index: int) -> None:
        from mlflow.entities import Metric, Param, RunTag

        params, metrics, tags = run_values(index)
        run_id = self.client.create_run(self.search_experiment_id, run_name=f"run-{index:05d}").info.run_id
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, self.now, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )

    def runs(self) -> None:
        """Time the first runs, then fill the search experiment with the same pattern (untimed)."""
        started = time.perf_counter()
        for i in range(self.scale.timed_runs):
            self._create_logged_run(i)
        rate = self.scale.timed_runs / (time.perf_counter() - started)
        self.record("runs", rate, f"{rate:,.1f} runs/s; filling to {self.scale.search_runs:,} runs ...")
        started = time.perf_counter()
        for i in range(self.scale.timed_runs, self.scale.search_runs):
            self._create_logged_run(i)
        progress(f"{self.server.name}: filled in {time.perf_counter() - started:.1f} s")

    def _filtered(self) -> list[str]:
        found = self.client.search_runs(
            [self.search_experiment_id], SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=SEARCH_TOP
        )
        return [r.info.run_name for r in found]

    def search_filtered(self) -> None:
        if self.real and self._filtered() != expected_top(self.scale.search_runs):
            self.problem("filtered search_runs returned other runs than expected")
        ms = timed_median_ms(self._filtered, self.scale.search_calls)
        self.record("search_filtered", ms, f"filtered search {ms:.1f} ms")

    def _unfiltered(self) -> int:
        return len(self.client.search_runs([self.search_experiment_id], max_results=UNFILTERED_MAX))

    def search_unfiltered(self) -> None:
        want = min(UNFILTERED_MAX, self.scale.search_runs)
        if self.real and (got := self._unfiltered()) != want:
            self.problem(f"unfiltered search_runs returned {got} runs, expected {want}")
        ms = timed_median_ms(self._unfiltered, self.scale.unfiltered_calls)
        self.record("search_unfiltered", ms, f"unfiltered search {ms:.1f} ms")

    def history(self) -> None:
        from mlflow.entities import Metric

        points = self.scale.history_points
        run_id = self.history_run_id = self.client.create_run(self.experiment_id, run_name="history").info.run_id
        started = time.perf_counter()
        for first in range(0, points, BATCH_POINTS):
            steps = range(first, min(first + BATCH_POINTS, points))
            self.client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (s + 1), self.now, s) for s in steps])
        progress(f"{self.server.name}: logged {points:,} points in {time.perf_counter() - started:.1f} s")
        got = len(self.client.get_metric_history(run_id, "loss"))  # also the warm-up
        if self.real and got != points:
            self.problem(f"get_metric_history returned {got} points, not {points}")
        ms = timed_median_ms(lambda: self.client.get_metric_history(run_id, "loss"), self.scale.history_calls, warmup=0)
        self.record("history", ms, f"history {ms:.0f} ms")

    def memory(self) -> None:
        rss = self.server.rss_mb()
        self.record("rss", rss, f"RSS {rss:.0f} MB")


# -- the native API (lakeops only) ---------------------------------------------------------------------


def arrow_bytes(table: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def native_workload(lakeops: ClientWorkload) -> None:
    """Native-API steps against lakeops, on the experiments and history the client steps made."""
    import httpx
    import pyarrow as pa

    scale, figures = lakeops.scale, lakeops.figures
    with httpx.Client(base_url=lakeops.server.url, timeout=120) as http:
        r = http.post(f"/api/v1/experiments/{lakeops.experiment_id}/runs", json={"run_name": "native-ingest"})
        r.raise_for_status()
        run_id = r.json()["info"]["run_id"]
        bodies = []
        for b in range(scale.native_batches + 1):
            steps = range(b * BATCH_POINTS, (b + 1) * BATCH_POINTS)
            table = pa.table(
                {
                    "run_id": pa.array([run_id] * BATCH_POINTS, pa.string()),
                    "key": pa.array(["loss"] * BATCH_POINTS, pa.string()),
                    "value": pa.array([1.0 / (s + 1) for s in steps], pa.float64()),
                    "timestamp": pa.array([lakeops.now] * BATCH_POINTS, pa.int64()),
                    "step": pa.array(steps, pa.int64()),
                }
            )
            bodies.append(arrow_bytes(table))

        def ingest(body: bytes) -> None:
            r = http.post("/api/v1/metrics/ingest", content=body, headers={"content-type": ARROW_STREAM})
            r.raise_for_status()

        ingest(bodies[0])  # warm-up
        started = time.perf_counter()
        for body in bodies[1:]:
            ingest(body)
        rate = scale.native_batches * BATCH_POINTS / (time.perf_counter() - started)
        lakeops.record("native_ingest", rate, f"native Arrow ingest {rate:,.0f} points/s")

        def search() -> int:
            body = {"experiment_ids": [lakeops.search_experiment_id], "max_results": UNFILTERED_MAX}
            r = http.post("/api/v1/runs/search", json=body)
            r.raise_for_status()
            return len(r.json()["runs"])

        if (got := search()) != min(UNFILTERED_MAX, scale.search_runs):
            lakeops.problem(f"native search returned {got} runs")
        ms = timed_median_ms(search, scale.native_calls)
        lakeops.record("native_search", ms, f"native search {ms:.1f} ms")

        def history() -> int:
            url = f"/api/v1/runs/{lakeops.history_run_id}/metrics/loss/history"
            r = http.get(url, headers={"accept": ARROW_STREAM})
            r.raise_for_status()
            return pa.ipc.open_stream(r.content).read_all().num_rows

        if (got := history()) != scale.history_points:
            lakeops.problem(f"native Arrow history returned {got} points, not {scale.history_points}")
        ms = timed_median_ms(history, scale.native_calls)
        lakeops.record("native_history", ms, f"native Arrow history {ms:.1f} ms")
    figures.values["rss_end"] = lakeops.server.rss_mb()


# -- report -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str  # "ms", "points/s", "runs/s", "MB"
    target: float | None
    higher_is_better: bool = False
    native: bool = False  # lakeops only


def rows_for(scale: Scale) -> list[Row]:
    s = scale
    history = f"{s.history_points // 1000}k"
    return [
        Row("log_metric", f"log_metric p50 ({s.metric_calls} calls)", "ms", 5),
        Row("log_batch", f"log_batch 1k points ({s.batches} batches)", "points/s", 20_000, True),
        Row("runs", f"create run + log_batch ({s.timed_runs} runs)", "runs/s", 100, True),
        Row("search_filtered", f"search top-{SEARCH_TOP} filtered ({s.search_runs:,} runs)", "ms", 60),
        Row("search_unfiltered", f"search {min(UNFILTERED_MAX, s.search_runs):,} runs unfiltered", "ms", 550),
        Row("history", f"get_metric_history {history} points", "ms", 2_500),
        Row("rss", "server RSS after the workload", "MB", 400),
        Row("native_ingest", f"native Arrow ingest ({s.native_batches} x 1k)", "points/s", 200_000, True, True),
        Row("native_search", f"native search {min(UNFILTERED_MAX, s.search_runs):,} runs", "ms", 50, native=True),
        Row("native_history", f"native Arrow history {history} points", "ms", 50, native=True),
        Row("rss_end", "server RSS after native steps", "MB", None, native=True),
    ]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:,.2f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "runs/s":
        return f"{value:,.1f} runs/s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:,.0f} pts/s"


def ratio_text(row: Row, lakeops: float | None, mlflow: float | None) -> str:
    if lakeops is None or mlflow is None or lakeops <= 0 or mlflow <= 0:
        return "-"
    ratio = lakeops / mlflow
    if row.unit == "MB":
        return f"{ratio:.2f}"
    better = ratio > 1 if row.higher_is_better else ratio < 1
    factor = ratio if ratio >= 1 else 1 / ratio
    return f"{ratio:.3g} ({factor:.1f}x {'faster' if better else 'slower'})"


def verdict(row: Row, value: float | None) -> str:
    if row.target is None or value is None:
        return "-"
    ok = value >= row.target if row.higher_is_better else value <= row.target
    return "PASS" if ok else "MISS"


def source_revision() -> str:
    """The checkout's commit, and whether the server's code (lakeops, api, catalog) has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "lakeops", "api", "catalog").strip()
    return f"{commit} + uncommitted changes" if dirty else commit


def print_report(
    scale: Scale,
    results: dict[str, Figures],
    servers: dict[str, Server],
    loads: list[float],
    revision: str,
    quick: bool,
) -> None:
    from importlib.metadata import version

    header = ("measure", "lakeops", "mlflow", "stub", "lakeops/mlflow", "target", "verdict")
    table = [header]
    for row in rows_for(scale):
        values = {name: results[name].values.get(row.key) if name in results else None for name in SERVERS}
        target = "(info)"
        if row.target is not None:
            target = ("≥ " if row.higher_is_better else "≤ ") + fmt(row.target, row.unit)
        table.append(
            (
                row.label,
                fmt(values["lakeops"], row.unit),
                "n/a" if row.native else fmt(values["mlflow"], row.unit),
                "n/a" if row.native else fmt(values["stub"], row.unit),
                "-" if row.native else ratio_text(row, values["lakeops"], values["mlflow"]),
                target,
                verdict(row, values["lakeops"]),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    mode = "QUICK (scaled down; not comparable with the targets)" if quick else "full"
    print()
    print(
        f"MLflow REST protocol benchmark, {mode}: mlflow client {version('mlflow')}, lakeops {version('lakeops')}"
        f" ({revision}), MLflow server {MLFLOW_VERSION} (SQLite, 1 worker), {os.cpu_count()} CPUs"
    )
    print(f"servers started in: {', '.join(f'{name} {s.startup_s:.1f} s' for name, s in servers.items())}")
    if loads:
        print(
            f"1-min load average after each step: {min(loads):.1f} to {max(loads):.1f}"
            " (the benchmark itself keeps about 1-2 CPUs busy; more means other work on the machine)"
        )
    for i, line in enumerate(table):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        print("  ".join(cells))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        "stub = canned answers, i.e. the mlflow client's own floor; RSS is the server's process tree"
        " (mlflow: CLI parent + uvicorn worker)."
    )
    for figures in results.values():
        for note in figures.notes:
            print(f"WARNING: {note}")


# -- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down counts for a fast check")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of lakeops,mlflow,stub")
    parser.add_argument("--stub-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stub-runs", type=int, default=FULL.search_runs, help=argparse.SUPPRESS)
    parser.add_argument("--stub-history", type=int, default=FULL.history_points, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stub_server:
        serve_stub(args.stub_server, args.stub_runs, args.stub_history)
        return 0

    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    if unknown := set(names) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    scale = QUICK if args.quick else FULL
    # The client: no telemetry, and errors surface at once instead of after retries.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"

    revision = source_revision()  # the code the lakeops server is about to load
    servers: dict[str, Server] = {}
    workloads: dict[str, ClientWorkload] = {}
    loads: list[float] = []  # 1-min load average after each step: other work on the machine shows here
    with tempfile.TemporaryDirectory(prefix="lakeops-bench-mlflow-") as tmp, contextlib.ExitStack() as stack:
        for name in names:
            server = make_server(name, Path(tmp) / name, scale)
            stack.callback(server.stop)
            progress(f"{name}: starting ...")
            server.start()
            servers[name] = server
            pid = server.proc.pid if server.proc else "?"
            progress(f"{name}: up at {server.url} (pid {pid}) in {server.startup_s:.1f} s")
        for name, server in servers.items():
            workloads[name] = ClientWorkload(server, scale)
        steps: list[tuple[ClientWorkload, Callable[[], None]]] = [
            (w, getattr(w, step)) for step in ClientWorkload.STEPS for w in workloads.values()
        ]
        if "lakeops" in workloads:
            steps.append((workloads["lakeops"], functools.partial(native_workload, workloads["lakeops"])))
        for workload, step in steps:
            try:
                step()
            except BaseException:
                progress(f"{workload.server.name}: failed; server log tail:\n{workload.server.log_tail()}")
                raise
            loads.append(os.getloadavg()[0])
        for server in servers.values():
            server.stop()
    results = {name: w.figures for name, w in workloads.items()}
    print_report(scale, results, servers, loads, revision, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
