"""``POST /api/v1/sql`` and saved queries against a real ``lakeops serve`` on file:// and s3://."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pyarrow as pa
import pytest

pytestmark = pytest.mark.api

ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture
def http(sql_server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=sql_server.url, timeout=60) as client:
        yield client


def _experiment_with_runs(http: httpx.Client, runs: int = 3) -> tuple[str, list[str]]:
    name = f"sql-{uuid.uuid4().hex[:8]}"
    exp = http.post("/api/v1/experiments", json={"name": name}).json()["experiment_id"]
    ids = []
    for i in range(runs):
        run = http.post(f"/api/v1/experiments/{exp}/runs", json={"run_name": f"r{i}"}).json()
        rid = run["run_id"] if "run_id" in run else run["info"]["run_id"]
        ids.append(rid)
        batch = {
            "params": {"lr": str(0.1 * (i + 1)), "depth": str(i)},
            "metrics": [{"key": "loss", "value": 1.0 / (i + 1), "timestamp": 1000 + s, "step": s} for s in range(3)],
        }
        assert http.post(f"/api/v1/runs/{rid}/batch", json=batch).status_code == 200
    return exp, ids


def test_sql_answers_json_right_after_the_writes(http: httpx.Client) -> None:
    exp, ids = _experiment_with_runs(http)
    r = http.post(
        "/api/v1/sql",
        json={
            "sql": "SELECT run_id, run_name, started_at FROM runs WHERE experiment_id = ? ORDER BY run_name",
            "params": [exp],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == ["run_id", "run_name", "started_at"]
    assert [row[1] for row in body["rows"]] == ["r0", "r1", "r2"]
    assert {row[0] for row in body["rows"]} == set(ids)
    assert isinstance(body["rows"][0][2], str) and body["rows"][0][2].startswith("20")
    assert body["truncated"] is False

    wide = http.post(
        "/api/v1/sql",
        json={
            "sql": 'SELECT run_name, "params.lr", "metrics.loss" FROM runs_wide(?) ORDER BY "metrics.loss"',
            "params": [exp],
        },
    ).json()
    assert wide["rows"] == [["r2", "0.30000000000000004", 1 / 3], ["r1", "0.2", 0.5], ["r0", "0.1", 1.0]]


def test_sql_answers_arrow_ipc_and_marks_truncation(http: httpx.Client) -> None:
    _experiment_with_runs(http, runs=2)
    r = http.post(
        "/api/v1/sql",
        json={"sql": "SELECT * FROM metrics ORDER BY run_id, step", "max_rows": 2},
        headers={"accept": ARROW},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ARROW
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.num_rows == 2
    assert table.schema.field("value").type == pa.float64()
    assert r.headers["x-lakeops-truncated"] == "true"
    body = http.post("/api/v1/sql", json={"sql": "SELECT * FROM range(5)", "max_rows": 3}).json()
    assert body["truncated"] is True and len(body["rows"]) == 3


def test_as_of_before_the_lake_existed_is_a_clear_400(http: httpx.Client) -> None:
    http.post("/api/v1/experiments", json={"name": f"as-of-{uuid.uuid4().hex[:6]}"})
    old = http.post("/api/v1/sql", json={"sql": "SELECT count(*) FROM runs", "as_of": "2001-01-01T00:00:00Z"})
    assert old.status_code == 400
    assert "is before the lake's first commit" in old.json()["error"]["message"]
    bad = http.post("/api/v1/sql", json={"sql": "SELECT 1", "as_of": "last tuesday"})
    assert bad.status_code == 400
    assert "as_of must be an ISO-8601 time" in bad.json()["error"]["message"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        pytest.param("ATTACH ':memory:' AS x", "ATTACH is not allowed", id="attach"),
        pytest.param("COPY runs TO '/tmp/x.csv'", "COPY is not allowed", id="copy"),
        pytest.param("INSTALL httpfs", "INSTALL and LOAD are not allowed", id="install"),
        pytest.param("SET enable_external_access = true", "SET, RESET and USE are not allowed", id="set"),
        pytest.param("PRAGMA version", "PRAGMA is not allowed", id="pragma"),
        pytest.param("CREATE VIEW v AS SELECT 1", "CREATE is not allowed", id="create"),
        pytest.param("SELECT * FROM read_text('/etc/passwd')", "SQL refused", id="local-file"),
        pytest.param("SELECT * FROM read_csv('http://127.0.0.1:1/x.csv')", "SQL refused", id="url"),
        pytest.param("SELECT * FROM nothing_here", "SQL error", id="unknown-table"),
        pytest.param("SELECT count(*) FROM range(100000000000) a, range(1000) b", "ran longer than 5s", id="timeout"),
    ],
)
def test_sql_refusals_are_400_with_the_native_error_body(http: httpx.Client, sql: str, message: str) -> None:
    r = http.post("/api/v1/sql", json={"sql": sql})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_argument"
    assert message in error["message"]


def test_sql_body_is_validated(http: httpx.Client) -> None:
    assert http.post("/api/v1/sql", json={"query": "SELECT 1"}).status_code == 422
    r = http.post("/api/v1/sql", json={"sql": "SELECT 1", "max_rows": -1})
    assert r.status_code == 400 and "max_rows must be a positive integer" in r.json()["error"]["message"]


def test_saved_queries_round_trip(http: httpx.Client) -> None:
    exp, _ids = _experiment_with_runs(http)
    name = f"leaderboard-{uuid.uuid4().hex[:6]}"
    created = http.post(
        "/api/v1/saved-queries",
        json={
            "name": name,
            "sql": 'SELECT run_name, "metrics.loss" FROM runs_wide(?) ORDER BY "metrics.loss" LIMIT 2',
            "description": "best two runs",
            "author": "ana",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["author"] == "ana"
    assert http.post("/api/v1/saved-queries", json={"name": name, "sql": "SELECT 1"}).status_code == 409
    listed = http.get("/api/v1/saved-queries").json()["saved_queries"]
    assert name in [q["name"] for q in listed]
    ran = http.post(f"/api/v1/saved-queries/{name}/run", json={"params": [exp]}).json()
    assert ran["rows"] == [["r2", 1 / 3], ["r1", 0.5]]
    in_sql = http.post(
        "/api/v1/sql", json={"sql": "SELECT description, author FROM saved_queries WHERE name = ?", "params": [name]}
    )
    assert in_sql.json()["rows"] == [["best two runs", "ana"]]
    updated = http.put(f"/api/v1/saved-queries/{name}", json={"sql": "SELECT 42 AS answer", "description": "v2"})
    assert updated.status_code == 200 and updated.json()["author"] == "ana"
    assert http.post(f"/api/v1/saved-queries/{name}/run", json={}).json()["rows"] == [[42]]
    activity = http.post(
        "/api/v1/sql",
        json={
            "sql": "SELECT operation FROM activity WHERE entity_type = 'saved_query' AND entity_id = ? ORDER BY changed_at",
            "params": [name],
        },
    ).json()
    assert [r[0] for r in activity["rows"]] == ["create", "update"]
    assert http.delete(f"/api/v1/saved-queries/{name}").status_code == 204
    missing = http.get(f"/api/v1/saved-queries/{name}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert http.post(f"/api/v1/saved-queries/{name}/run", json={}).status_code == 404


def test_saved_queries_refuse_what_the_sandbox_refuses(http: httpx.Client) -> None:
    r = http.post("/api/v1/saved-queries", json={"name": "evil", "sql": "COPY runs TO '/tmp/x'"})
    assert r.status_code == 400 and "COPY is not allowed" in r.json()["error"]["message"]
    r = http.post("/api/v1/saved-queries", json={"name": "bad name!", "sql": "SELECT 1"})
    assert r.status_code == 400 and "Invalid saved query name" in r.json()["error"]["message"]
    names = [q["name"] for q in http.get("/api/v1/saved-queries").json()["saved_queries"]]
    assert "evil" not in names and "bad name!" not in names
