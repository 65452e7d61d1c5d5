"""MLflow 3 tracing through the unmodified mlflow client against a running ``lakeops serve``:
``@mlflow.trace``, ``start_span``, search, get, tags, delete, feedback and expectations, and the
spans' own SQL view."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource, SpanType
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.api


@pytest.fixture
def client(server, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    yield MlflowClient(server.url)
    mlflow.tracing.reset()


@mlflow.trace(span_type=SpanType.TOOL)
def add(a: int, b: int) -> int:
    return a + b


@mlflow.trace(name="agent", span_type=SpanType.AGENT)
def agent(question: str) -> str:
    with mlflow.start_span("retrieve", span_type=SpanType.RETRIEVER) as span:
        span.set_inputs({"q": question})
        span.set_attribute("k", 3)
        span.set_outputs(["doc-1", "doc-2"])
    total = add(1, 2)
    if question == "boom":
        raise ValueError("no answer")
    return f"{question}: {total}"


def test_traces_round_trip(client: MlflowClient, server) -> None:  # type: ignore[no-untyped-def]
    exp = mlflow.set_experiment(f"traces-{uuid.uuid4().hex[:8]}")
    assert agent("hello") == "hello: 3"
    ok_id = mlflow.get_last_active_trace_id()
    with pytest.raises(ValueError, match="no answer"):
        agent("boom")
    error_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()  # the SDK exports in the background by default
    assert ok_id and error_id and ok_id != error_id

    trace = client.get_trace(ok_id)
    assert trace.info.state.value == "OK" and trace.info.experiment_id == exp.experiment_id
    assert trace.info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE"
    by_name = {s.name: s for s in trace.data.spans}
    assert set(by_name) == {"agent", "retrieve", "add"}
    root = by_name["agent"]
    assert root.parent_id is None and root.span_type == SpanType.AGENT
    assert root.inputs == {"question": "hello"} and root.outputs == "hello: 3"
    assert by_name["retrieve"].parent_id == root.span_id and by_name["add"].parent_id == root.span_id
    assert by_name["retrieve"].attributes["k"] == 3 and by_name["retrieve"].outputs == ["doc-1", "doc-2"]
    assert by_name["add"].inputs == {"a": 1, "b": 2} and by_name["add"].outputs == 3

    failed = client.get_trace(error_id)
    assert failed.info.state.value == "ERROR"
    boom = next(s for s in failed.data.spans if s.name == "agent")
    assert boom.status.status_code.value == "ERROR"
    assert any(e.name == "exception" and "no answer" in str(e.attributes) for e in boom.events)

    # search: filters, order, paging
    found = mlflow.search_traces(locations=[exp.experiment_id], return_type="list")
    assert [t.info.trace_id for t in found] == [error_id, ok_id]  # newest first
    errors = mlflow.search_traces(
        locations=[exp.experiment_id], filter_string="trace.status = 'ERROR'", return_type="list"
    )
    assert [t.info.trace_id for t in errors] == [error_id]
    assert errors[0].data.spans  # the list carries each trace's spans
    page = client.search_traces(locations=[exp.experiment_id], max_results=1, order_by=["timestamp_ms ASC"])
    assert [t.info.trace_id for t in page] == [ok_id] and page.token
    rest = client.search_traces(
        locations=[exp.experiment_id], max_results=1, page_token=page.token, order_by=["timestamp_ms ASC"]
    )
    assert [t.info.trace_id for t in rest] == [error_id]
    frame = mlflow.search_traces(locations=[exp.experiment_id])
    assert len(frame) == 2

    # tags
    client.set_trace_tag(ok_id, "reviewed", "yes")
    tagged = client.search_traces(locations=[exp.experiment_id], filter_string="tags.reviewed = 'yes'")
    assert [t.info.trace_id for t in tagged] == [ok_id]
    client.delete_trace_tag(ok_id, "reviewed")
    assert "reviewed" not in client.get_trace(ok_id).info.tags

    # feedback and expectations
    feedback = mlflow.log_feedback(
        trace_id=ok_id,
        name="helpful",
        value=True,
        rationale="answers the question",
        source=AssessmentSource(source_type="HUMAN", source_id="ana"),
    )
    expectation = mlflow.log_expectation(trace_id=ok_id, name="answer", value={"text": "hello: 3"})
    got = client.get_trace(ok_id).info.assessments
    assert {a.name for a in got} == {"helpful", "answer"}
    fetched = mlflow.get_assessment(ok_id, feedback.assessment_id)
    assert fetched.value is True and fetched.rationale == "answers the question" and fetched.source.source_id == "ana"
    assert mlflow.get_assessment(ok_id, expectation.assessment_id).value == {"text": "hello: 3"}
    better = mlflow.override_feedback(
        trace_id=ok_id, assessment_id=feedback.assessment_id, value=False, rationale="on second thought"
    )
    assert mlflow.get_assessment(ok_id, feedback.assessment_id).valid is False
    assert better.overrides == feedback.assessment_id
    helpful = client.search_traces(locations=[exp.experiment_id], filter_string="feedback.helpful = 'false'")
    assert [t.info.trace_id for t in helpful] == [ok_id]
    mlflow.update_assessment(
        trace_id=ok_id,
        assessment_id=expectation.assessment_id,
        assessment=mlflow.entities.Expectation(name="answer", value={"text": "hi: 3"}),
    )
    assert mlflow.get_assessment(ok_id, expectation.assessment_id).value == {"text": "hi: 3"}
    mlflow.delete_assessment(ok_id, expectation.assessment_id)
    with pytest.raises(MlflowException, match="not found"):
        mlflow.get_assessment(ok_id, expectation.assessment_id)

    # SQL over spans and traces
    rows = httpx.post(
        f"{server.url}/api/v1/sql",
        json={
            "sql": "SELECT span_name, calls, errors FROM span_stats WHERE experiment_id = ? ORDER BY span_name",
            "params": [exp.experiment_id],
        },
        timeout=60,
    )
    assert rows.status_code == 200, rows.text
    assert rows.json()["rows"] == [["add", 2, 0], ["agent", 2, 1], ["retrieve", 2, 0]]

    # the UI's trace charts (QueryTraceMetrics)
    counts = httpx.post(
        f"{server.url}/ajax-api/3.0/mlflow/traces/metrics",
        json={
            "experiment_ids": [exp.experiment_id],
            "view_type": "TRACES",
            "metric_name": "trace_count",
            "aggregations": [{"aggregation_type": "COUNT"}],
            "dimensions": ["trace_status"],
        },
    ).json()["data_points"]
    assert {p["dimensions"]["trace_status"]: p["values"]["COUNT"] for p in counts} == {"OK": 1.0, "ERROR": 1.0}
    latency = httpx.post(
        f"{server.url}/ajax-api/3.0/mlflow/traces/metrics",
        json={
            "experiment_ids": [exp.experiment_id],
            "view_type": "SPANS",
            "metric_name": "span_count",
            "aggregations": [{"aggregation_type": "SUM"}],
            "dimensions": ["span_name"],
        },
    ).json()["data_points"]
    assert {p["dimensions"]["span_name"]: p["values"]["SUM"] for p in latency} == {"add": 2, "agent": 2, "retrieve": 2}

    # delete
    assert client.delete_traces(exp.experiment_id, trace_ids=[error_id]) == 1
    assert [t.info.trace_id for t in client.search_traces(locations=[exp.experiment_id])] == [ok_id]
    with pytest.raises(MlflowException, match="not found"):
        client.get_trace(error_id)


def test_plain_otlp_spans_make_a_trace(client: MlflowClient, server) -> None:  # type: ignore[no-untyped-def]
    """A trace sent by an OpenTelemetry exporter alone (no StartTraceV3) is recorded from its root span."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    exp_id = client.create_experiment(f"otlp-{uuid.uuid4().hex[:8]}")
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    trace_id = uuid.uuid4().bytes
    root = scope.spans.add(trace_id=trace_id, span_id=b"\x01" * 8, name="handler")
    root.start_time_unix_nano, root.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_250_000_000
    root.status.code = 2
    child = scope.spans.add(trace_id=trace_id, span_id=b"\x02" * 8, parent_span_id=b"\x01" * 8, name="db")
    child.start_time_unix_nano, child.end_time_unix_nano = 1_700_000_000_010_000_000, 1_700_000_000_020_000_000
    answer = httpx.post(
        f"{server.url}/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf", "x-mlflow-experiment-id": exp_id},
    )
    assert answer.status_code == 200, answer.text
    trace = client.get_trace("tr-" + trace_id.hex())
    assert trace.info.state.value == "ERROR" and trace.info.execution_duration == 250
    assert trace.info.request_time == 1_700_000_000_000
    assert sorted(s.name for s in trace.data.spans) == ["db", "handler"]

    bad = httpx.post(
        f"{server.url}/v1/traces",
        content=b"\xff\x00garbage",
        headers={"content-type": "application/x-protobuf", "x-mlflow-experiment-id": exp_id},
    )
    assert bad.status_code == 400 and "OTLP" in bad.text
    nowhere = httpx.post(
        f"{server.url}/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert nowhere.status_code == 400 and "x-mlflow-experiment-id" in nowhere.text


def test_a_large_otlp_request_of_many_traces_reads_back_trace_by_trace(client: MlflowClient, server) -> None:  # type: ignore[no-untyped-def]
    """One OTLP request of 2,000 spans from 400 traces (what a batch exporter sends): every trace is recorded
    from its root and reads back whole and alone, queued and after a commit (SQL commits first)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    exp_id = client.create_experiment(f"otlp-bulk-{uuid.uuid4().hex[:8]}")
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    trace_ids = [uuid.uuid4().bytes for _ in range(400)]
    base = 1_700_000_000_000_000_000
    for t, trace_id in enumerate(trace_ids):
        for s in reversed(range(5)):  # children first, as a batch exporter sends them
            span = scope.spans.add(trace_id=trace_id, span_id=(s + 1).to_bytes(8, "big"), name=f"t{t}-s{s}")
            if s:
                span.parent_span_id = (1).to_bytes(8, "big")
            span.start_time_unix_nano = base + t * 1_000_000 + s * 1000
            span.end_time_unix_nano = span.start_time_unix_nano + 500_000
            span.attributes.add(key="mlflow.spanType").value.string_value = '"LLM"' if s else '"CHAIN"'
            span.attributes.add(key="t").value.int_value = t
    answer = httpx.post(
        f"{server.url}/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf", "x-mlflow-experiment-id": exp_id},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text

    def check(t: int) -> None:
        trace = client.get_trace("tr-" + trace_ids[t].hex())
        assert [s.name for s in trace.data.spans] == [f"t{t}-s{s}" for s in range(5)]
        assert {s.attributes["t"] for s in trace.data.spans} == {t}
        assert trace.info.experiment_id == exp_id and trace.info.execution_duration == 0

    sample = [0, 1, 133, 398, 399]
    for t in sample:  # as queued
        check(t)
    rows = httpx.post(
        f"{server.url}/api/v1/sql",
        json={
            "sql": "SELECT count(*), count(DISTINCT trace_id) FROM spans WHERE experiment_id = ?",
            "params": [exp_id],
        },
        timeout=60,
    )
    assert rows.status_code == 200, rows.text
    assert rows.json()["rows"] == [[2000, 400]]  # SQL sees them: it commits what is queued first
    for t in sample:  # committed
        check(t)
    assert len(client.search_traces(locations=[exp_id], max_results=500)) == 400
