"""The native API (/api/v1) and bad input on both protocols, over real HTTP."""

from __future__ import annotations

import json
import math
import uuid

import httpx
import pyarrow as pa
import pytest

pytestmark = pytest.mark.api

ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture
def http(server) -> httpx.Client:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_native_resources_and_arrow(http: httpx.Client) -> None:
    r = http.post("/api/v1/experiments", json={"name": f"n-{uuid.uuid4().hex[:8]}", "tags": {"team": "x"}})
    assert r.status_code == 201, r.text
    exp = r.json()
    assert http.post("/api/v1/experiments", json={"name": exp["name"]}).status_code == 409
    r = http.post(f"/api/v1/experiments/{exp['experiment_id']}/runs", json={"run_name": "a", "tags": {"k": "v"}})
    assert r.status_code == 201
    run_id = r.json()["info"]["run_id"]
    r = http.post(
        f"/api/v1/runs/{run_id}/batch",
        json={"params": {"lr": "0.1"}, "metrics": [{"key": "loss", "value": 0.5, "timestamp": 1, "step": 0}]},
    )
    assert r.status_code == 200, r.text
    points = pa.table(
        {
            "run_id": [run_id] * 1000,
            "key": ["loss"] * 1000,
            "value": [float(i) for i in range(1000)],
            "timestamp": list(range(1000)),
            "step": list(range(1, 1001)),
        }
    )
    r = http.post("/api/v1/metrics/ingest", content=_arrow(points), headers={"content-type": ARROW})
    assert r.json() == {"ingested": 1000}
    ndjson = "\n".join(
        json.dumps({"run_id": run_id, "key": "acc", "value": 0.9, "timestamp": 5, "step": 1}) for _ in range(3)
    )
    r = http.post("/api/v1/metrics/ingest", content=ndjson, headers={"content-type": "application/x-ndjson"})
    assert r.json() == {"ingested": 3}
    r = http.get(f"/api/v1/runs/{run_id}/metrics/loss/history", headers={"accept": ARROW})
    assert r.headers["content-type"] == ARROW
    history = pa.ipc.open_stream(r.content).read_all()
    assert history.num_rows == 1001 and history.column("step").to_pylist() == list(range(1001))
    page = http.get(f"/api/v1/runs/{run_id}/metrics/loss/history", params={"max_results": 10}).json()
    assert len(page["metrics"]) == 10 and page["next_page_token"]
    r = http.post("/api/v1/runs/search", json={"experiment_ids": [exp["experiment_id"]], "filter": "params.lr = '0.1'"})
    assert [x["info"]["run_id"] for x in r.json()["runs"]] == [run_id]
    got = http.get(f"/api/v1/runs/{run_id}").json()
    assert got["metrics"]["loss"]["value"] == 999.0 and got["params"] == {"lr": "0.1"}
    assert (
        http.patch(f"/api/v1/runs/{run_id}", json={"status": "FINISHED", "end_time": 10}).json()["info"]["status"]
        == "FINISHED"
    )
    r = http.post(f"/api/v1/runs/{run_id}/batch", json={"metrics": [{"key": "n", "value": "NaN"}]})
    assert r.status_code == 200
    assert http.get(f"/api/v1/runs/{run_id}").json()["metrics"]["n"]["value"] == "NaN"
    assert math.isnan(float("NaN"))


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        pytest.param(
            "post",
            "/api/2.0/mlflow/runs/log-batch",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "INVALID_PARAMETER_VALUE",
            id="mlflow-malformed-json",
        ),
        pytest.param(
            "post",
            "/api/2.0/mlflow/runs/log-metric",
            {"json": {"run_id": "RUN", "key": "m", "value": "high", "timestamp": 1}},
            400,
            "INVALID_PARAMETER_VALUE",
            id="mlflow-text-metric",
        ),
        pytest.param(
            "post",
            "/api/2.0/mlflow/runs/log-batch",
            {"json": {"run_id": "RUN", "metrics": [{"key": "m", "value": 1, "timestamp": 1}] * 1001}},
            400,
            "INVALID_PARAMETER_VALUE",
            id="mlflow-oversized-batch",
        ),
        pytest.param(
            "post",
            "/api/2.0/mlflow/runs/log-batch",
            {"json": {"run_id": "RUN", "params": [{"key": "p", "value": "v"}] * 101}},
            400,
            "INVALID_PARAMETER_VALUE",
            id="mlflow-too-many-params",
        ),
        pytest.param(
            "post",
            "/api/2.0/mlflow/runs/log-parameter",
            {"json": {"run_id": "RUN", "key": "k" * 251, "value": "v"}},
            400,
            "INVALID_PARAMETER_VALUE",
            id="mlflow-long-key",
        ),
        pytest.param(
            "get",
            "/api/2.0/mlflow/runs/get",
            {"params": {"run_id": "nope"}},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            id="mlflow-unknown-run",
        ),
        pytest.param(
            "post",
            "/api/2.0/mlflow/runs/search",
            {"json": {"experiment_ids": ["0"], "filter": "metrics.a >"}},
            400,
            "INVALID_PARAMETER_VALUE",
            id="mlflow-bad-filter",
        ),
        pytest.param(
            "post",
            "/api/v1/runs/RUN/batch",
            {"json": {"metrics": [{"key": "m", "value": [1]}]}},
            422,
            "invalid_request",
            id="native-wrong-type",
        ),
        pytest.param(
            "post",
            "/api/v1/runs/RUN/batch",
            {"json": {"params": {"lr": "9"}}},
            400,
            "invalid_argument",
            id="native-param-change",
        ),
        pytest.param(
            "post",
            "/api/v1/metrics/ingest",
            {"content": b"garbage", "headers": {"content-type": ARROW}},
            400,
            "invalid_argument",
            id="native-bad-arrow",
        ),
        pytest.param(
            "post",
            "/api/v1/metrics/ingest",
            {"content": b"{}", "headers": {"content-type": "text/csv"}},
            400,
            "invalid_argument",
            id="native-bad-type",
        ),
        pytest.param("get", "/api/v1/runs/nope", {}, 404, "not_found", id="native-unknown-run"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_stores_nothing(
    http: httpx.Client, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:  # type: ignore[type-arg]
    exp = http.post("/api/v1/experiments", json={"name": f"bad-{uuid.uuid4().hex[:8]}"}).json()["experiment_id"]
    run_id = http.post(f"/api/v1/experiments/{exp}/runs", json={}).json()["info"]["run_id"]
    http.post(
        f"/api/v1/runs/{run_id}/batch",
        json={"params": {"lr": "0.1"}, "metrics": [{"key": "m", "value": 1.0, "timestamp": 1}]},
    )
    before = http.get(f"/api/v1/runs/{run_id}").json()
    path = path.replace("RUN", run_id)
    if "json" in kwargs:
        kwargs = {**kwargs, "json": json.loads(json.dumps(kwargs["json"]).replace("RUN", run_id))}
    r = getattr(http, method)(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert (body.get("error_code") or body["error"]["code"]) == code
    assert http.get(f"/api/v1/runs/{run_id}").json() == before
