"""Runs as they stood at a past time: the state run search and grouping evaluate, rebuilt from snapshots.

The live search reads the in-memory state (``TrackingState.run_index``), which is the present only.
A search "as of" a time reads the ``runs``, ``params``, ``tags`` and ``latest_metrics`` views at the
Iceberg snapshots current then (``SqlEngine.query(as_of=...)``: one DuckDB query, every table at
its snapshot of that time) and folds the answer into ``RunState`` objects and a ``RunIndex`` of
their own, so the same filter, order and grouping code (``lakeops/search.py``) answers on them.
What was logged but not yet committed at that time is not in it (the snapshots are the record), and
a time older than the retained snapshots is refused as the SQL endpoint refuses it.

A built past is kept for the next pages of the same search (a few, least recently used first out):
paging through 100k runs as of a time reads the lake once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakeops.errors import InvalidArgumentError
from lakeops.stores.run_index import RunIndex, pack_latest
from lakeops.stores.state import RunState

if TYPE_CHECKING:
    from lakeops.sql import SqlEngine

# Every run of the experiments, with its params, tags and latest metrics as lists (one row a run).
_RUNS_SQL = """
WITH r AS (
    SELECT run_id, experiment_id, run_name, user_id, status, epoch_ms(started_at) AS start_time,
           epoch_ms(ended_at) AS end_time, lifecycle_stage, artifact_uri, parent_run_id
    FROM runs WHERE list_contains(?::VARCHAR[], experiment_id)
), p AS (
    SELECT run_id, list(key) AS keys, list(value) AS "values"
    FROM params WHERE run_id IN (SELECT run_id FROM r) GROUP BY run_id
), t AS (
    SELECT entity_id AS run_id, list(key) AS keys, list(value) AS "values"
    FROM tags WHERE entity_type = 'run' AND entity_id IN (SELECT run_id FROM r) GROUP BY entity_id
), m AS (
    SELECT run_id, list(key) AS keys, list(value) AS "values", list(step) AS steps,
           list(epoch_ms(recorded_at)) AS stamps
    FROM latest_metrics WHERE run_id IN (SELECT run_id FROM r) GROUP BY run_id
)
SELECT r.*, p.keys AS param_keys, p."values" AS param_values, t.keys AS tag_keys, t."values" AS tag_values,
       m.keys AS metric_keys, m."values" AS metric_values, m.steps AS metric_steps, m.stamps AS metric_stamps
FROM r LEFT JOIN p USING (run_id) LEFT JOIN t USING (run_id) LEFT JOIN m USING (run_id)
"""
_MAX_RUNS = 10_000_000


@dataclass(frozen=True)
class PastRuns:
    """The runs of some experiments at one time: by id, and as a search index."""

    when_ms: int
    runs: dict[str, RunState]
    index: RunIndex


def as_of_ms(when: datetime) -> int:
    """A time as epoch milliseconds (a naive time is UTC)."""
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def _pairs(keys: list[str] | None, values: list[str] | None) -> dict[str, str]:
    return dict(zip(keys or [], values or [], strict=True))


class RunsAsOf:
    """Builds (and keeps a few of) the runs of experiments as of past times, from the SQL views."""

    def __init__(self, engine: Callable[[], SqlEngine], *, keep: int = 4) -> None:
        self._engine = engine
        self._keep = keep
        self._built: OrderedDict[tuple[tuple[str, ...], int], PastRuns] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, experiment_ids: Sequence[str], when: datetime) -> PastRuns:
        """The runs of ``experiment_ids`` (any lifecycle stage) as of ``when``.

        Raises:
            InvalidArgumentError: ``when`` is before the retained snapshots or the lake's first commit.
            BackendUnavailableError: the lake cannot be read.
        """
        key = (tuple(sorted(set(experiment_ids))), as_of_ms(when))
        with self._lock:
            found = self._built.get(key)
            if found is not None:
                self._built.move_to_end(key)
                return found
        past = self._build(list(key[0]), when, key[1])
        with self._lock:
            self._built[key] = past
            while len(self._built) > self._keep:
                self._built.popitem(last=False)
        return past

    def _build(self, experiment_ids: list[str], when: datetime, when_ms: int) -> PastRuns:
        table = self._engine().query(_RUNS_SQL, params=[experiment_ids], as_of=when, max_rows=_MAX_RUNS)
        if table.num_rows >= _MAX_RUNS:  # pragma: no cover - a guard, not a case
            raise InvalidArgumentError(f"More than {_MAX_RUNS} runs as of {when.isoformat()}: narrow the search")
        cols = table.to_pydict()
        runs: dict[str, RunState] = {}
        index = RunIndex()
        for i, run_id in enumerate(cols["run_id"]):
            metric_keys = cols["metric_keys"][i] or []
            run = RunState(
                run_id=run_id,
                experiment_id=cols["experiment_id"][i],
                run_name=cols["run_name"][i],
                user_id=cols["user_id"][i],
                status=cols["status"][i],
                start_time=cols["start_time"][i],
                end_time=cols["end_time"][i],
                lifecycle_stage=cols["lifecycle_stage"][i],
                artifact_root=cols["artifact_uri"][i],
                parent_run_id=cols["parent_run_id"][i],
                params=_pairs(cols["param_keys"][i], cols["param_values"][i]),
                tags=_pairs(cols["tag_keys"][i], cols["tag_values"][i]),
                metrics={
                    key: pack_latest(stamp, value, step)
                    for key, value, step, stamp in zip(
                        metric_keys,
                        cols["metric_values"][i] or [],
                        cols["metric_steps"][i] or [],
                        cols["metric_stamps"][i] or [],
                        strict=True,
                    )
                },
            )
            runs[run_id] = run
            index.upsert_run(run)
        # Rows come in no particular order; the index orders by its keys, run id last.
        return PastRuns(when_ms=when_ms, runs=runs, index=index)
