"""SQL benchmark: the lakeops views over Iceberg vs DuckDB over one local Parquet file.

Run from the repository root::

    .venv/bin/python benchmarks/bench_sql.py [--quick] [--repeats N]

Data: 10,000 runs x 5 metric keys x 200 steps = 10,000,000 metric points in one experiment,
plus 3 params per run (``--quick``: 1,000 runs, 1,000,000 points). Experiment, runs and params
go through the store (write-ahead log, group commit); the metric points are appended to the
Iceberg ``metrics`` table directly with pyiceberg in chunks of 1,000 runs (partitioned and
sorted as lakeops writes them), and the very same rows are written to one local Parquet file.

Measured side by side, warm, median of ``--repeats`` runs each, same process, same DuckDB version:

1. ``GROUP BY run_id, key`` (count, avg, max) over every point:
   ``SqlEngine.query`` on the ``metrics`` view vs DuckDB on the Parquet file.
2. Top-20 leaderboard from the wide form: ``runs_wide('bench')`` ordered by a metric, vs the
   same pivot of latest values computed by DuckDB on the Parquet file.

Target: each within 3x of the Parquet baseline. ``SqlEngine.query`` figures include everything
a user pays: the sandbox check, loading the tables' current metadata from the catalog,
re-pointing the views, and the Arrow answer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.connection import open_catalog
from catalog.tables import METRICS, PARAMS, RUN_CHANGES
from lakeops.settings import LakeopsSettings, LocalStorageConfig, SqlCatalogConfig, SqlConfig, WriteConfig
from lakeops.sql import SqlEngine
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

KEYS = ("m0", "m1", "m2", "m3", "m4")
STEPS = 200
CHUNK_RUNS = 1_000
TARGET_RATIO = 3.0


def _metric_chunk(run_ids: list[str], rng: np.random.Generator) -> pa.Table:
    """Points of ``run_ids`` for every key and step, sorted as lakeops sorts them."""
    n_runs = len(run_ids)
    per_run = len(KEYS) * STEPS
    run_col = np.repeat(np.array(run_ids, dtype=object), per_run)
    key_col = np.tile(np.repeat(np.array(KEYS, dtype=object), STEPS), n_runs)
    step_col = np.tile(np.arange(STEPS, dtype=np.int64), n_runs * len(KEYS))
    base = 1_700_000_000_000_000
    stamps = base + step_col * 1_000_000
    values = rng.random(n_runs * per_run)
    return pa.table(
        {
            "run_id": pa.array(run_col, pa.string()),
            "key": pa.array(key_col, pa.string()),
            "value": pa.array(values, pa.float64()),
            "recorded_at": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "step": pa.array(step_col, pa.int64()),
        },
        schema=METRICS.arrow_schema,
    )


def build_lake(home: Path, n_runs: int) -> tuple[LakeopsSettings, Path, int]:
    """The lake and the Parquet file with the same metric rows; returns (settings, parquet, points)."""
    settings = LakeopsSettings(
        home=home,
        storage=LocalStorageConfig(),
        catalog=SqlCatalogConfig(),
        write=WriteConfig(maintain_every_commits=0),
        sql=SqlConfig(max_rows=1_000_000, timeout_s=600),
    )
    store = open_store(settings, start_committer=False)
    tracking = TrackingService(store)
    exp = tracking.create_experiment("bench")
    run_ids = [f"{i:032x}" for i in range(1, n_runs + 1)]
    now_us = int(time.time() * 1_000_000)

    def runs_and_params(_state: object) -> dict[str, pa.RecordBatch]:
        change = {
            "changed_at": [now_us] * n_runs,
            "actor": ["bench"] * n_runs,
            "operation": ["create"] * n_runs,
            "writer_id": [store.writer_id] * n_runs,
            "wal_seq": [0] * n_runs,
        }
        runs = pa.RecordBatch.from_pydict(
            {
                "run_id": run_ids,
                "experiment_id": [exp] * n_runs,
                "run_name": [f"run-{i}" for i in range(n_runs)],
                "user_id": ["bench"] * n_runs,
                "status": ["FINISHED"] * n_runs,
                "started_at": [now_us + i for i in range(n_runs)],
                "ended_at": [now_us + i + 1 for i in range(n_runs)],
                "lifecycle_stage": ["active"] * n_runs,
                "artifact_uri": [None] * n_runs,
                "parent_run_id": [None] * n_runs,
                **change,
            },
            schema=RUN_CHANGES.arrow_schema,
        )
        params = pa.RecordBatch.from_pydict(
            {
                "run_id": [r for r in run_ids for _ in range(3)],
                "key": ["lr", "depth", "optimizer"] * n_runs,
                "value": [v for i in range(n_runs) for v in (str(0.001 * (i % 10 + 1)), str(i % 8), "adam")],
                "logged_at": [now_us] * (3 * n_runs),
            },
            schema=PARAMS.arrow_schema,
        )
        return {RUN_CHANGES.name: runs, PARAMS.name: params}

    store.write(runs_and_params)
    store.close()

    catalog = open_catalog("lakeops", settings.catalog_properties())
    metrics = catalog.load_table((settings.namespace, METRICS.name))
    parquet = home / "metrics.parquet"
    rng = np.random.default_rng(42)
    points = 0
    with pq.ParquetWriter(parquet, METRICS.arrow_schema, compression="zstd") as writer:
        for start in range(0, n_runs, CHUNK_RUNS):
            chunk = _metric_chunk(run_ids[start : start + CHUNK_RUNS], rng)
            metrics.append(chunk)
            writer.write_table(chunk, row_group_size=131_072)
            points += chunk.num_rows
            print(f"  wrote {points:,} points", file=sys.stderr, flush=True)
    return settings, parquet, points


def _median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    fn()  # warm
    times = []
    result: object = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


GROUP_BY = (
    "SELECT run_id, key, count(*) AS points, avg(value) AS mean, max(value) AS best FROM {src} GROUP BY run_id, key"
)
LEADERBOARD_LAKE = (
    'SELECT run_id, run_name, "params.lr", "metrics.m0" FROM runs_wide(\'bench\') ORDER BY "metrics.m0" DESC LIMIT 20'
)
LEADERBOARD_PARQUET = """
WITH latest AS (
    SELECT run_id, key, arg_max(value, (recorded_at, NOT isnan(value), value, step)) AS value
    FROM read_parquet('{path}') GROUP BY run_id, key
)
SELECT run_id, {columns}
FROM latest GROUP BY run_id ORDER BY "metrics.m0" DESC LIMIT 20
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 runs and 1,000,000 points")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n_runs = 1_000 if args.quick else 10_000
    with tempfile.TemporaryDirectory(prefix="lakeops-bench-sql-") as tmp:
        started = time.perf_counter()
        settings, parquet, points = build_lake(Path(tmp), n_runs)
        print(f"data: {n_runs:,} runs, {points:,} points, written in {time.perf_counter() - started:.1f}s", flush=True)

        engine = SqlEngine(settings)
        local = duckdb.connect()
        columns = ", ".join(f"first(value) FILTER (WHERE key = '{k}') AS \"metrics.{k}\"" for k in KEYS)
        try:
            lake_group, lake_rows = _median_seconds(
                lambda: engine.query(GROUP_BY.format(src="metrics")).num_rows, args.repeats
            )
            local_group, local_rows = _median_seconds(
                lambda: local.execute(GROUP_BY.format(src=f"read_parquet('{parquet}')")).to_arrow_table().num_rows,
                args.repeats,
            )
            assert lake_rows == local_rows == n_runs * len(KEYS), (lake_rows, local_rows)
            lake_top, lake_board = _median_seconds(lambda: engine.query(LEADERBOARD_LAKE), args.repeats)
            local_top, local_board = _median_seconds(
                lambda: local.execute(LEADERBOARD_PARQUET.format(path=parquet, columns=columns)).to_arrow_table(),
                args.repeats,
            )
            assert isinstance(lake_board, pa.Table)
            assert isinstance(local_board, pa.Table)
            assert lake_board.column("run_id").to_pylist() == local_board.column("run_id").to_pylist()
        finally:
            engine.close()
            local.close()

    print(f"{'query':<34} {'lakeops views':>14} {'local Parquet':>14} {'ratio':>7} {'target':>7}")
    failed = False
    for name, lake_s, local_s in (
        ("GROUP BY run_id, key (all points)", lake_group, local_group),
        ("top-20 leaderboard (wide form)", lake_top, local_top),
    ):
        ratio = lake_s / local_s
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        failed |= verdict == "MISS"
        print(f"{name:<34} {lake_s * 1000:>11.0f} ms {local_s * 1000:>11.0f} ms {ratio:>6.2f}x {'<=3x':>7} {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
