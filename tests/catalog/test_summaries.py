"""The metric summary folds to exactly what a full scan of the points gives, however it is split."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest

from catalog.summaries import reduce_metric_latest, summarize_metric_points
from catalog.tables import METRICS

# The latest_metrics view as it read before the summary existed: a scan of every point.
FULL_SCAN = """
SELECT run_id, key,
       arg_max(value, (recorded_at, NOT isnan(value), value, step)) AS value,
       arg_max(step, (recorded_at, NOT isnan(value), value, step)) AS step,
       max(recorded_at) AS recorded_at,
       min(value) FILTER (WHERE NOT isnan(value)) AS min_value,
       max(value) FILTER (WHERE NOT isnan(value)) AS max_value,
       count(*) AS points
FROM points GROUP BY run_id, key ORDER BY run_id, key
"""


def _points(rng: random.Random, n: int) -> pa.Table:
    values = [0.5, -1.0, 2.0, math.nan, math.inf, -math.inf, 3.25]
    rows = {
        "run_id": [rng.choice(["r1", "r2", "r3"]) for _ in range(n)],
        "key": [rng.choice(["loss", "acc"]) for _ in range(n)],
        "value": [rng.choice(values) if rng.random() < 0.5 else rng.uniform(-5, 5) for _ in range(n)],
        # few distinct timestamps, so ties on time are decided by value as MLflow does
        "recorded_at": [datetime.fromtimestamp(rng.randint(0, 5), tz=UTC) for _ in range(n)],
        "step": [rng.randint(0, 100) for _ in range(n)],
    }
    schema = METRICS.arrow_schema
    full = {f.name: rows.get(f.name, [None] * n) for f in schema}
    full["wal_seq"] = [0] * n
    full["writer_id"] = ["w"] * n
    return pa.table({k: v for k, v in full.items() if k in schema.names}).cast(schema, safe=False)


def _full_scan(points: pa.Table) -> list[dict[str, object]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("points", points)
    return _normalised(con.execute(FULL_SCAN).to_arrow_table())


def _normalised(rows: pa.Table) -> list[dict[str, object]]:
    out = []
    for row in rows.select(
        ["run_id", "key", "value", "step", "recorded_at", "min_value", "max_value", "points"]
    ).to_pylist():
        row["value"] = "nan" if isinstance(row["value"], float) and math.isnan(row["value"]) else row["value"]
        out.append(row)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_summaries_of_any_split_reduce_to_the_full_scan(seed: int) -> None:
    rng = random.Random(seed)
    points = _points(rng, rng.randint(1, 400))
    cuts = sorted(rng.sample(range(1, points.num_rows + 1), k=min(points.num_rows, rng.randint(1, 6))))
    parts, start = [], 0
    for cut in cuts:
        if cut > start:
            parts.append(summarize_metric_points(points.slice(start, cut - start)))
            start = cut
    if start < points.num_rows:
        parts.append(summarize_metric_points(points.slice(start)))
    rng.shuffle(parts)
    # the partial rows may also be reduced in several rounds (compaction), in any grouping
    middle = len(parts) // 2
    staged = [reduce_metric_latest(pa.concat_tables(parts[:middle]))] if middle else []
    reduced = reduce_metric_latest(pa.concat_tables(staged + parts[middle:]))
    assert _normalised(reduced) == _full_scan(points)


def test_a_metric_of_only_nans_keeps_nan_latest_and_null_bounds() -> None:
    points = _points(random.Random(0), 1)
    points = points.set_column(points.schema.get_field_index("value"), "value", pa.array([math.nan]))
    (row,) = reduce_metric_latest(summarize_metric_points(points)).to_pylist()
    assert math.isnan(row["value"]) and row["min_value"] is None and row["max_value"] is None and row["points"] == 1
