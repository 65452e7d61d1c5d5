"""A run's data: params (immutable), tags and metric points, logged atomically (``log_batch``) or in bulk
from Arrow, and a metric's history read back from the lake with pruning.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from catalog.tables import LOGGED_MODEL_METRICS, METRICS, PARAMS, TAG_CHANGES
from lakeops.entities import Metric, MetricHistoryPage
from lakeops.errors import InvalidArgumentError
from lakeops.search import decode_token, encode_token
from lakeops.stores.iceberg import Rows
from lakeops.stores.state import TrackingState
from lakeops.tracking.core import TrackingCore, record_batch
from lakeops.tracking.validation import (
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    check_max_results,
    validate_key,
    validate_metric,
    validate_text,
)

# (model_id, dataset_name, dataset_digest) of a metric point; model_id None for a run-only point.
MetricModelLink = tuple[str | None, str | None, str | None]


def _metric_batch(run_id: str, points: list[tuple[str, float, int, int]]) -> pa.RecordBatch:
    keys, values, stamps, steps = zip(*points, strict=True)
    return record_batch(
        METRICS,
        {
            "run_id": [run_id] * len(points),
            "key": keys,
            "value": values,
            "recorded_at": [t * 1000 for t in stamps],
            "step": steps,
        },
    )


def _model_metric_batch(
    run_id: str, linked: list[tuple[tuple[str, float, int, int], MetricModelLink]]
) -> pa.RecordBatch:
    return record_batch(
        LOGGED_MODEL_METRICS,
        {
            "model_id": [link[0] for _p, link in linked],
            "run_id": [run_id] * len(linked),
            "key": [p[0] for p, _l in linked],
            "value": [p[1] for p, _l in linked],
            "recorded_at": [p[2] * 1000 for p, _l in linked],
            "step": [p[3] for p, _l in linked],
            "dataset_name": [link[1] or None for _p, link in linked],
            "dataset_digest": [link[2] or None for _p, link in linked],
        },
    )


def _metrics_from_arrow(points: pa.Table) -> pa.RecordBatch:
    required = {"run_id", "key", "value", "timestamp"}
    missing = required - set(points.column_names)
    if missing:
        raise InvalidArgumentError(
            f"Metric table lacks columns {sorted(missing)}; needs run_id, key, value, timestamp[, step]"
        )
    if points.num_rows == 0:
        raise InvalidArgumentError("Metric table is empty")
    try:
        run_id = pc.cast(points.column("run_id"), pa.string())
        key = pc.cast(points.column("key"), pa.string())
        value = pc.cast(points.column("value"), pa.float64())
        stamp = pc.cast(points.column("timestamp"), pa.int64())
        step = (
            pc.cast(points.column("step"), pa.int64())
            if "step" in points.column_names
            else pa.array([0] * points.num_rows, pa.int64())
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgumentError(f"Metric table has a column of the wrong type: {exc}") from exc
    for name, col in (("run_id", run_id), ("key", key), ("value", value), ("timestamp", stamp), ("step", step)):
        if col.null_count:
            raise InvalidArgumentError(f"Metric table column {name!r} has nulls")
    low, high = pc.min_max(stamp).values()
    if low.as_py() < MIN_TIMESTAMP_MS or high.as_py() > MAX_TIMESTAMP_MS:
        raise InvalidArgumentError(
            f"Metric table column 'timestamp' must hold milliseconds since 1970 between {MIN_TIMESTAMP_MS} and "
            f"{MAX_TIMESTAMP_MS} (years 1 to 9999); it holds {low.as_py()} to {high.as_py()}"
        )
    recorded = pc.cast(pc.multiply(stamp, 1000), pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {"run_id": run_id, "key": key, "value": value, "recorded_at": recorded, "step": step},
        schema=METRICS.arrow_schema,
    )
    return table.combine_chunks().to_batches()[0]


def metric_is_nan(value: float) -> bool:
    """Whether a metric value is NaN (exported for the REST layer's JSON encoding)."""
    return math.isnan(value)


class RunDataMixin(TrackingCore):
    """A run's data: params (immutable), tags and metric points logged, and metric history read back."""

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Set one tag on a run (tags are mutable)."""
        self.log_batch(run_id, tags={key: value})

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove one tag from a run."""
        self._write_tags("run", run_id, {key: None})

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        """Log one param. Params are immutable: the same value again is accepted, another is an error."""
        self.log_batch(run_id, params={key: value})

    def log_metric(self, run_id: str, key: str, value: float, *, timestamp: int | None = None, step: int = 0) -> None:
        """Log one metric point."""
        self.log_batch(run_id, metrics=[(key, value, self._now_ms() if timestamp is None else timestamp, step)])

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Iterable[tuple[str, float, int, int] | Metric] = (),
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        tags: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        metric_models: Sequence[MetricModelLink] = (),
    ) -> None:
        """Log metrics, params and tags of one run atomically: all are stored, or none.

        ``metric_models``, when given, holds one ``(model_id, dataset_name, dataset_digest)`` per
        metric (all None for a point of the run alone): a point with a model_id also shows on that
        logged model, as MLflow 3 does.

        Raises:
            NotFoundError: no such run, or no such logged model.
            InvalidArgumentError: a bad key or value, a param changed.
        """
        seen: set[str] = set()
        points = [
            validate_metric(m.key, m.value, m.timestamp, m.step, known_keys=seen)
            if isinstance(m, Metric)
            else validate_metric(*m, known_keys=seen)
            for m in metrics
        ]
        linked = [(p, link) for p, link in zip(points, metric_models, strict=False) if link[0]]
        param_items = list(params.items()) if isinstance(params, Mapping) else list(params)
        new_params: dict[str, str] = {}
        for key, value in param_items:
            validate_key("param", key)
            text = validate_text("param", value, MAX_PARAM_VALUE_LENGTH)
            if key in new_params and new_params[key] != text:
                raise InvalidArgumentError(
                    f"Duplicate parameter {key!r} in the batch with different values: {new_params[key]!r}, {text!r}"
                )
            new_params[key] = text
        tag_items = list(tags.items()) if isinstance(tags, Mapping) else list(tags)
        new_tags = {validate_key("tag", k): validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in tag_items}
        metric_batch = _metric_batch(run_id, points) if points else None
        now_us = self._now_ms() * 1000

        def build(state: TrackingState) -> Rows:
            run = self._active_run(state, run_id)
            rows: Rows = {}
            fresh: dict[str, str] = {}
            for key, value in new_params.items():
                old = run.params.get(key)
                if old is None:
                    fresh[key] = value
                elif old != value:
                    raise InvalidArgumentError(
                        f"Changing param values is not allowed. Param with key='{key}' was already logged "
                        f"with value='{old}' for run ID='{run_id}'. Attempted logging new value '{value}'.",
                        details={"key": key, "old_value": old, "new_value": value},
                    )
            if fresh:
                rows[PARAMS.name] = record_batch(
                    PARAMS,
                    {
                        "run_id": [run_id] * len(fresh),
                        "key": list(fresh),
                        "value": list(fresh.values()),
                        "logged_at": [now_us] * len(fresh),
                    },
                )
            if new_tags:
                rows[TAG_CHANGES.name] = self._tag_rows("run", run_id, new_tags)
            if metric_batch is not None:
                rows[METRICS.name] = metric_batch
            if linked:
                for _point, (model_id, _n, _d) in linked:
                    self._logged_model(state, str(model_id))
                rows[LOGGED_MODEL_METRICS.name] = _model_metric_batch(run_id, linked)
            return rows

        self.store.write(build)

    def log_metrics_table(self, points: pa.Table) -> int:
        """Bulk-log metric points of any number of runs from an Arrow table.

        Columns: ``run_id`` (string), ``key`` (string), ``value`` (float), ``timestamp`` (int ms),
        and optionally ``step`` (int, default 0). Returns the number of points stored.
        """
        batch = _metrics_from_arrow(points)
        run_ids = pc.unique(batch.column("run_id")).to_pylist()
        for key in pc.unique(batch.column("key")).to_pylist():
            validate_key("metric", key)

        def build(state: TrackingState) -> Rows:
            for run_id in run_ids:
                self._active_run(state, run_id)
            return {METRICS.name: batch}

        self.store.write(build)
        return int(batch.num_rows)

    def get_metric_history(
        self, run_id: str, key: str, *, max_results: int | None = None, page_token: str | None = None
    ) -> MetricHistoryPage:
        """Every point of one metric, ordered by step then timestamp, optionally paged."""
        page, nxt = self.metric_history_page(run_id, key, max_results=max_results, page_token=page_token)
        metrics = [
            Metric(key=key, value=v, timestamp=t, step=st)
            for v, t, st in zip(
                page.column("value").to_pylist(),
                page.column("timestamp").to_pylist(),
                page.column("step").to_pylist(),
                strict=True,
            )
        ]
        return MetricHistoryPage(metrics=metrics, next_page_token=nxt)

    def metric_history_page(
        self, run_id: str, key: str, *, max_results: int | None = None, page_token: str | None = None
    ) -> tuple[pa.Table, str | None]:
        """One page of a metric's history as Arrow (``step``, ``timestamp``, ``value``) and the next token."""
        if max_results is not None:
            check_max_results(max_results, limit=10_000_000)
        offset = int(decode_token(page_token).get("offset", 0))
        table = self.metric_history_table(run_id, key)
        end = table.num_rows if max_results is None else min(table.num_rows, offset + max_results)
        nxt = encode_token({"offset": end}) if end < table.num_rows else None
        return table.slice(offset, max(0, end - offset)), nxt

    def metric_history_table(self, run_id: str, key: str) -> pa.Table:
        """One metric's history as Arrow: ``step``, ``timestamp`` (ms), ``value``; ordered by step, timestamp."""
        self._run(self.state, run_id)
        rows = self.store.metric_history(run_id, key)
        stamps = pc.divide(pc.cast(rows.column("recorded_at"), pa.int64()), 1000)
        return pa.table({"step": rows.column("step"), "timestamp": stamps, "value": rows.column("value")})
