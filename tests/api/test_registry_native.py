"""The native registry API (``/api/v1``) on a running ``lakeops serve``, and the quality gate over HTTP."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from lakes import make_settings

from api.main import create_app
from lakeops.registry import AliasGate

pytestmark = pytest.mark.api


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        yield client


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def test_models_versions_aliases_and_as_of(http: httpx.Client) -> None:
    name = f"native-{uuid.uuid4().hex[:8]}"
    r = http.post("/registered-models", json={"name": name, "description": "d", "tags": {"team": "x"}})
    assert r.status_code == 201 and r.json()["tags"] == {"team": "x"}
    dup = http.post("/registered-models", json={"name": name})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_exists"
    for i in range(3):
        r = http.post(
            f"/registered-models/{name}/versions", json={"source": f"s3://b/{name}/{i}", "tags": {"i": str(i)}}
        )
        assert r.status_code == 201 and r.json()["version"] == i + 1

    first = http.put(f"/registered-models/{name}/aliases/production", json={"version": 1}).json()
    assert first["aliases"] == ["production"]
    http.put(f"/registered-models/{name}/aliases/production", json={"version": 3})
    history = http.get(f"/registered-models/{name}/aliases/production/history").json()["changes"]
    assert [c["version"] for c in history] == [1, 3]
    then = http.get(f"/registered-models/{name}/aliases/production", params={"as_of": _iso(history[0]["changed_at"])})
    assert then.json()["version"] == 1
    assert http.get(f"/registered-models/{name}/aliases/production").json()["version"] == 3
    model_then = http.get(f"/registered-models/{name}", params={"as_of": _iso(history[0]["changed_at"])}).json()
    assert model_then["aliases"] == {"production": 1}
    versions = http.get(f"/registered-models/{name}/versions").json()["model_versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    found = http.get("/model-versions", params={"filter": f"name = '{name}' AND tags.i = '1'"}).json()
    assert [v["version"] for v in found["model_versions"]] == [2]
    staged = http.patch(f"/registered-models/{name}/versions/2", json={"stage": "Staging", "description": "qa"})
    assert (staged.json()["current_stage"], staged.json()["description"]) == ("Staging", "qa")
    assert http.get(f"/registered-models/{name}/versions/1/download-uri").json() == {"artifact_uri": f"s3://b/{name}/0"}

    for alias in ("v2", "latest"):
        bad = http.put(f"/registered-models/{name}/aliases/{alias}", json={"version": 1})
        assert bad.status_code == 400 and "Invalid alias" in bad.json()["error"]["message"]
    assert http.get(f"/registered-models/{name}/aliases/v2").status_code == 400
    missing = http.get(f"/registered-models/{name}/versions/9")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert http.get("/registered-models/no-such-model").status_code == 404
    assert http.get(f"/registered-models/{name}/aliases/ghost").status_code == 404
    assert [
        c["version"] for c in http.get(f"/registered-models/{name}/aliases/production/history").json()["changes"]
    ] == [1, 3]

    renamed = http.patch(f"/registered-models/{name}", json={"name": f"{name}-2"})
    assert renamed.json()["name"] == f"{name}-2" and renamed.json()["aliases"] == {"production": 3}
    assert http.delete(f"/registered-models/{name}-2").status_code == 204
    assert http.get(f"/registered-models/{name}-2").status_code == 404


def test_deployments_what_runs_where_and_which_apps(http: httpx.Client) -> None:
    name = f"deploy-{uuid.uuid4().hex[:8]}"
    env = f"prod-{uuid.uuid4().hex[:6]}"
    http.post("/registered-models", json={"name": name})
    for i in range(2):
        http.post(f"/registered-models/{name}/versions", json={"source": f"s3://b/{name}/{i}"})
    one = http.post(
        "/deployments",
        json={
            "model_name": name,
            "version": 1,
            "environment": env,
            "application_version": "app-1.0",
            "deployed_by": "ci",
        },
    )
    assert one.status_code == 201 and one.json()["deployed_by"] == "ci"
    two = http.post(
        "/deployments", json={"model_name": name, "version": 2, "environment": env, "application_version": "app-1.1"}
    ).json()
    running = http.get("/deployments", params={"environment": env}).json()["deployments"]
    assert [(d["model_name"], d["version"], d["since"]) for d in running] == [(name, 2, two["deployed_at"])]
    earlier = http.get("/deployments", params={"environment": env, "as_of": _iso(one.json()["deployed_at"])}).json()
    assert [d["version"] for d in earlier["deployments"]] == [1]
    apps = http.get(f"/registered-models/{name}/application-versions").json()["application_versions"]
    assert [(a["application_version"], a["versions"]) for a in apps] == [("app-1.0", [1]), ("app-1.1", [2])]
    only_v1 = http.get(f"/registered-models/{name}/application-versions", params={"version": 1}).json()
    assert [a["application_version"] for a in only_v1["application_versions"]] == ["app-1.0"]

    bad = http.post("/deployments", json={"model_name": name, "version": 5, "environment": env})
    assert bad.status_code == 404 and "version=5" in bad.json()["error"]["message"]
    assert len(http.get(f"/registered-models/{name}/deployments").json()["deployments"]) == 2
    retired = http.post("/deployments/retire", json={"model_name": name, "environment": env})
    assert retired.status_code == 201 and retired.json()["is_retired"]
    assert http.get("/deployments", params={"environment": env}).json()["deployments"] == []


class RefuseUnvalidated:
    """Our AliasGate protocol: only versions from runs in ``validated`` may go to production."""

    def __init__(self) -> None:
        self.validated: set[str] = set()

    def check_model_version(self, *, source_run_id: str | None, model_id: str | None) -> list[str]:
        if source_run_id in self.validated:
            return []
        return [f"training data of run {source_run_id} (model {model_id}) was never validated"]


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[httpx.Client, RefuseUnvalidated]]:
    """The app with our gate, served by uvicorn in a thread (the gate lives in this process)."""
    gate = RefuseUnvalidated()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(tmp_path, gate), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, gate
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def _app(home: Path, gate: AliasGate) -> FastAPI:
    return create_app(make_settings("file", home, None), alias_gate=gate)


def test_gate_over_http_native_and_mlflow(gated: tuple[httpx.Client, RefuseUnvalidated]) -> None:
    c, gate = gated
    run = c.post("/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
    c.post("/api/v1/registered-models", json={"name": "gm"})
    c.post("/api/v1/registered-models/gm/versions", json={"source": "s3://b/gm", "run_id": run})

    native = c.put("/api/v1/registered-models/gm/aliases/production", json={"version": 1})
    assert native.status_code == 422
    assert native.json()["error"]["code"] == "data_quality"
    assert native.json()["error"]["details"]["reasons"] == [
        f"training data of run {run} (model None) was never validated"
    ]
    ml = c.post("/api/2.0/mlflow/registered-models/alias", json={"name": "gm", "alias": "production", "version": "1"})
    assert ml.status_code == 400 and ml.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "was never validated" in ml.json()["message"]
    assert c.get("/api/v1/registered-models/gm").json()["aliases"] == {}

    no_reason = c.put("/api/v1/registered-models/gm/aliases/production", json={"version": 1, "force": True})
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.json()["error"]["message"]
    forced = c.put(
        "/api/v1/registered-models/gm/aliases/production",
        json={"version": 1, "force": True, "reason": "approved by risk board"},
    )
    assert forced.status_code == 200
    change = c.get("/api/v1/registered-models/gm/aliases/production/history").json()["changes"][-1]
    assert (change["is_forced"], change["force_reason"]) == (True, "approved by risk board")

    gate.validated.add(run)
    c.delete("/api/v1/registered-models/gm/aliases/production")
    ok = c.post("/api/2.0/mlflow/registered-models/alias", json={"name": "gm", "alias": "production", "version": "1"})
    assert ok.status_code == 200
    change = c.get("/api/v1/registered-models/gm/aliases/production/history").json()["changes"][-1]
    assert (change["version"], change["is_forced"]) == (1, False)
