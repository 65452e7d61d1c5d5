"""Start-up reads the metric summary, never the metric points; the summary stays exact.

The summary (``metric_latest``) is appended in the same commit round as the points, replayed from
the write-ahead log on its own mark, built once for a lake written before it existed, and reduced
by maintenance. Each test compares what the state, search and the SQL views say with the points.
"""

from __future__ import annotations

import math

import pytest

from catalog.tables import METRIC_LATEST, METRICS
from lakeops.settings import LakeopsSettings
from lakeops.sql import SqlEngine
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService

pytestmark = pytest.mark.parametrize("backend", ["file", "s3"], indirect=True)


def _log_sweep(tracking: TrackingService, store: IcebergStore, commits: int = 3) -> list[str]:
    exp = tracking.create_experiment("sweep")
    runs = [tracking.create_run(exp, run_name=f"r{i}").info.run_id for i in range(3)]
    for c in range(commits):
        for i, run_id in enumerate(runs):
            points = [("loss", 1.0 / (1 + c * 10 + s) + i, 1_000 + c * 10 + s, c * 10 + s) for s in range(10)]
            points.append(("nan_then_number", math.nan if c == 0 else float(c), 5_000 + c, c))
            tracking.log_batch(run_id, metrics=points)
        store.commit()
    return runs


def _crash(store: IcebergStore) -> None:
    """Stop the store as a crash would: its committer does no further round (one still running
    when the test drops a table could otherwise commit into the table the next process creates)."""
    store._stop.set()
    store._wake.set()
    if store._committer is not None:
        store._committer.join()
    store.wal.close()


def _latest(tracking: TrackingService, runs: list[str]) -> dict[tuple[str, str], tuple[float, int, int]]:
    found = {}
    for run_id in runs:
        for key, m in tracking.get_run(run_id).metrics.items():
            found[(run_id, key)] = (m.value, m.timestamp, m.step)
    return found


def _sql_latest(settings: LakeopsSettings, store: IcebergStore | None = None) -> dict[tuple[str, str], tuple]:
    engine = SqlEngine(settings, store=store)
    try:
        rows = engine.query("SELECT run_id, key, value, step, points, min_value, max_value FROM latest_metrics")
    finally:
        engine.close()
    return {
        (r["run_id"], r["key"]): (r["value"], r["step"], r["points"], r["min_value"], r["max_value"])
        for r in rows.to_pylist()
    }


def _delete_data_files(store: IcebergStore, name: str) -> int:
    table = store.table(name)
    files = [task.file.file_path for task in table.scan().plan_files()]
    for path in files:
        table.io.delete(path)
    return len(files)


def test_start_up_reads_the_summary_not_the_points(store: IcebergStore, tracking: TrackingService) -> None:
    runs = _log_sweep(tracking, store)
    before = _latest(tracking, runs)
    assert before[(runs[1], "loss")] == (1.0 / 30 + 1, 1_029, 29)
    assert before[(runs[0], "nan_then_number")][0] == 2.0
    settings = store.settings
    store.close()
    # With every metric point gone from storage, a process still starts and knows the latest values:
    # it never read them.
    probe = open_store(settings, start_committer=False)
    assert _delete_data_files(probe, METRICS.name) > 0
    probe.close()
    reopened = open_store(settings)
    try:
        tracking = TrackingService(reopened)
        assert _latest(tracking, runs) == before
        experiments = [e.experiment_id for e in tracking.search_experiments().experiments]
        found = tracking.search_runs(
            experiments, filter_string="metrics.loss > 0.5", order_by=["metrics.loss DESC"]
        ).runs
        assert [r.info.run_id for r in found] == [runs[2], runs[1]]
    finally:
        reopened.close()


def test_sql_summary_agrees_with_the_points_after_maintenance(store: IcebergStore, tracking: TrackingService) -> None:
    runs = _log_sweep(tracking, store, commits=4)
    summary_files = len(list(store.table(METRIC_LATEST.name).scan().plan_files()))
    assert summary_files >= 4  # one partial file per commit round
    expected = _sql_latest(store.settings, store)
    assert expected[(runs[0], "loss")][1:3] == (39, 40)  # latest step, number of points
    assert expected[(runs[0], "nan_then_number")][2:] == (4, 1.0, 3.0)  # NaN ignored by min/max
    engine = SqlEngine(store.settings, store=store)
    try:
        points = engine.query("SELECT run_id, key, count(*) AS n FROM metrics GROUP BY ALL").to_pylist()
    finally:
        engine.close()
    assert {(r["run_id"], r["key"]): r["n"] for r in points} == {k: v[2] for k, v in expected.items()}
    store.maintain(expire=False)
    assert len(list(store.table(METRIC_LATEST.name).scan().plan_files())) == 1
    assert store.table(METRIC_LATEST.name).scan().to_arrow().num_rows == len(expected)  # reduced, one row per key
    assert _sql_latest(store.settings, store) == expected
    reopened = open_store(store.settings)
    try:
        assert _latest(TrackingService(reopened), runs) == _latest(tracking, runs)
    finally:
        reopened.close()


def test_a_lake_from_before_the_summary_is_backfilled_once(store: IcebergStore, tracking: TrackingService) -> None:
    runs = _log_sweep(tracking, store)
    tracking.log_batch(runs[0], metrics=[("loss", -7.0, 9_999, 99)])  # logged, not committed: replayed later
    before = _latest(tracking, runs)
    settings = store.settings
    _crash(store)  # the last batch lives only in the write-ahead log
    store.catalog.drop_table((settings.namespace, METRIC_LATEST.name))  # as on a lake written by an older lakeops
    reopened = open_store(settings)
    try:
        tracking = TrackingService(reopened)
        assert _latest(tracking, runs) == before
        reopened.commit()
        sql = _sql_latest(settings, reopened)
        assert sql[(runs[0], "loss")][:3] == (-7.0, 99, 31)  # the replayed point counted once
        assert sql[(runs[1], "loss")][2] == 30
    finally:
        reopened.close()
    again = open_store(settings)
    try:
        assert _sql_latest(settings, again) == sql
    finally:
        again.close()


def test_a_crash_between_the_points_and_their_summary_loses_nothing(lake_settings: LakeopsSettings) -> None:
    store = open_store(lake_settings, start_committer=False)
    tracking = TrackingService(store)
    run_id = tracking.create_run(tracking.create_experiment("crash")).info.run_id
    store.commit()
    tracking.log_batch(run_id, metrics=[("m", float(s), 1_000 + s, s) for s in range(10)])
    # The round commits the points, then the process dies before the summary's append.
    with store._lock:
        queue = store._queues[METRICS.name]
        queue.inflight, queue.pending = queue.pending, []
    store._commit_table(METRICS.name, queue.inflight)
    _crash(store)
    reopened = open_store(lake_settings)
    try:
        assert TrackingService(reopened).get_run(run_id).metrics["m"].value == 9.0
        reopened.commit()
        assert _sql_latest(lake_settings, reopened)[(run_id, "m")][:3] == (9.0, 9, 10)
        history = TrackingService(reopened).get_metric_history(run_id, "m").metrics
        assert [m.step for m in history] == list(range(10))  # the points were not committed twice
    finally:
        reopened.close()
