"""Summary tables: compact rows derived from a large fact table when it is committed.

``metric_latest`` summarises ``metrics``. Each group commit of metric points also appends, to
``metric_latest``, one row per (run, key) the commit touched: the latest point by MLflow's rank
(greatest timestamp, then greatest value, NaN below every number), the smallest and largest value
(NaN ignored) and the number of points. Those rows fold associatively, so the table may hold any
number of partial rows per key: readers reduce them with the same fold (start-up, the
``latest_metrics`` view), and maintenance rewrites the table reduced. Start-up and the SQL views
thus read O(runs x keys) rows, never O(metric points).

The fold is one DuckDB aggregate, the same expression as the ``latest_metrics`` view, so the
summary and a full scan of ``metrics`` agree by construction (tests/catalog/test_summaries.py
checks that they do).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from catalog.tables import METRIC_LATEST, METRICS, TableDef

# The latest point wins by (timestamp, is a number, value): MLflow's order for "latest"; a full tie
# goes to the greater step (lakeops/stores/state.py metric_rank).
_RANK = "(recorded_at, NOT isnan(value), value, step)"

_REDUCE_SQL = f"""
SELECT
    run_id,
    key,
    arg_max(value, {_RANK}) AS value,
    max(recorded_at) AS recorded_at,
    arg_max(step, {_RANK}) AS step,
    min(min_value) AS min_value,
    max(max_value) AS max_value,
    sum(points)::BIGINT AS points
FROM ({{source}})
GROUP BY run_id, key
ORDER BY run_id, key
"""

_POINTS_AS_SUMMARY = """
SELECT run_id, key, value, recorded_at, step,
       CASE WHEN isnan(value) THEN NULL ELSE value END AS min_value,
       CASE WHEN isnan(value) THEN NULL ELSE value END AS max_value,
       1::BIGINT AS points
FROM rows
"""


_DATABASE: duckdb.DuckDBPyConnection | None = None
_DATABASE_LOCK = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A connection to one in-memory database kept for the process.

    Every group commit of metric points summarises them here: opening a fresh database each time
    cost ~20 ms idle and 100+ ms on a busy box (a tenth of a logging server's CPU, by py-spy), where
    a cursor on a kept database costs ~1-2 ms. Each call gets its own cursor, so the committer and
    maintenance never share one connection's registered ``rows``.
    """
    global _DATABASE
    with _DATABASE_LOCK:
        if _DATABASE is None:
            _DATABASE = duckdb.connect(":memory:")
        return _DATABASE.cursor()


# Inputs above this many rows (start-up's reduce of a whole summary table, a backfill) run on a
# database of their own, closed after: DuckDB's allocator keeps what a query used, and the kept
# database held ~200 MiB after reducing 500k summary rows (2 KB per run of a 100k-run lake's RSS).
_PRIVATE_ROWS = 100_000


def _run(sql: str, rows: pa.Table, target: pa.Schema) -> pa.Table:
    con = duckdb.connect(":memory:") if rows.num_rows > _PRIVATE_ROWS else _cursor()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("rows", rows)
        answer = con.execute(sql).to_arrow_table()
    finally:
        con.close()
    return answer.select(target.names).cast(target)


def summarize_metric_points(points: pa.Table) -> pa.Table:
    """``metrics`` rows -> ``metric_latest`` rows, one per (run, key)."""
    return _run(_REDUCE_SQL.format(source=_POINTS_AS_SUMMARY), points, METRIC_LATEST.arrow_schema)


def reduce_metric_latest(rows: pa.Table) -> pa.Table:
    """``metric_latest`` rows -> the same, one per (run, key)."""
    return _run(_REDUCE_SQL.format(source="SELECT * FROM rows"), rows, METRIC_LATEST.arrow_schema)


@dataclass(frozen=True)
class Summary:
    """A table derived from ``source`` at commit time, and how its rows are made and reduced."""

    source: TableDef
    table: TableDef
    summarize: Callable[[pa.Table], pa.Table]
    reduce: Callable[[pa.Table], pa.Table]


SUMMARIES: tuple[Summary, ...] = (
    Summary(source=METRICS, table=METRIC_LATEST, summarize=summarize_metric_points, reduce=reduce_metric_latest),
)
SUMMARY_OF_SOURCE: dict[str, Summary] = {s.source.name: s for s in SUMMARIES}
SUMMARY_BY_NAME: dict[str, Summary] = {s.table.name: s for s in SUMMARIES}
