"""Tracking benchmarks: ingest throughput, write latency, history and search reads.

Run from the repository root::

    .venv/bin/python benchmarks/bench_tracking.py [--backend file|s3|both] [--quick]

Every measurement gets a fresh lake in a temporary directory (``file``: SQLite catalog and a
``file://`` warehouse; ``s3``: SQLite catalog and an ``s3://`` warehouse on a SeaweedFS server
this script starts and stops). Figures are printed next to their targets with PASS or MISS.

1. Batched ingest: 4 writer threads, each on its own run, send 1,000-point batches for about
   10 s; the clock stops after the final ``store.commit()``, so the rate counts committed points.
2. Latency of one acknowledged ``log_metric`` (2,000 calls, one thread): p50 and p99.
3. History of a 100,000-point series: median of 10 warm calls (Arrow and entity paths).
4. ``search_runs`` over 10,000 runs (2,000 with ``--quick``): median of 20 warm calls.
5. Read latency after 10 and after 1,000 commits (300 with ``--quick``) of a growing series (info) and
   of a fixed 1,000-point series in the same table (the target: the commit count alone), with
   ``maintain()`` every 50 commits as the background committer would do (the store's own committer is off
   there). For information, also the read just before the last ``maintain()``, when the
   number of uncompacted data files peaks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import SecretStr
from pyiceberg.expressions import And, EqualTo

from lakeops.settings import LakeopsSettings, LocalStorageConfig, S3StorageConfig, SqlCatalogConfig, WriteConfig
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService

ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = ROOT / "tests"

INGEST_SECONDS = 10.0
INGEST_THREADS = 4
BATCH_POINTS = 1_000
LATENCY_CALLS = 2_000
LATENCY_WARMUP = 20
HISTORY_POINTS = 100_000
HISTORY_CALLS = 10
SEARCH_CALLS = 20
SEARCH_FILTER = "params.p1 = 'b' AND metrics.m0 > 0.5"
SEARCH_ORDER = ["metrics.m1 DESC"]
COMMITS_EARLY = 10
COMMIT_POINTS = 100
COMMIT_READ_CALLS = 20
PROBE_POINTS = 1_000
MAINTAIN_EVERY = WriteConfig().maintain_every_commits  # the default
PARAM_VALUES = ("a", "b", "c", "d")

MLFLOW_REFERENCE = (
    "MLflow 3.17 + SQLite here: ~5,000 points/s in 1,000-point batches, "
    "~180 ms filtered top-100 search over 2,000 runs, ~7.5 s for a 100,000-point history"
)

SettingsFactory = Callable[[str], LakeopsSettings]


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One measured figure and its target."""

    backend: str
    name: str
    value: float
    unit: str
    target: float | None  # None: reported for information, no target
    higher_is_better: bool = False

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "PASS" if ok else "MISS"

    def figure(self) -> str:
        return _fmt(self.value, self.unit)

    def target_text(self) -> str:
        if self.target is None:
            return "(info)"
        return ("≥ " if self.higher_is_better else "≤ ") + _fmt(self.target, self.unit)


def _fmt(value: float, unit: str) -> str:
    if unit == "points/s":
        return f"{value:,.0f} {unit}"
    if unit == "ms":
        return f"{value:,.2f} ms" if value < 100 else f"{value:,.0f} ms"
    return f"{value:.2f}{unit}"


def progress(message: str) -> None:
    """A progress line on stderr (the results table goes to stdout)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median_ms(call: Callable[[], object], times: int, *, warmup: int = 1) -> float:
    """Median wall time of ``times`` calls, after ``warmup`` untimed ones, in milliseconds."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, round(pct / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


# -- backends -----------------------------------------------------------------------------------


def _write_config() -> WriteConfig:
    return WriteConfig(commit_interval_s=1.0)


@contextlib.contextmanager
def file_backend(root: Path) -> Iterator[SettingsFactory]:
    """Fresh lakes on the local disk: SQLite catalog, ``file://`` warehouse."""

    def make(name: str) -> LakeopsSettings:
        return LakeopsSettings(
            home=root / name, storage=LocalStorageConfig(), catalog=SqlCatalogConfig(), write=_write_config()
        )

    yield make


@contextlib.contextmanager
def s3_backend(root: Path) -> Iterator[SettingsFactory]:
    """Fresh lakes on a SeaweedFS S3 server started here: SQLite catalog, ``s3://`` warehouse."""
    sys.path.insert(0, str(TESTS_DIR))
    from s3server import SeaweedServer

    server = SeaweedServer(root / "seaweed")
    server.start()
    progress(f"SeaweedFS S3 server up at {server.endpoint} in {server.startup_seconds or 0:.1f} s")
    try:

        def make(name: str) -> LakeopsSettings:
            storage = S3StorageConfig(
                endpoint=server.endpoint,
                bucket=server.bucket,
                prefix=f"bench-{name}-{uuid.uuid4().hex[:8]}",
                access_key_id=server.access_key,
                secret_access_key=SecretStr(server.secret_key),
                region=server.region,
            )
            return LakeopsSettings(home=root / name, storage=storage, catalog=SqlCatalogConfig(), write=_write_config())

        yield make
    finally:
        server.stop()
        progress("SeaweedFS S3 server stopped")


@contextlib.contextmanager
def lake(
    make: SettingsFactory, name: str, *, start_committer: bool = True
) -> Iterator[tuple[IcebergStore, TrackingService]]:
    """An open store and tracking service on a fresh lake."""
    store = open_store(make(name), start_committer=start_committer)
    try:
        yield store, TrackingService(store)
    finally:
        store.close()


# -- 1. batched ingest ----------------------------------------------------------------------------


def _ingest(
    make: SettingsFactory, name: str, send: Callable[[TrackingService, str, int], int]
) -> tuple[float, int, float, float]:
    """Run ``send`` from 4 threads (one run each) for ~10 s, then commit.

    ``send(tracking, run_id, first_step)`` logs one batch and returns its point count.
    Returns (committed points/s, points, wall seconds, seconds of the final commit).
    """
    with lake(make, name) as (store, tracking):
        exp = tracking.create_experiment(f"ingest-{name}")
        run_ids = [tracking.create_run(exp).info.run_id for _ in range(INGEST_THREADS)]
        counts = [0] * INGEST_THREADS
        errors: list[BaseException] = []
        start_gate = threading.Barrier(INGEST_THREADS + 1)
        stop = threading.Event()

        def worker(index: int) -> None:
            try:
                start_gate.wait()
                step = 0
                while not stop.is_set():
                    counts[index] += send(tracking, run_ids[index], step)
                    step += BATCH_POINTS
            except BaseException as exc:  # reported after the join
                errors.append(exc)
                stop.set()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(INGEST_THREADS)]
        for thread in threads:
            thread.start()
        start_gate.wait()
        started = time.perf_counter()
        stop.wait(INGEST_SECONDS)
        stop.set()
        for thread in threads:
            thread.join()
        commit_started = time.perf_counter()
        store.commit()
        ended = time.perf_counter()
        if errors:
            raise errors[0]
        points = sum(counts)
        committed = _committed_rows(store, "metrics")
        if committed != points:
            raise AssertionError(f"{points} points acknowledged but {committed} committed")
        wall = ended - started
        return points / wall, points, wall, ended - commit_started


def _committed_rows(store: IcebergStore, table: str) -> int:
    snapshot = store.table(table).metadata.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.get("total-records") or 0)


def _send_log_batch(tracking: TrackingService, run_id: str, first_step: int) -> int:
    now = int(time.time() * 1000)
    metrics = [("loss", 1.0 / (first_step + i + 1), now, first_step + i) for i in range(BATCH_POINTS)]
    tracking.log_batch(run_id, metrics=metrics)
    return BATCH_POINTS


def _send_arrow(tracking: TrackingService, run_id: str, first_step: int) -> int:
    now = int(time.time() * 1000)
    steps = pa.array(range(first_step, first_step + BATCH_POINTS), pa.int64())
    table = pa.table(
        {
            "run_id": pa.array([run_id] * BATCH_POINTS, pa.string()),
            "key": pa.array(["loss"] * BATCH_POINTS, pa.string()),
            "value": pa.array([1.0 / (s + 1) for s in range(first_step, first_step + BATCH_POINTS)], pa.float64()),
            "timestamp": pa.array([now] * BATCH_POINTS, pa.int64()),
            "step": steps,
        }
    )
    return tracking.log_metrics_table(table)


def bench_ingest(backend: str, make: SettingsFactory) -> list[Result]:
    results: list[Result] = []
    for label, name, send in (
        ("1a ingest, log_batch (4 thr x 1k pts)", "ingest-batch", _send_log_batch),
        ("1b ingest, log_metrics_table (4 thr x 1k)", "ingest-arrow", _send_arrow),
    ):
        progress(f"{label}: {INGEST_SECONDS:.0f} s ...")
        rate, points, wall, commit_s = _ingest(make, name, send)
        progress(f"  {points:,} points in {wall:.2f} s (final commit {commit_s:.2f} s) -> {rate:,.0f} points/s")
        results.append(Result(backend, label, rate, "points/s", 200_000, higher_is_better=True))
    return results


# -- 2. single log_metric latency ---------------------------------------------------------------


def bench_latency(backend: str, make: SettingsFactory) -> list[Result]:
    progress(f"2  log_metric latency: {LATENCY_CALLS:,} calls ...")
    with lake(make, "latency") as (_store, tracking):
        run_id = tracking.create_run(tracking.create_experiment("latency")).info.run_id
        for step in range(LATENCY_WARMUP):
            tracking.log_metric(run_id, "warmup", 0.5, step=step)
        samples: list[float] = []
        for step in range(LATENCY_CALLS):
            started = time.perf_counter()
            tracking.log_metric(run_id, "loss", random.random(), step=step)
            samples.append((time.perf_counter() - started) * 1000)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    progress(f"  p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(samples):.2f} ms")
    return [
        Result(backend, "2  log_metric latency p50", p50, "ms", 2.0),
        Result(backend, "2  log_metric latency p99", p99, "ms", 20.0),
    ]


# -- 3. metric history --------------------------------------------------------------------------


def bench_history(backend: str, make: SettingsFactory) -> list[Result]:
    progress(f"3  history of a {HISTORY_POINTS:,}-point series: logging ...")
    with lake(make, "history") as (store, tracking):
        run_id = tracking.create_run(tracking.create_experiment("history")).info.run_id
        now = int(time.time() * 1000)
        for first in range(0, HISTORY_POINTS, BATCH_POINTS):
            tracking.log_batch(
                run_id, metrics=[("loss", 1.0 / (s + 1), now, s) for s in range(first, first + BATCH_POINTS)]
            )
        store.commit()
        rows = tracking.metric_history_table(run_id, "loss").num_rows
        if rows != HISTORY_POINTS:
            raise AssertionError(f"history has {rows} points, expected {HISTORY_POINTS}")
        files = sum(1 for _ in store.table("metrics").scan().plan_files())
        progress(f"  committed ({files} data files); timing reads ...")
        arrow_ms = median_ms(lambda: tracking.metric_history_table(run_id, "loss"), HISTORY_CALLS)
        entity_ms = median_ms(lambda: tracking.get_metric_history(run_id, "loss"), HISTORY_CALLS)
    progress(f"  Arrow {arrow_ms:.1f} ms, entities {entity_ms:.1f} ms")
    return [
        Result(backend, "3  history 100k pts, metric_history_table", arrow_ms, "ms", 100.0),
        Result(backend, "3  history 100k pts, get_metric_history", entity_ms, "ms", None),
    ]


# -- 4. search ----------------------------------------------------------------------------------


def _log_run(tracking: TrackingService, exp: str, rng: random.Random, now: int) -> str:
    run_id = tracking.create_run(exp).info.run_id
    tracking.log_batch(
        run_id,
        params={f"p{j}": rng.choice(PARAM_VALUES) for j in range(10)},
        metrics=[(f"m{k}", rng.random(), now, 0) for k in range(5)],
    )
    return run_id


def _search(tracking: TrackingService, exp: str) -> int:
    page = tracking.search_runs([exp], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=100)
    return len(page.runs)


def bench_search(backend: str, make: SettingsFactory, runs: int) -> list[Result]:
    progress(f"4  search over {runs:,} runs: creating runs ...")
    rng = random.Random(42)
    with lake(make, "search") as (store, tracking):
        exp = tracking.create_experiment("search")
        now = int(time.time() * 1000)
        started = time.perf_counter()
        for _ in range(runs):
            _log_run(tracking, exp, rng, now)
        store.commit()
        progress(f"  created and committed in {time.perf_counter() - started:.1f} s; timing search ...")
        found = _search(tracking, exp)
        if found != 100:
            raise AssertionError(f"search returned {found} runs, expected a full page of 100")
        search_ms = median_ms(lambda: _search(tracking, exp), SEARCH_CALLS)
    progress(f"  search {search_ms:.2f} ms")
    return [Result(backend, f"4  search_runs top-100 of {runs:,} runs", search_ms, "ms", 30.0)]


# -- 5. read latency vs commit count -------------------------------------------------------------


def bench_commit_count(backend: str, make: SettingsFactory, commits: int) -> list[Result]:
    # Extra (info only): the last commit before the final maintain(), when uncompacted files peak.
    peak = (commits // MAINTAIN_EVERY) * MAINTAIN_EVERY - 1 if MAINTAIN_EVERY else 0
    checkpoints = sorted({COMMITS_EARLY, commits, *([peak] if COMMITS_EARLY < peak < commits else [])})
    progress(f"5  reads after {', '.join(f'{c:,}' for c in checkpoints)} commits ...")
    # No background committer: every commit and maintenance here is ours, as described in the module doc.
    with lake(make, "commits", start_committer=False) as (store, tracking):
        exp = tracking.create_experiment("commits")
        run_id = tracking.create_run(exp).info.run_id
        now = int(time.time() * 1000)
        tracking.log_batch(run_id, params={"p1": "b"}, metrics=[("m0", 0.9, now, 0), ("m1", 0.1, now, 0)])
        # A fixed-size series in the same table: its reads show what the commit count alone costs,
        # while the growing series above also reads 100x more points at the end than at the start.
        probe_id = tracking.create_run(exp).info.run_id
        tracking.log_batch(probe_id, metrics=[("probe", 0.5, now, s) for s in range(PROBE_POINTS)])
        store.commit()
        probe_filter = And(EqualTo("run_id", probe_id), EqualTo("key", "probe"))

        def probe_uncached() -> int:
            rows = store.scan_with_pending(
                "metrics", probe_filter, lambda t: pc.and_(pc.equal(t["run_id"], probe_id), pc.equal(t["key"], "probe"))
            )
            if rows.num_rows != PROBE_POINTS:
                raise AssertionError("probe series lost points")
            return rows.num_rows

        probes: dict[int, tuple[float, float]] = {}  # commits -> (warm ms, uncached ms)
        readings: dict[int, tuple[float, float, int]] = {}  # commits -> (history ms, search ms, data files)
        loop_started = time.perf_counter()
        maintain_s = 0.0
        window: list[float] = []  # commit() seconds since the previous checkpoint
        for done in range(1, commits + 1):
            first = (done - 1) * COMMIT_POINTS
            tracking.log_batch(run_id, metrics=[("loss", 0.5, now, s) for s in range(first, first + COMMIT_POINTS)])
            t0 = time.perf_counter()
            store.commit()
            window.append(time.perf_counter() - t0)
            if MAINTAIN_EVERY and done % MAINTAIN_EVERY == 0:
                t0 = time.perf_counter()
                store.maintain()
                maintain_s += time.perf_counter() - t0
            if done in checkpoints:
                if tracking.metric_history_table(run_id, "loss").num_rows != done * COMMIT_POINTS:
                    raise AssertionError("history lost points")
                history_ms = median_ms(lambda: tracking.metric_history_table(run_id, "loss"), COMMIT_READ_CALLS)
                search_ms = median_ms(lambda: _search_one(tracking, exp), COMMIT_READ_CALLS)
                probes[done] = (
                    median_ms(lambda: tracking.metric_history_table(probe_id, "probe"), COMMIT_READ_CALLS),
                    median_ms(probe_uncached, COMMIT_READ_CALLS),
                )
                files = sum(1 for _ in store.table("metrics").scan().plan_files())
                readings[done] = (history_ms, search_ms, files)
                snapshots = len(store.table("metrics").metadata.snapshots)
                elapsed = time.perf_counter() - loop_started
                progress(
                    f"  after {done:,} commits ({elapsed:.0f} s; commit() {statistics.mean(window) * 1000:.0f} ms"
                    f" on average since last line, maintain {maintain_s:.1f} s in all; {files} data files,"
                    f" {snapshots} snapshots): history {history_ms:.2f} ms, search {search_ms:.2f} ms,"
                    f" fixed {PROBE_POINTS:,}-point history {probes[done][0]:.2f} ms"
                    f" (uncached {probes[done][1]:.2f} ms)"
                )
                window.clear()
    (h_early, s_early, f_early), (h_late, s_late, f_late) = readings[COMMITS_EARLY], readings[commits]
    grows = commits // COMMITS_EARLY
    results = [
        Result(backend, f"5  history after {COMMITS_EARLY} commits ({f_early} files)", h_early, "ms", None),
        Result(backend, f"5  history after {commits:,} commits ({f_late} files)", h_late, "ms", None),
        Result(backend, f"5  history ratio {commits:,}/{COMMITS_EARLY} (grows {grows}x)", h_late / h_early, "x", None),
    ]
    (p_early, u_early), (p_late, u_late) = probes[COMMITS_EARLY], probes[commits]
    results += [
        Result(backend, f"5  fixed-series history after {COMMITS_EARLY} commits", p_early, "ms", None),
        Result(backend, f"5  fixed-series history after {commits:,} commits", p_late, "ms", None),
        Result(backend, f"5  fixed-series history ratio {commits:,}/{COMMITS_EARLY}", p_late / p_early, "x", 1.5),
        Result(backend, f"5  uncached fixed-series ratio {commits:,}/{COMMITS_EARLY}", u_late / u_early, "x", 1.5),
    ]
    if peak in readings:
        h_peak, _s_peak, f_peak = readings[peak]
        results.insert(
            1, Result(backend, f"5  history after {peak:,} commits ({f_peak} files, pre-maintain)", h_peak, "ms", None)
        )
    return [
        *results,
        Result(backend, f"5  search after {COMMITS_EARLY} commits", s_early, "ms", None),
        Result(backend, f"5  search after {commits:,} commits", s_late, "ms", None),
        Result(backend, f"5  search ratio {commits:,}/{COMMITS_EARLY}", s_late / s_early, "x", 1.5),
    ]


def _search_one(tracking: TrackingService, exp: str) -> int:
    page = tracking.search_runs([exp], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=100)
    if len(page.runs) != 1:
        raise AssertionError(f"search returned {len(page.runs)} runs, expected 1")
    return 1


# -- driver -------------------------------------------------------------------------------------


SECTIONS = ("ingest", "latency", "history", "search", "commits")


def run_backend(backend: str, root: Path, *, quick: bool, only: tuple[str, ...] = SECTIONS) -> list[Result]:
    opener: Callable[[Path], contextlib.AbstractContextManager[SettingsFactory]] = (
        file_backend if backend == "file" else s3_backend
    )
    print(f"\n=== backend: {backend} ===", file=sys.stderr, flush=True)
    results: list[Result] = []
    with opener(root) as make:
        if "ingest" in only:
            results += bench_ingest(backend, make)
        if "latency" in only:
            results += bench_latency(backend, make)
        if "history" in only:
            results += bench_history(backend, make)
        if "search" in only:
            results += bench_search(backend, make, 2_000 if quick else 10_000)
        if "commits" in only:
            results += bench_commit_count(backend, make, 300 if quick else 1_000)
    return results


def print_table(results: list[Result]) -> None:
    headers = ("backend", "benchmark", "figure", "target", "verdict")
    rows = [(r.backend, r.name, r.figure(), r.target_text(), r.verdict) for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    aligns = ("<", "<", ">", ">", "<")

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True)).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    previous = None
    for result, row in zip(results, rows, strict=True):
        if previous is not None and result.backend != previous:
            print()
        previous = result.backend
        print(line(row))


def _revision() -> str:
    """The checked-out commit, marked ``+dirty`` when the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=("file", "s3", "both"), default="file")
    parser.add_argument("--quick", action="store_true", help="2,000 runs for search, 300 commits for the commit test")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)"
    )
    args = parser.parse_args(argv)
    only = tuple(args.only.split(","))
    if unknown := set(only) - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    backends = ["file", "s3"] if args.backend == "both" else [args.backend]

    print(
        f"lakeops tracking benchmark — revision {_revision()}; machine: {os.cpu_count()} CPUs"
        f" (nproc {len(os.sched_getaffinity(0))}), Python {sys.version.split()[0]}"
    )
    print(
        f"backends: {', '.join(backends)}{' (quick)' if args.quick else ''}; "
        f"WriteConfig: commit_interval_s=1.0, maintain_every_commits={MAINTAIN_EVERY}, fsync=True"
    )
    print(f"load average at start: {_load()} (other processes on the machine skew every figure)")
    sys.stdout.flush()
    results: list[Result] = []
    started = time.perf_counter()
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"lakeops-bench-{backend}-") as tmp:
            results += run_backend(backend, Path(tmp), quick=args.quick, only=only)
    print()
    print_table(results)
    misses = sum(r.verdict == "MISS" for r in results)
    print(
        f"\n{len(results) - misses - sum(r.target is None for r in results)} PASS, {misses} MISS "
        f"(total time {time.perf_counter() - started:.0f} s; load average at end: {_load()})"
    )
    if any(r.name.startswith("5  search after") and r.value < 1.0 for r in results):
        print("Note: search_runs is answered from in-memory state; a ratio of sub-millisecond medians is mostly noise.")
    print(f"For scale — {MLFLOW_REFERENCE}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
