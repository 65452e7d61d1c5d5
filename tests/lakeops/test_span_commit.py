"""Spans through the write path: a large batch of many traces read back one trace at a time, queued or
committed, and the trace tables' own group-commit period (``write.traces_commit_interval_s``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from lakes import settings_json
from pyiceberg.expressions import EqualTo
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import StringType

from catalog.tables import METRIC_BUCKETS, SPANS, TAG_CHANGES, TRACE_INFO_CHANGES, TRACE_TAG_CHANGES
from lakeops.services.traces import SpanBatch, SpanRow, TraceService
from lakeops.settings import LakeopsSettings
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService

BASE_NS = 1_700_000_000_000_000_000
SPAN_WRITER = Path(__file__).parent / "procs" / "span_writer.py"
# file and s3 (the REST catalog commits the same way through pyiceberg)
FILE_AND_S3 = pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.s3)], indirect=True)


def _batch(first: int, traces: int, spans: int) -> SpanBatch:
    """``traces`` traces of ``spans`` spans each (a root and its children), their start times shuffled."""
    batch = SpanBatch()
    for t in range(first, first + traces):
        trace_id = f"tr-{t:032x}"
        for s in reversed(range(spans)):  # children before their root, as exporters send them
            start = BASE_NS + t * 1_000_000 + s * 1000
            row = SpanRow(
                trace_id=trace_id,
                span_id=f"{s + 1:016x}",
                parent_span_id=None if s == 0 else f"{1:016x}",
                name=f"step-{s}",
                span_type="CHAIN" if s == 0 else "LLM",
                status_code="OK",
                status_message=None,
                start_ns=start,
                end_ns=start + 500_000,
                attributes_json=json.dumps({"t": t, "s": s}),
                content_json=json.dumps({"name": f"step-{s}", "trace": t, "span": s}),
            )
            batch.rows.append(row)
            if s == 0:
                batch.add_root(row, inputs={"t": t}, outputs=None)
    return batch


def _spans_of(traces: TraceService, t: int) -> list[tuple[str, int]]:
    return [(s["name"], s["trace"]) for s in traces.get_spans(f"tr-{t:032x}")]


def _expected(t: int, spans: int) -> list[tuple[str, int]]:
    return [(f"step-{s}", t) for s in range(spans)]  # in start order


def _snapshots(store: IcebergStore, name: str) -> int:
    return len(store.catalog.load_table((store.settings.namespace, name)).metadata.snapshots)


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@FILE_AND_S3
def test_a_large_batch_of_many_traces_reads_back_one_trace_at_a_time(
    store: IcebergStore, tracking: TrackingService
) -> None:
    """One request's worth of spans from hundreds of traces: each trace reads back whole and alone, queued and
    committed; the committed files hold one bucket each, so a trace's read plans one file."""
    traces = TraceService(store, actor="ana")
    experiment_id = tracking.create_experiment("spans")
    assert traces.log_spans(experiment_id, _batch(0, 400, 5)) == 2000
    assert traces.log_spans(experiment_id, _batch(400, 100, 3)) == 300
    sample = [0, 1, 57, 199, 399, 400, 499]
    for t in sample:  # queued
        assert _spans_of(traces, t) == _expected(t, 5 if t < 400 else 3)
    store.commit()
    for t in sample:  # committed
        assert _spans_of(traces, t) == _expected(t, 5 if t < 400 else 3)
    assert traces.get_spans("tr-" + "f" * 32) == []
    assert len(traces.search_traces([experiment_id], max_results=1000)[0]) == 500

    table = store.catalog.load_table((store.settings.namespace, SPANS.name))
    rows = table.scan().to_arrow()
    assert rows.num_rows == 2300 and pc.count_distinct(rows["trace_id"]).as_py() == 500
    files = list(table.scan().plan_files())
    assert 1 < len(files) <= METRIC_BUCKETS
    in_files = 0
    for task in files:  # each file: its bucket's rows only, sorted by trace and start time
        with table.io.new_input(task.file.file_path).open() as f:
            held = pq.read_table(f)
        assert {_bucket(t) for t in pc.unique(held["trace_id"]).to_pylist()} == {task.file.partition[0]}
        keys = list(zip(held["trace_id"].to_pylist(), held["started_at"].to_pylist(), strict=True))
        assert keys == sorted(keys)
        in_files += held.num_rows
    assert in_files == 2300
    for t in sample:
        (only,) = list(table.scan(row_filter=EqualTo("trace_id", f"tr-{t:032x}")).plan_files())
        assert only.file.partition[0] == _bucket(f"tr-{t:032x}")


def _bucket(trace_id: str) -> int:
    return int(BucketTransform(METRIC_BUCKETS).pyarrow_transform(StringType())(pa.array([trace_id]))[0].as_py())


@FILE_AND_S3
def test_traces_wait_for_their_own_commit_period_and_are_read_meanwhile(
    lake_factory: Callable[..., LakeopsSettings], empty_lakes: object, request: pytest.FixtureRequest
) -> None:
    """The committer's rounds leave spans, trace info and trace tags queued for ``traces_commit_interval_s``
    while other tables commit every round; reads see the queued traces, an explicit commit (SQL, shutdown)
    takes them at once, and a later round commits them on its own."""
    settings: LakeopsSettings = lake_factory(commit_interval_s=0.05, traces_commit_interval_s=3.0)
    s3 = request.getfixturevalue("s3_server") if settings.storage.kind == "s3" else None
    empty_lakes.prepare(settings, s3)  # type: ignore[attr-defined]
    trace_tables = (SPANS.name, TRACE_INFO_CHANGES.name, TRACE_TAG_CHANGES.name)
    with open_store(settings) as store:
        traces = TraceService(store, actor="ana")
        tracking = TrackingService(store)
        experiment_id = tracking.create_experiment("deferred")
        before = {name: _snapshots(store, name) for name in (*trace_tables, TAG_CHANGES.name)}
        logged = time.monotonic()
        traces.log_spans(experiment_id, _batch(0, 20, 4))
        tracking.set_experiment_tag(experiment_id, "k", "v")  # a table every round takes
        _wait_for(lambda: _snapshots(store, TAG_CHANGES.name) > before[TAG_CHANGES.name], "a round")
        time.sleep(0.5)  # that round over, and several rounds since
        if time.monotonic() - logged < 2.5:  # well inside the traces' period (a loaded machine may be slower)
            assert [_snapshots(store, name) for name in trace_tables] == [before[n] for n in trace_tables]
        assert _spans_of(traces, 7) == _expected(7, 4)  # queued, and read all the same
        assert len(traces.search_traces([experiment_id])[0]) == 20
        # a later round takes them on its own, once they have waited their period
        _wait_for(lambda: all(_snapshots(store, n) > before[n] for n in trace_tables), "the traces' own round")
        assert time.monotonic() - logged >= 3.0
        assert _spans_of(traces, 7) == _expected(7, 4)
        assert len(traces.search_traces([experiment_id])[0]) == 20
        # an explicit commit does not wait
        traces.log_spans(experiment_id, _batch(20, 5, 2))
        committed = {name: _snapshots(store, name) for name in trace_tables}
        store.commit()
        assert {name: _snapshots(store, name) for name in trace_tables} == {n: c + 1 for n, c in committed.items()}
        assert _spans_of(traces, 21) == _expected(21, 2)


@pytest.mark.slow
@FILE_AND_S3
def test_kill_9_loses_no_acknowledged_span(lake_factory: Callable[..., LakeopsSettings]) -> None:
    """Spans wait seconds for their commit (``traces_commit_interval_s``), in the write-ahead log: a process
    killed meanwhile loses none it acknowledged; the next one replays and commits them once."""
    settings = lake_factory(commit_interval_s=0.05, traces_commit_interval_s=3600.0)  # nothing of them commits
    with open_store(settings) as store:
        experiment_id = TrackingService(store).create_experiment("crash")
    child = subprocess.Popen(
        [sys.executable, str(SPAN_WRITER), settings_json(settings), experiment_id, "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY", child.stderr.read() if child.stderr else ""
    acked = {int(child.stdout.readline().split()[1]) for _ in range(60)}
    child.send_signal(signal.SIGKILL)
    rest, _err = child.communicate(timeout=30)
    acked.update(int(line.split()[1]) for line in rest.splitlines() if line.startswith("ACK"))
    with open_store(settings) as store:
        store.commit()
        traces = TraceService(store, actor="ana")
        for b in acked:
            for t in (b * 10, b * 10 + 9):
                assert [s["name"] for s in traces.get_spans(f"tr-{t:032x}")] == ["s0", "s1", "s2"]
        table = store.catalog.load_table((store.settings.namespace, SPANS.name))
        rows = table.scan().to_arrow()
        keys = list(zip(rows["trace_id"].to_pylist(), rows["span_id"].to_pylist(), strict=True))
        assert len(keys) == len(set(keys)), "a span was stored twice"
        assert len(keys) >= 30 * len(acked)
        found, _token = traces.search_traces([experiment_id], max_results=50_000)
        assert {i.trace_id for i in found} >= {f"tr-{t:032x}" for b in acked for t in range(b * 10, b * 10 + 10)}
