"""Run search at 1M runs in one process: the serving state's memory per run and search latency.

Run from the repository root::

    .venv/bin/python benchmarks/bench_search.py [--runs 1000000]

``bench_scale.py`` measures a served lake end to end, but building a lake of 1M runs and 100M
points takes hours here. Search and the state's memory do not depend on the points: the state
holds runs, params, tags and the latest value of each metric. So this script opens a fresh
(empty) store and folds the same change rows ``bench_scale.py`` writes (10 params, 5 metrics with
their latest values, 3 tags and the run name per run) straight into its state as start-up folds
the tables it scans (``TrackingState.apply`` inside ``TrackingState.starting``: the runs kept as
columns, lakeops/stores/run_base.py), then writes to 1% of the runs (a tag each: those runs become
objects, as runs written to after start-up do); then it times
``TrackingService.search_runs``, the call the HTTP routes make (server-side time, no HTTP). Figures
beside issue 9's targets for 1M runs; it is not a test.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import METRIC_KEYS, SEARCH_FILTER, SEARCH_ORDER, _run_rows

from catalog.tables import METRIC_LATEST, PARAMS, RUN_CHANGES, TAG_CHANGES
from lakeops.settings import LakeopsSettings, LocalStorageConfig, SqlCatalogConfig
from lakeops.stores import open_store
from lakeops.stores.iceberg import hand_back_memory
from lakeops.tracking import TrackingService

CHUNK = 10_000


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def latest_rows(run_ids: list[str], rng: np.random.Generator) -> pa.Table:
    """The latest point of each metric of each run, as the ``metric_latest`` summary holds it."""
    n, k = len(run_ids), len(METRIC_KEYS)
    now_us = int(time.time() * 1_000_000)
    return pa.table(
        {
            "run_id": pa.array(np.repeat(np.array(run_ids, dtype=object), k)),
            "key": pa.array(METRIC_KEYS * n),
            "value": rng.random(n * k),
            "step": np.full(n * k, 19, dtype=np.int64),
            "recorded_at": pa.array(np.full(n * k, now_us), pa.timestamp("us", tz="UTC")),
        }
    )


def timed(call, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(first call, median of the next ``repeat``) in ms."""
    started = time.perf_counter()
    call()
    first = (time.perf_counter() - started) * 1e3
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(9)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="lakeops-bench-search-") as tmp:
        settings = LakeopsSettings(home=Path(tmp), storage=LocalStorageConfig(), catalog=SqlCatalogConfig())
        store = open_store(settings, start_committer=False)
        try:
            tracking = TrackingService(store, actor="bench")
            experiment_id = tracking.create_experiment("search")
            gc.collect()
            before = rss_mb()
            tables: dict[str, list[pa.Table]] = {}
            run_ids: list[str] = []
            for start in range(0, args.runs, CHUNK):
                chunk = [uuid.uuid4().hex for _ in range(min(CHUNK, args.runs - start))]
                run_ids += chunk
                for name, batch in _run_rows(store.writer_id, experiment_id, chunk, rng).items():
                    tables.setdefault(name, []).append(
                        pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
                    )
                tables.setdefault(METRIC_LATEST.name, []).append(latest_rows(chunk, rng))
            whole = {name: pa.concat_tables(parts) for name, parts in tables.items()}
            del tables
            print(f"  {args.runs:,} runs of change rows made", file=sys.stderr)
            started, cpu = time.perf_counter(), time.process_time()
            with store.state.starting():  # in start-up's table order
                for name in (RUN_CHANGES.name, TAG_CHANGES.name, PARAMS.name, METRIC_LATEST.name):
                    store.state.apply(name, whole[name])
            fold_s, fold_cpu = time.perf_counter() - started, time.process_time() - cpu
            del whole
            for run_id in run_ids[:: max(1, len(run_ids) // (args.runs // 100 or 1))]:
                tracking.set_tag(run_id, "touched", "yes")
            del run_ids
            gc.collect()
            hand_back_memory()
            state_mb = rss_mb() - before
            rows.append(
                ("runs folded into the state", f"{args.runs:,} in {fold_s:.1f} s ({fold_cpu:.1f} CPU-s)", "(info)")
            )
            per_run = state_mb * 2**20 / args.runs
            rows.append(("state memory", f"{state_mb:,.0f} MB ({per_run:,.0f} B per run)", "(info)"))
            rows.append(("process RSS with the state", f"{rss_mb():,.0f} MB", "<= 1,536 MB at 1M runs"))

            def top100() -> None:
                page = tracking.search_runs(
                    [experiment_id], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=100
                )
                assert len(page.runs) == 100

            def page1000() -> None:
                assert len(tracking.search_runs([experiment_id], max_results=1000).runs) == 1000

            first, median = timed(top100, args.repeat)
            rows.append(("filtered top-100 search (first: builds columns)", f"{first:.0f} ms", "(info)"))
            rows.append(("filtered top-100 search, median", f"{median:.1f} ms", "<= 50 ms"))
            first, median = timed(page1000, args.repeat)
            rows.append(("unfiltered 1,000-run page, median", f"{median:.1f} ms", "<= 100 ms"))
            token = tracking.search_runs([experiment_id], order_by=SEARCH_ORDER, max_results=1000).next_page_token
            _first, median = timed(
                lambda: tracking.search_runs(
                    [experiment_id], order_by=SEARCH_ORDER, max_results=1000, page_token=token
                ),
                args.repeat,
            )
            rows.append(("second 1,000-run page by token, median", f"{median:.1f} ms", "(info)"))
            rows.append(("process RSS after the searches", f"{rss_mb():,.0f} MB", "<= 1,536 MB at 1M runs"))
        finally:
            store.close()
    width = max(len(r[0]) for r in rows)
    print(f"run search on the serving state, {args.runs:,} runs x (10 params, 5 metrics, 4 tags)")
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:>28}  {target}")


if __name__ == "__main__":
    main()
