"""Permissions per experiment and registered model against a real ``lakeops serve`` with auth on.

The matrix is generated from the application's route table: every route that checks a level on
a resource is called as anonymous, as a user without permission, with READ, EDIT and MANAGE, and
as an admin, each on resources of its own; the expected status follows from the route's declared
level (``api/permissions.py``). A route without a declared permission fails
``test_every_route_declares_a_permission``. The server's default level is NO_PERMISSIONS, so
grants are what open things up.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import pytest
from conftest import Server
from lakes import make_settings
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

from api.main import create_app
from api.permissions import PARSED, RULES, app_endpoints
from lakeops.services.auth import LEVELS

pytestmark = pytest.mark.api

ADMIN = ("admin", "admin-secret-0123")
PASSWORD = "user-password-0123"
IDENTITIES = ("nobody", "none", "read", "edit", "manage", "admin")
RANK = {"none": 0, "read": 1, "edit": 3, "manage": 4, "admin": 9}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("permissions")
    srv = Server(
        make_settings("file", home, None),
        home / "serve.log",
        extra_env={
            "LAKEOPS_AUTH__ENABLED": "true",
            "LAKEOPS_AUTH__ADMIN_PASSWORD": ADMIN[1],
            "LAKEOPS_AUTH__DEFAULT_PERMISSION": "NO_PERMISSIONS",
        },
    )
    yield srv
    srv.stop()


NAMES: dict[str, str] = {}  # identity -> username


@pytest.fixture(scope="module")
def users(server: Server) -> Iterator[dict[str, httpx.Client]]:
    """An HTTP client per identity; ``none``..``manage`` are plain users, granted per resource."""
    suffix = uuid.uuid4().hex[:6]
    clients = {"nobody": httpx.Client(base_url=server.url, timeout=30)}
    admin = httpx.Client(base_url=server.url, timeout=30, auth=ADMIN)
    clients["admin"] = admin
    for who in ("none", "read", "edit", "manage"):
        NAMES[who] = f"{who}-{suffix}"
        created = admin.post("/api/2.0/mlflow/users/create", json={"username": NAMES[who], "password": PASSWORD})
        assert created.status_code == 200, created.text
        clients[who] = httpx.Client(base_url=server.url, timeout=30, auth=(NAMES[who], PASSWORD))
    yield clients
    for client in clients.values():
        client.close()


def test_every_route_declares_a_permission() -> None:
    endpoints = ENDPOINTS
    undeclared = sorted(set(endpoints) - set(RULES))
    assert not undeclared, f"routes without a declared permission in api/permissions.py: {undeclared}"
    assert not sorted(set(RULES) - set(endpoints)), "rules for routes that no longer exist"


# -- the generated matrix ---------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)(?::path)?\}")
_CHECKED = sorted(name for name, rule in PARSED.items() if rule.kind not in ("open", "handler", "all"))


ENDPOINTS = app_endpoints(create_app())


def _route(name: str) -> tuple[str, str]:
    """(method, path template) of an endpoint, preferring the documented /api prefix."""
    ways = sorted(ENDPOINTS[name], key=lambda w: ("/ajax-api" in w, len(w)))
    method, path = ways[0].split(" ", 1)
    return method.split(",")[0], path


ROUTES = {name: _route(name) for name in _CHECKED}


class Resources:
    """Fresh resources for one route: an experiment with a run, a logged model, a registered model."""

    def __init__(self, admin: httpx.Client) -> None:
        tag = uuid.uuid4().hex[:8]
        self.experiment_name = f"matrix-{tag}"
        exp = admin.post("/api/2.0/mlflow/experiments/create", json={"name": self.experiment_name})
        self.experiment_id = exp.json()["experiment_id"]
        run = admin.post("/api/2.0/mlflow/runs/create", json={"experiment_id": self.experiment_id})
        self.run_id = run.json()["run"]["info"]["run_id"]
        logged = admin.post("/api/2.0/mlflow/logged-models", json={"experiment_id": self.experiment_id, "name": "m"})
        self.model_id = logged.json()["model"]["info"]["model_id"]
        self.model = f"model-{tag}"
        admin.post("/api/2.0/mlflow/registered-models/create", json={"name": self.model})
        admin.post(
            "/api/2.0/mlflow/model-versions/create",
            json={"name": self.model, "source": f"runs:/{self.run_id}/model", "run_id": self.run_id},
        )
        self.trace_id = f"tr-{uuid.uuid4().hex}"
        info = {
            "trace_id": self.trace_id,
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": self.experiment_id}},
            "request_time": "2026-01-02T03:04:05.678Z",
            "state": "OK",
        }
        started = admin.post("/api/2.0/mlflow/traces", json={"trace": {"trace_info": info}})
        assert started.status_code == 200, started.text
        self.artifact = f"{self.experiment_id}/{self.run_id}/artifacts/file.txt"
        admin.put(f"/api/v1/artifacts/{self.artifact}", content=b"bytes")
        self.workspace = f"matrix-{tag}"
        workspace = admin.post("/api/3.0/mlflow/workspaces", json={"name": self.workspace})
        assert workspace.status_code == 201, workspace.text
        for who, level in (("read", "READ"), ("edit", "EDIT"), ("manage", "MANAGE")):  # "none" is no member
            granted = admin.post(
                "/api/3.0/mlflow/users/permissions/grant",
                json={
                    "username": NAMES[who],
                    "resource_type": "workspace",
                    "resource_id": self.workspace,
                    "permission": level,
                },
            )
            assert granted.status_code == 200, granted.text
        for who, level in (("none", "NO_PERMISSIONS"), ("read", "READ"), ("edit", "EDIT"), ("manage", "MANAGE")):
            username = NAMES[who]
            for kind, rid in (("experiment", self.experiment_id), ("registered_model", self.model)):
                granted = admin.post(
                    "/api/3.0/mlflow/users/permissions/grant",
                    json={"username": username, "resource_type": kind, "resource_id": rid, "permission": level},
                )
                assert granted.status_code == 200, granted.text

    def values(self, kind: str) -> dict[str, Any]:
        """A value for every field name a rule may read."""
        return {
            "experiment_id": self.experiment_id,
            "experiment_ids": [self.experiment_id],
            "experiment_name": self.experiment_name,
            "run_id": self.run_id,
            "run_uuid": self.run_id,
            "run_ids": [self.run_id],
            "model_id": self.model_id,
            "name": self.experiment_name if kind == "experiment_name" else self.model,
            "artifact_path": self.artifact,
            "path": self.artifact,
            "prefix": f"{self.experiment_id}/{self.run_id}",
            "target": f"run:{self.run_id}",
            "key": "loss",
            "version": "1",
            "alias": "champion",
            "step": "1",
            "trace_id": self.trace_id,
            "trace_ids": [self.trace_id],
            "assessment_id": "a-0",
            "upload_id": "0" * 32,
            "comment_id": "0" * 32,
            "version_id": "0" * 32,
            "tag_key": "k",
            "webhook_id": "wh-0",
            "workspace_name": self.workspace,
        }


def _call(client: httpx.Client, method: str, template: str, values: dict[str, Any], fields: tuple[str, ...]) -> int:
    path = _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    params = {f: values[f] for f in fields if f"{{{f}" not in template}
    body = None if method in ("GET", "HEAD") or template.endswith("/dataframe") else params
    headers = {"content-type": "application/json"} if body is not None else {}
    content = None if body is None else json.dumps(body).encode()
    return client.request(method, path, params=params, content=content, headers=headers).status_code


@pytest.fixture(scope="module")
def shared(users: dict[str, httpx.Client]) -> Resources:
    """Resources for the routes that read or change without deleting (MANAGE routes get their own)."""
    return Resources(users["admin"])


@pytest.mark.parametrize("endpoint", _CHECKED)
def test_permission_matrix(endpoint: str, users: dict[str, httpx.Client], shared: Resources) -> None:
    rule = PARSED[endpoint]
    method, template = ROUTES[endpoint]
    resources = Resources(users["admin"]) if rule.kind == "admin" or rule.level == "MANAGE" else shared
    values = resources.values(rule.kind)
    need = 9 if rule.kind == "admin" else LEVELS[rule.level]
    seen = {}
    for who in IDENTITIES:
        status = _call(users[who], method, template, values, rule.fields)
        seen[who] = status
        if who == "nobody":
            assert status == 401, (who, seen)
        elif RANK[who] >= need:
            assert status not in (401, 403), (who, seen)
        else:
            assert status == 403, (who, seen)


# -- the stock client, end to end ---------------------------------------------------------------------


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    def use(username: str, password: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)

    return use


def test_stock_clients_grant_and_are_held_to_levels(server: Server, as_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    as_user(*ADMIN)
    admin = get_app_client("basic-auth", tracking_uri=server.url)
    admin.create_user(alice, PASSWORD)
    admin.create_user(bob, PASSWORD)
    # alice creates an experiment: she manages it; bob (default NO_PERMISSIONS) cannot see it.
    as_user(alice, PASSWORD)
    mlflow.set_tracking_uri(server.url)
    exp_id = MlflowClient(server.url).create_experiment(f"alices-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_metric("loss", 0.5)
    as_user(bob, PASSWORD)
    bobs = MlflowClient(server.url)
    with pytest.raises(MlflowException, match="Permission denied") as denied:
        bobs.get_run(run.info.run_id)
    assert denied.value.error_code == "PERMISSION_DENIED"
    assert exp_id not in [e.experiment_id for e in bobs.search_experiments()]
    # alice grants bob READ with MLflow's own client: he reads, but may not log.
    as_user(alice, PASSWORD)
    get_app_client("basic-auth", tracking_uri=server.url).grant_user_permission(bob, "experiment", exp_id, "READ")
    as_user(bob, PASSWORD)
    assert bobs.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    assert exp_id in [e.experiment_id for e in bobs.search_experiments()]
    with pytest.raises(MlflowException, match="needs EDIT"):
        bobs.log_metric(run.info.run_id, "loss", 0.4)
    with pytest.raises(MlflowException, match="Permission denied"):  # bob may not grant himself more
        get_app_client("basic-auth", tracking_uri=server.url).grant_user_permission(bob, "experiment", exp_id, "EDIT")
    as_user(alice, PASSWORD)
    alices_admin = get_app_client("basic-auth", tracking_uri=server.url)
    alices_admin.grant_user_permission(bob, "experiment", exp_id, "EDIT")
    result = alices_admin.get_user_permission(bob, "experiment", exp_id)
    assert result.permission == "EDIT" and result.allowed
    as_user(bob, PASSWORD)
    bobs.log_metric(run.info.run_id, "loss", 0.4)
    with pytest.raises(MlflowException, match="needs MANAGE"):
        bobs.delete_experiment(exp_id)
    # The legacy per-experiment routes answer MLflow's shapes.
    legacy = httpx.get(
        f"{server.url}/api/2.0/mlflow/experiments/permissions/get",
        params={"experiment_id": exp_id, "username": bob},
        auth=(alice, PASSWORD),
    ).json()
    assert legacy["experiment_permission"]["permission"] == "EDIT"
    as_user(alice, PASSWORD)
    alices_admin.revoke_user_permission(bob, "experiment", exp_id)
    as_user(bob, PASSWORD)
    with pytest.raises(MlflowException, match="Permission denied"):
        bobs.get_run(run.info.run_id)


def test_forcing_a_protected_alias_needs_manage(server: Server, users: dict[str, httpx.Client]) -> None:
    resources = Resources(users["admin"])
    body = {"version": 1, "force": True, "reason": "hotfix"}
    path = f"/api/v1/registered-models/{resources.model}/aliases/production"
    refused = users["edit"].put(path, json=body)
    assert refused.status_code == 403 and "MANAGE" in refused.json()["error"]["message"]
    assert users["edit"].get(f"{path}").status_code == 404  # nothing moved
    assert users["manage"].put(path, json=body).status_code == 200


def test_whole_table_reads_need_read_on_everything(server: Server, users: dict[str, httpx.Client]) -> None:
    # The Iceberg catalog reads whole tables: with a default of NO_PERMISSIONS only admins may. SQL answers
    # every user, with only the rows they may read (tests/api/test_sql_permissions.py).
    sql = {"sql": "SELECT count(*) AS n FROM experiments"}
    # the first query of each kind opens a DuckDB over the lake: seconds on a loaded machine
    mine = users["read"].post("/api/v1/sql", json=sql, timeout=120)
    everything = users["admin"].post("/api/v1/sql", json=sql, timeout=120)
    assert mine.status_code == 200 and everything.status_code == 200
    assert 1 <= mine.json()["rows"][0][0] < everything.json()["rows"][0][0]
    assert users["read"].get("/iceberg/v1/config").status_code == 403
    assert users["nobody"].post("/api/v1/sql", json=sql).status_code == 401


def test_trace_routes_checked_in_their_handlers(users: dict[str, httpx.Client], shared: Resources) -> None:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": shared.experiment_id}}

    def start(who: str) -> int:
        info = {"trace_id": f"tr-{uuid.uuid4().hex}", "trace_location": location, "request_time": 1, "state": "OK"}
        return users[who].post("/api/2.0/mlflow/traces", json={"trace": {"trace_info": info}}).status_code

    assert [start(who) for who in ("none", "read", "edit")] == [403, 403, 200]
    search = {"locations": [location], "max_results": 10}
    assert users["none"].post("/api/2.0/mlflow/traces/search", json=search).status_code == 403
    assert users["read"].post("/api/2.0/mlflow/traces/search", json=search).status_code == 200
    headers = {"x-mlflow-experiment-id": shared.experiment_id, "content-type": "application/json"}
    assert users["read"].post("/v1/traces", content=b"{}", headers=headers).status_code == 403
    assert users["edit"].post("/v1/traces", content=b"{}", headers=headers).status_code not in (401, 403)


def test_grants_follow_a_renamed_model(users: dict[str, httpx.Client]) -> None:
    resources = Resources(users["admin"])
    new_name = f"{resources.model}-renamed"
    renamed = users["edit"].patch(f"/api/v1/registered-models/{resources.model}", json={"name": new_name})
    assert renamed.status_code == 200, renamed.text
    assert users["read"].get(f"/api/v1/registered-models/{new_name}").status_code == 200
    assert users["none"].get(f"/api/v1/registered-models/{new_name}").status_code == 403
    back = users["manage"].post(
        "/api/2.0/mlflow/registered-models/rename", json={"name": new_name, "new_name": resources.model}
    )
    assert back.status_code == 200, back.text
    assert users["read"].get(f"/api/v1/registered-models/{resources.model}").status_code == 200
