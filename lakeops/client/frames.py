"""Runs and metric histories as polars DataFrames, for notebooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

BASE_COLUMNS = ("run_id", "run_name", "experiment_id", "status", "user_id", "start_time", "end_time")


def runs_frame(runs: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per run: its info, then ``params.<key>`` (strings), ``metrics.<key>`` (latest value,
    float) and ``tags.<key>`` for user tags (``mlflow.*`` system tags are left out)."""
    import polars as pl

    rows: list[dict[str, Any]] = []
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    tags: dict[str, None] = {}
    for run in runs:
        info = run["info"]
        row: dict[str, Any] = {name: info.get(name) for name in BASE_COLUMNS}
        row["run_name"] = info.get("run_name")
        for key, value in (run.get("params") or {}).items():
            params[key] = None
            row[f"params.{key}"] = value
        for key, metric in (run.get("metrics") or {}).items():
            metrics[key] = None
            row[f"metrics.{key}"] = float(metric["value"])
        for key, value in (run.get("tags") or {}).items():
            if not key.startswith("mlflow."):
                tags[key] = None
                row[f"tags.{key}"] = value
        rows.append(row)
    schema: dict[str, Any] = {
        "run_id": pl.String,
        "run_name": pl.String,
        "experiment_id": pl.String,
        "status": pl.String,
        "user_id": pl.String,
        "start_time": pl.Int64,
        "end_time": pl.Int64,
        **{f"params.{k}": pl.String for k in sorted(params)},
        **{f"metrics.{k}": pl.Float64 for k in sorted(metrics)},
        **{f"tags.{k}": pl.String for k in sorted(tags)},
    }
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return frame.with_columns(
        pl.from_epoch("start_time", time_unit="ms").dt.replace_time_zone("UTC"),
        pl.from_epoch("end_time", time_unit="ms").dt.replace_time_zone("UTC"),
    )


def history_frame(parts: Sequence[tuple[str, str, pa.Table]]) -> pl.DataFrame:
    """Histories of (run_id, key) pairs stacked: run_id, key, step, timestamp (UTC), value."""
    import polars as pl

    schema = {"run_id": pl.String, "key": pl.String, "step": pl.Int64, "timestamp": pl.Int64, "value": pl.Float64}
    frames = [
        pl.DataFrame(table)
        .select(pl.col("step").cast(pl.Int64), pl.col("timestamp").cast(pl.Int64), pl.col("value").cast(pl.Float64))
        .with_columns(pl.lit(run_id).alias("run_id"), pl.lit(key).alias("key"))
        .select(list(schema))
        for run_id, key, table in parts
    ]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return frame.with_columns(pl.from_epoch("timestamp", time_unit="ms").dt.replace_time_zone("UTC"))
