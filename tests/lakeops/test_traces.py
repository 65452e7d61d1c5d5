"""Trace search over a real lake: MLflow's filter language, order-by and paging, on rows both committed
and still queued."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lakeops.errors import InvalidArgumentError
from lakeops.services.traces import TraceInfo, TraceService
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService

BASE_MS = 1_700_000_000_000
NAMES = ["alpha", "Beta", "beta", "gamma"]


@dataclass(frozen=True)
class Made:
    """What the test recorded for one trace."""

    trace_id: str
    timestamp: int
    duration: int | None
    state: str
    name: str | None
    env: str | None
    run: str | None


@pytest.fixture
def recorded(store: IcebergStore, tracking: TrackingService) -> tuple[TraceService, str, str, list[Made]]:
    traces = TraceService(store, actor="ana")
    experiment_id = tracking.create_experiment("search-traces")
    run_id = tracking.create_run(experiment_id).info.run_id
    made = []
    for i in range(12):
        row = Made(
            trace_id=f"tr-{i:032x}",
            timestamp=BASE_MS + (i % 4) * 1000,  # ties: the trace id breaks them
            duration=None if i in (2, 7) else i * 10,
            state="ERROR" if i % 3 == 0 else "OK",
            name=None if i == 5 else NAMES[i % 4],
            env="prod" if i % 2 == 0 and i < 8 else "dev" if i in (1, 3) else None,
            run=run_id if i in (0, 1) else None,
        )
        made.append(row)
        tags = {k: v for k, v in {"mlflow.traceName": row.name, "env": row.env}.items() if v is not None}
        metadata = {"mlflow.sourceRun": row.run} if row.run else {"user": "o'neil"} if i == 4 else {}
        traces.start_trace(
            TraceInfo(
                trace_id=row.trace_id,
                experiment_id=experiment_id,
                request_time=row.timestamp,
                execution_duration=row.duration,
                state=row.state,
                metadata=metadata,
                tags=tags,
            )
        )
        if i == 5:
            store.commit()  # the rest stays queued: searches merge both
    traces.link_traces_to_run([made[6].trace_id], run_id)
    traces.create_assessment(
        made[0].trace_id,
        {"assessment_name": "helpful", "feedback": {"value": True}, "source": {"source_type": "HUMAN"}},
    )
    traces.create_assessment(
        made[3].trace_id, {"assessment_name": "helpful", "feedback": {"value": 0.5}, "source": {"source_type": "HUMAN"}}
    )
    traces.delete_traces(experiment_id, trace_ids=[made[11].trace_id])
    return traces, experiment_id, run_id, made[:11]


def _ids(traces: TraceService, experiment_id: str, filter_string: str | None, order_by: list[str] | None) -> list[str]:
    """Every match, page by page (3 a page)."""
    found, token = [], None
    while True:
        page, token = traces.search_traces(
            [experiment_id], filter_string=filter_string, order_by=order_by, max_results=3, page_token=token
        )
        found += [t.trace_id for t in page]
        if token is None:
            return found


def test_filters(recorded: tuple[TraceService, str, str, list[Made]]) -> None:
    traces, experiment_id, run_id, made = recorded
    newest = sorted(sorted(made, key=lambda m: m.trace_id), key=lambda m: m.timestamp, reverse=True)

    def expect(keep: object) -> list[str]:
        return [m.trace_id for m in newest if keep(m)]  # type: ignore[operator]

    cases = {
        None: expect(lambda m: True),
        "trace.status = 'OK'": expect(lambda m: m.state == "OK"),
        "status NOT IN ('OK')": expect(lambda m: m.state != "OK"),
        "execution_time_ms > 40": expect(lambda m: m.duration is not None and m.duration > 40),
        "execution_time_ms IS NULL": expect(lambda m: m.duration is None),
        f"end_time_ms <= {BASE_MS + 1030}": expect(
            lambda m: m.duration is not None and m.timestamp + m.duration <= BASE_MS + 1030
        ),
        "name LIKE 'b%'": expect(lambda m: m.name == "beta"),
        "trace.name ILIKE 'b%'": expect(lambda m: m.name in ("beta", "Beta")),
        "name IS NULL": expect(lambda m: m.name is None),
        "tags.env = 'prod'": expect(lambda m: m.env == "prod"),
        "tags.env != 'prod'": expect(lambda m: m.env == "dev"),  # a trace without the tag never matches
        "tags.env IS NULL": expect(lambda m: m.env is None),
        f"run_id = '{run_id}'": expect(lambda m: m.run == run_id or m.trace_id == made[6].trace_id),  # or linked
        f"run_id != '{run_id}'": [],  # only the run it was recorded in counts, and no other trace has one
        "metadata.user = 'o''neil'": [made[4].trace_id],
        "feedback.helpful = 'true'": [made[0].trace_id],
        "status = 'ERROR' AND tags.env IS NOT NULL": expect(lambda m: m.state == "ERROR" and m.env is not None),
    }
    for filter_string, expected in cases.items():
        assert _ids(traces, experiment_id, filter_string, None) == expected, filter_string


def test_order_by_puts_missing_values_last_either_way(recorded: tuple[TraceService, str, str, list[Made]]) -> None:
    traces, experiment_id, _run_id, made = recorded
    by_id = sorted(made, key=lambda m: m.trace_id)
    for descending in (False, True):
        direction = "DESC" if descending else "ASC"
        with_env = sorted((m for m in by_id if m.env), key=lambda m: m.env or "", reverse=descending)
        expected = [m.trace_id for m in with_env + [m for m in by_id if not m.env]]
        assert _ids(traces, experiment_id, None, [f"tags.env {direction}"]) == expected
        named = sorted((m for m in by_id if m.name), key=lambda m: m.name or "", reverse=descending)
        by_name_then_time = sorted(named, key=lambda m: m.timestamp)
        by_name_then_time.sort(key=lambda m: m.name or "", reverse=descending)
        expected = [m.trace_id for m in by_name_then_time + [m for m in by_id if not m.name]]
        assert _ids(traces, experiment_id, None, [f"name {direction}", "timestamp_ms ASC"]) == expected
    timed = sorted((m for m in by_id if m.duration is not None), key=lambda m: m.duration or 0, reverse=True)
    expected = [m.trace_id for m in timed + [m for m in by_id if m.duration is None]]
    assert _ids(traces, experiment_id, None, ["execution_time_ms DESC"]) == expected


@pytest.mark.parametrize(
    ("filter_string", "order_by", "message"),
    [
        pytest.param("trace.colour = 'red'", None, "Invalid trace attribute", id="unknown-attribute"),
        pytest.param("timestamp_ms = 'noon'", None, "needs a number", id="number-expected"),
        pytest.param("status > 'OK'", None, "Invalid comparator", id="string-comparator"),
        pytest.param(None, ["colour DESC"], "Invalid order_by key", id="unknown-order"),
    ],
)
def test_bad_searches_are_refused(
    recorded: tuple[TraceService, str, str, list[Made]],
    filter_string: str | None,
    order_by: list[str] | None,
    message: str,
) -> None:
    traces, experiment_id, _run_id, _made = recorded
    with pytest.raises(InvalidArgumentError, match=message):
        traces.search_traces([experiment_id], filter_string=filter_string, order_by=order_by)


def test_a_search_sees_every_write_before_it(recorded: tuple[TraceService, str, str, list[Made]]) -> None:
    """Searches repeat over the same traces (the UI pages and refreshes): each sees what was written since."""
    traces, experiment_id, _run_id, made = recorded
    store = traces.store
    newest = sorted(sorted(made, key=lambda m: m.trace_id), key=lambda m: m.timestamp, reverse=True)
    assert _ids(traces, experiment_id, None, None) == [m.trace_id for m in newest]
    fresh = "tr-" + "f" * 32
    traces.start_trace(TraceInfo(trace_id=fresh, experiment_id=experiment_id, request_time=BASE_MS + 9000))
    assert _ids(traces, experiment_id, None, None) == [fresh] + [m.trace_id for m in newest]  # queued
    store.commit()
    assert _ids(traces, experiment_id, None, None) == [fresh] + [m.trace_id for m in newest]  # committed
    traces.delete_traces(experiment_id, trace_ids=[fresh, newest[0].trace_id])
    assert _ids(traces, experiment_id, None, None) == [m.trace_id for m in newest[1:]]
    traces.set_trace_tag(newest[1].trace_id, "env", "qa")
    assert _ids(traces, experiment_id, "tags.env = 'qa'", None) == [newest[1].trace_id]
