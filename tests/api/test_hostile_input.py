"""Hostile input against a real ``lakeops serve``: every case a clean 4xx, nothing stored, the service up.

One server per module (file:// lake) with small body and SQL memory limits, so the cases stay cheap.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pyarrow as pa
import pytest
from conftest import Server
from lakes import make_settings
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.api

JSON_LIMIT = 1_000_000
DATAFRAME_LIMIT = 2_000_000
ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("hostile")
    srv = Server(
        make_settings("file", home, None),
        home / "serve.log",
        extra_env={
            "LAKEOPS_LIMITS__JSON_BODY_BYTES": str(JSON_LIMIT),
            "LAKEOPS_LIMITS__DATAFRAME_BYTES": str(DATAFRAME_LIMIT),
            "LAKEOPS_SQL__MEMORY_LIMIT": "300MB",
            "LAKEOPS_HTTP__CORS_ORIGINS": '["https://notebooks.example.com"]',
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def run_id(http: httpx.Client) -> str:
    exp = http.post("/api/v1/experiments", json={"name": f"hostile-{uuid.uuid4().hex[:8]}"}).json()
    run: str = http.post(f"/api/v1/experiments/{exp['experiment_id']}/runs", json={}).json()["info"]["run_id"]
    return run


def _mlflow_error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE", body
    return str(body["message"])


def _native_error(response: httpx.Response) -> str:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] in ("invalid_argument", "invalid_request", "too_large")
    return str(body["error"]["message"])


def _history(http: httpx.Client, run_id: str, key: str) -> list[dict[str, object]]:
    response = http.get("/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": key})
    assert response.status_code == 200, response.text
    return list(response.json().get("metrics", []))


# -- timestamps and steps beyond 64 bits (or beyond what a datetime can hold) ---------------------

OUT_OF_RANGE = [
    pytest.param({"timestamp": 2**63}, id="timestamp-2^63"),
    pytest.param({"timestamp": -(2**63) - 1}, id="timestamp--2^63-1"),
    pytest.param({"timestamp": 2**63 - 1}, id="timestamp-int64-max"),
    pytest.param({"timestamp": 1e30}, id="timestamp-1e30"),
    pytest.param({"step": 2**63}, id="step-2^63"),
    pytest.param({"step": -(2**63) - 1}, id="step--2^63-1"),
]


@pytest.mark.parametrize("bad", OUT_OF_RANGE)
def test_mlflow_log_metric_out_of_range(http: httpx.Client, run_id: str, bad: dict[str, object]) -> None:
    key = f"m{uuid.uuid4().hex[:6]}"
    body = {"run_id": run_id, "key": key, "value": 1.0, "timestamp": 1, "step": 0, **bad}
    message = _mlflow_error(http.post("/api/2.0/mlflow/runs/log-metric", json=body))
    assert "timestamp" in message or "step" in message
    batch = {"run_id": run_id, "metrics": [{"key": key, "value": 1.0, "timestamp": 1, "step": 0, **bad}]}
    _mlflow_error(http.post("/api/2.0/mlflow/runs/log-batch", json=batch))
    native = {"metrics": [{"key": key, "value": 1.0, "timestamp": 1, "step": 0, **bad}]}
    _native_error(http.post(f"/api/v1/runs/{run_id}/batch", json=native))
    assert _history(http, run_id, key) == []


def test_stock_client_out_of_range_timestamp(server: Server, run_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(server.url)
    with pytest.raises(MlflowException, match="timestamp") as caught:
        client.log_metric(run_id, "stock", 1.0, timestamp=2**63 - 1)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    client.log_metric(run_id, "stock", 1.0, timestamp=1_700_000_000_000, step=2**63 - 1)  # the edges still fit
    assert [m.step for m in client.get_metric_history(run_id, "stock")] == [2**63 - 1]


def test_ingest_out_of_range_timestamp(http: httpx.Client, run_id: str) -> None:
    line = f'{{"run_id": "{run_id}", "key": "ingested", "value": 1.0, "timestamp": {2**62}}}\n'
    response = http.post("/api/v1/metrics/ingest", content=line, headers={"content-type": "application/x-ndjson"})
    assert "timestamp" in _native_error(response)
    assert _history(http, run_id, "ingested") == []


def test_run_times_out_of_range(http: httpx.Client, run_id: str) -> None:
    _native_error(http.patch(f"/api/v1/runs/{run_id}", json={"end_time": 2**63 - 1}))
    assert http.get(f"/api/v1/runs/{run_id}").json()["info"]["end_time"] is None


# -- lone surrogates -------------------------------------------------------------------------------


def test_lone_surrogates_refused(http: httpx.Client, run_id: str) -> None:
    # JSON can spell a lone surrogate; Python's json module accepts it, no Parquet column can hold it.
    name = f"surrogate-{uuid.uuid4().hex[:6]}"
    raw = '{"name": "' + name + '\\ud800"}'
    headers = {"content-type": "application/json"}
    assert "Unicode" in _mlflow_error(http.post("/api/2.0/mlflow/experiments/create", content=raw, headers=headers))
    assert "Unicode" in _native_error(http.post("/api/v1/experiments", content=raw, headers=headers))
    param = '{"run_id": "' + run_id + '", "key": "p", "value": "x\\udc00y"}'
    _mlflow_error(http.post("/api/2.0/mlflow/runs/log-parameter", content=param, headers=headers))
    names = [e["name"] for e in http.get("/api/v1/experiments").json()["experiments"]]
    assert not any(n.startswith(name) for n in names)
    assert "p" not in http.get(f"/api/v1/runs/{run_id}").json()["params"]
    # A proper pair (an emoji, as json.dumps escapes it) is text like any other.
    pair = '{"name": "' + name + '\\ud83d\\ude00"}'
    created = http.post("/api/v1/experiments", content=pair, headers=headers)
    assert created.status_code == 201 and created.json()["name"] == f"{name}\U0001f600"


# -- body sizes, counted while the body streams in ------------------------------------------------


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"\0" * min(size, total - sent)
        sent += size


def test_dataframe_upload_over_limit_chunked(http: httpx.Client) -> None:
    # No Content-Length: the limit is enforced on the bytes as they arrive, not after reading them all.
    name = f"big-{uuid.uuid4().hex[:6]}"
    try:
        response = http.post(
            f"/api/v1/datasets/{name}/dataframe", content=_chunks(8 * DATAFRAME_LIMIT), headers={"content-type": ARROW}
        )
    except httpx.WriteError:  # the server may answer and close while the client still sends
        response = None
    if response is not None:
        assert response.status_code == 413 and str(DATAFRAME_LIMIT) in _native_error(response)
    assert name not in http.get("/api/v1/datasets").json()["datasets"]
    # A table under the limit is stored.
    table = pa.table({"x": list(range(1000))})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    ok = http.post(f"/api/v1/datasets/{name}/dataframe", content=sink.getvalue(), headers={"content-type": ARROW})
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    "path", [pytest.param("/api/v1/datasets", id="datasets"), pytest.param("/api/v1/datasets/x/suites/s", id="suite")]
)
def test_dataset_json_routes_under_json_limit(http: httpx.Client, path: str) -> None:
    body = b'{"name": "' + b"a" * (2 * JSON_LIMIT) + b'"}'
    method = "PUT" if "suites" in path else "POST"
    response = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and str(JSON_LIMIT) in _native_error(response)
    chunked = http.request(method, path, content=_chunks(2 * JSON_LIMIT), headers={"content-type": "application/json"})
    assert chunked.status_code == 413, chunked.text


def test_native_batch_point_cap(http: httpx.Client, run_id: str) -> None:
    points = [{"key": "capped", "value": float(i), "timestamp": 1, "step": i} for i in range(1001)]
    message = _native_error(http.post(f"/api/v1/runs/{run_id}/batch", json={"metrics": points}))
    assert "1000" in message and "/metrics/ingest" in message
    assert _history(http, run_id, "capped") == []
    assert http.post(f"/api/v1/runs/{run_id}/batch", json={"metrics": points[:1000]}).status_code == 200


# -- SQL memory cap -------------------------------------------------------------------------------


def test_sql_memory_cap(http: httpx.Client) -> None:
    response = http.post("/api/v1/sql", json={"sql": "SELECT len(list(range)) AS n FROM range(400000000)"})
    assert response.status_code == 400
    assert "memory" in response.json()["error"]["message"] and "300MB" in response.json()["error"]["message"]
    again = http.post("/api/v1/sql", json={"sql": "SELECT 42 AS answer"})
    assert again.status_code == 200 and again.json()["rows"] == [[42]]


# -- the local artifact store does not follow symbolic links out of its root -----------------------


def test_artifact_store_refuses_symlinks_out_of_root(server: Server, http: httpx.Client, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = server.settings.home / "artifacts"
    data = f"planted {uuid.uuid4()}".encode()
    digest = hashlib.sha256(data).hexdigest()
    blobs = root / ".blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest[:2]).symlink_to(outside)
    try:
        put = http.put("/api/v1/artifacts/evil/file.txt", content=data)
        assert put.status_code == 403 and "outside" in put.json()["error"]["message"]
        mlflow_put = http.put("/api/2.0/mlflow-artifacts/artifacts/evil/file2.txt", content=data)
        assert mlflow_put.status_code == 403 and mlflow_put.json()["error_code"] == "PERMISSION_DENIED"
        assert list(outside.iterdir()) == []
        assert http.get("/api/v1/artifacts/evil/file.txt").status_code == 404
    finally:
        (blobs / digest[:2]).unlink()
    # A stored blob replaced by a link to a file elsewhere is not read through.
    ok = http.put("/api/v1/artifacts/evil/ok.txt", content=data)
    assert ok.status_code == 201, ok.text
    secret = outside / "secret"
    secret.write_bytes(b"not yours")
    blob = blobs / digest[:2] / digest
    blob.unlink()
    blob.symlink_to(secret)
    got = http.get("/api/v1/artifacts/evil/ok.txt")
    assert got.status_code == 403 and b"not yours" not in got.content
    assert http.get("/health").status_code == 200


def test_mlflow_fluent_still_works(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guards do not get in the way of ordinary traffic from the stock client."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment(f"ordinary-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run() as run:
        mlflow.log_param("ünïcode", "välue ☃ \U0001f600")
        mlflow.log_metric("loss", 0.5, step=3)
    got = MlflowClient(server.url).get_run(run.info.run_id)
    assert got.data.params == {"ünïcode": "välue ☃ \U0001f600"} and got.data.metrics == {"loss": 0.5}


def test_cors_only_for_configured_origins(http: httpx.Client) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    allowed = http.options("/api/v1/experiments", headers={"origin": "https://notebooks.example.com", **preflight})
    assert allowed.headers.get("access-control-allow-origin") == "https://notebooks.example.com"
    other = http.get("/api/v1/experiments", headers={"origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
