"""``mlflow.genai.evaluate`` through the unmodified mlflow client against a running ``lakeops serve``:
the run, its scorer metrics, the traces linked to it and the assessments on them, all read back with
the stock client. Scorers are ones that run offline: ``@scorer`` functions and MLflow's rule-based
built-ins (``RegexMatch``, ``ResponseLength``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.genai.scorers import RegexMatch, ResponseLength, scorer

pytestmark = pytest.mark.api


@pytest.fixture
def client(server, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(server.url)
    yield MlflowClient(server.url)
    mlflow.tracing.reset()


@scorer
def exact(outputs: str, expectations: dict[str, str]) -> bool:
    return outputs == expectations["answer"]


def shout(question: str) -> str:
    return f"Answer: {question.upper()}"


def _assessments(trace: mlflow.entities.Trace) -> dict[str, object]:
    return {a.name: a.value for a in trace.info.assessments}


def test_evaluate_records_run_traces_and_assessments(client: MlflowClient) -> None:
    exp = mlflow.set_experiment(f"eval-{uuid.uuid4().hex[:8]}")
    data = [
        {"inputs": {"question": "a"}, "expectations": {"answer": "Answer: A"}},
        {"inputs": {"question": "b"}, "expectations": {"answer": "Answer: Z"}},
    ]
    result = mlflow.genai.evaluate(data=data, predict_fn=shout, scorers=[exact, RegexMatch(pattern=r"^Answer:")])

    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.experiment_id == exp.experiment_id
    assert run.data.metrics == {"exact/mean": 0.5, "regex_match/mean": 1.0}
    assert run.data.tags["mlflow.runType"] == "genai_evaluate"

    traces = mlflow.search_traces(run_id=result.run_id, return_type="list")
    assert len(traces) == 2
    by_question = {t.data.spans[0].inputs["question"]: t for t in traces}
    assert set(by_question) == {"a", "b"}
    assert _assessments(by_question["a"]) == {"exact": True, "regex_match": "yes", "answer": "Answer: A"}
    assert _assessments(by_question["b"]) == {"exact": False, "regex_match": "yes", "answer": "Answer: Z"}
    for trace in traces:
        assert trace.info.request_metadata["mlflow.sourceRun"] == result.run_id
        feedback = next(a for a in trace.info.assessments if a.name == "exact")
        assert feedback.metadata["mlflow.assessment.sourceRunId"] == result.run_id
        assert feedback.span_id == trace.data.spans[0].span_id  # on the root span, as the harness sets it
    failing = client.search_traces(locations=[exp.experiment_id], filter_string="feedback.exact = 'false'")
    assert [t.info.trace_id for t in failing] == [by_question["b"].info.trace_id]
    assert set(result.result_df["exact/value"]) == {True, False}

    # Evaluating those traces again links them to the second run too; the first run keeps them (as in MLflow).
    again = mlflow.genai.evaluate(
        data=mlflow.search_traces(run_id=result.run_id), scorers=[ResponseLength(max_length=len("Answer: A"))]
    )
    assert client.get_run(again.run_id).data.metrics == {"response_length/mean": 1.0}
    first = {t.info.trace_id for t in mlflow.search_traces(run_id=result.run_id, return_type="list")}
    second = mlflow.search_traces(run_id=again.run_id, return_type="list")
    assert first == {t.info.trace_id for t in second} == {t.info.trace_id for t in traces}
    for trace in second:
        assert _assessments(trace)["response_length"] == "yes"
        assert trace.info.request_metadata["mlflow.sourceRun"] == result.run_id  # a link changes no metadata
    linked = client.search_traces(locations=[exp.experiment_id], filter_string=f"trace.run_id = '{again.run_id}'")
    assert len(linked) == 2
