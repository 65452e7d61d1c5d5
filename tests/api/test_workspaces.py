"""MLflow 3's workspaces against a real ``lakeops serve`` with authentication on, on file and s3.

The stock client manages them (``mlflow.create_workspace`` ... ``delete_workspace``), selects one
(``mlflow.set_workspace``: the ``X-MLFLOW-WORKSPACE`` header) and grants membership with MLflow's
``AuthServiceClient``. The server's default level is READ: everything in the workspace "default" is
readable by every user, and what is in another workspace only by its members.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import pytest
from conftest import BACKENDS, Server
from lakes import make_settings
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from s3server import S3Target

pytestmark = pytest.mark.api

# One client for the module: a call with a default of 5 s timed out on the shared box (load ~19, a user's first
# request); and httpx.post() & co. build a client, with its TLS context, per call.
_http = httpx.Client(timeout=60)

ADMIN = ("admin", "admin-secret-0123")
PASSWORD = "member-password-0123"
HEADER = "X-MLFLOW-WORKSPACE"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kind: str = request.param
    s3: S3Target | None = request.getfixturevalue("s3_server") if kind == "s3" else None
    home = tmp_path_factory.mktemp(f"workspaces-{kind}")
    srv = Server(
        make_settings(kind, home, s3),
        home / "serve.log",
        extra_env={
            "LAKEOPS_AUTH__ENABLED": "true",
            "LAKEOPS_AUTH__ADMIN_PASSWORD": ADMIN[1],
            "LAKEOPS_AUTH__DEFAULT_PERMISSION": "READ",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, server: Server) -> Iterator[Any]:
    """Act as a user with the stock client (credentials from the environment), in no workspace at first."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    mlflow.set_workspace(None)

    def use(username: str, password: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)

    yield use
    mlflow.set_workspace(None)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _sql(server: Server, auth: tuple[str, str], sql: str, *params: Any) -> list[list[Any]]:
    answer = _http.post(
        f"{server.url}/api/v1/sql", auth=auth, json={"sql": sql, "params": list(params)}, timeout=120
    )  # the first query opens DuckDB over the lake: seconds on a loaded machine
    assert answer.status_code == 200, answer.text
    rows: list[list[Any]] = answer.json()["rows"]
    return rows


def _user(server: Server) -> tuple[str, str]:
    name = _name("user")
    created = _http.post(
        f"{server.url}/api/2.0/mlflow/users/create", auth=ADMIN, json={"username": name, "password": PASSWORD}
    )
    assert created.status_code == 200, created.text
    return name, PASSWORD


def test_server_info_reports_workspaces_enabled(server: Server) -> None:
    info = _http.get(f"{server.url}/api/3.0/mlflow/server-info", auth=ADMIN).json()
    assert info["workspaces_enabled"] is True


def test_stock_client_creates_lists_gets_updates_and_deletes(server: Server, as_user: Any) -> None:
    as_user(*ADMIN)
    name = _name("team")
    created = mlflow.create_workspace(name, description="the first team")
    assert (created.name, created.description) == (name, "the first team")
    listed = {w.name: w for w in mlflow.list_workspaces()}
    assert "default" in listed and listed[name].description == "the first team"
    assert mlflow.get_workspace(name).description == "the first team"
    updated = mlflow.update_workspace(name, description="renamed team", default_artifact_root="s3://bucket/team")
    assert (updated.description, updated.default_artifact_root) == ("renamed team", "s3://bucket/team")
    assert mlflow.get_workspace(name).default_artifact_root == "s3://bucket/team"
    # Who did what is in the activity view.
    rows = _sql(
        server, ADMIN, "SELECT operation, actor FROM activity WHERE entity_type = 'workspace' AND entity_id = ?", name
    )
    assert sorted(rows) == [["create", "admin"], ["update", "admin"]]
    mlflow.delete_workspace(name)
    assert name not in {w.name for w in mlflow.list_workspaces()}
    with pytest.raises(MlflowException, match="not found") as missing:
        mlflow.get_workspace(name)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    rows = _sql(server, ADMIN, "SELECT count(*) FROM workspaces WHERE name = ?", name)
    assert rows == [[0]]


def test_bad_input_is_a_clean_4xx(server: Server, as_user: Any) -> None:
    as_user(*ADMIN)
    name = _name("dup")
    mlflow.create_workspace(name)
    with pytest.raises(MlflowException, match="already exists") as duplicate:
        mlflow.create_workspace(name)
    assert duplicate.value.error_code == "RESOURCE_ALREADY_EXISTS"
    base = f"{server.url}/api/3.0/mlflow/workspaces"
    cases = [
        ("POST", base, {"name": name}, 400, "RESOURCE_ALREADY_EXISTS"),
        ("POST", base, {"name": "default"}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", base, {"name": "Not_A_Name"}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", base, {"name": "api"}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", base, {"name": 5}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", base, {}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", base, {"name": _name("x"), "description": "\ud800"}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", base, {"name": _name("x"), "default_artifact_root": "relative/dir"}, 400, "INVALID_PARAMETER_VALUE"),
        (
            "POST",
            base,
            {"name": _name("x"), "trace_archival_config": {"retention": "3d"}},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        ("GET", f"{base}/{_name('nowhere')}", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", f"{base}/Bad..Name", None, 400, "INVALID_PARAMETER_VALUE"),
        ("PATCH", f"{base}/{name}", {}, 400, "INVALID_PARAMETER_VALUE"),
        ("PATCH", f"{base}/{_name('nowhere')}", {"description": "x"}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("PATCH", f"{base}/default", {"description": "x"}, 400, "INVALID_PARAMETER_VALUE"),
        ("DELETE", f"{base}/default", None, 400, "INVALID_PARAMETER_VALUE"),
        ("DELETE", f"{base}/{_name('nowhere')}", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("DELETE", f"{base}/{name}?mode=SOMETIMES", None, 400, "INVALID_PARAMETER_VALUE"),
        ("DELETE", f"{base}/{name}?mode=CASCADE", None, 400, "INVALID_PARAMETER_VALUE"),
    ]
    for method, url, body, status, code in cases:
        content = None if body is None else json.dumps(body)  # ASCII escapes: a lone surrogate goes as \ud800
        answer = _http.request(
            method, url, content=content, headers={"content-type": "application/json"}, auth=ADMIN, timeout=30
        )
        assert (answer.status_code, answer.json().get("error_code")) == (status, code), (method, url, body, answer.text)
    # A workspace the header names must exist.
    unknown = _http.post(
        f"{server.url}/api/2.0/mlflow/experiments/search",
        json={"max_results": 5},
        headers={HEADER: _name("nowhere")},
        auth=ADMIN,
    )
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    malformed = _http.post(
        f"{server.url}/api/2.0/mlflow/experiments/create",
        json={"name": _name("e")},
        headers={HEADER: "NO!"},
        auth=ADMIN,
    )
    assert malformed.status_code == 400
    # Nothing was lost: the workspace is as it was.
    assert mlflow.get_workspace(name).name == name
    # Only admins create, change and delete workspaces.
    member = _user(server)
    for method, url, body in (
        ("POST", base, {"name": _name("mine")}),
        ("PATCH", f"{base}/{name}", {"description": "x"}),
        ("DELETE", f"{base}/{name}", None),
    ):
        refused = _http.request(method, url, json=body, auth=member, timeout=30)
        assert refused.status_code == 403, (method, refused.text)
    assert mlflow.get_workspace(name).description is None


def test_members_see_the_workspace_and_non_members_do_not(server: Server, as_user: Any) -> None:
    alice, bob = _user(server), _user(server)
    as_user(*ADMIN)
    team = _name("team")
    mlflow.create_workspace(team)
    # Membership with MLflow's own client: a grant on ("workspace", "*") in the active workspace.
    mlflow.set_workspace(team)
    admins = MlflowClient().create_experiment(_name("admins"))  # in the workspace: what the header names
    get_app_client("basic-auth", tracking_uri=server.url).grant_user_permission(alice[0], "workspace", "*", "USE")
    assert (
        get_app_client("basic-auth", tracking_uri=server.url).get_user_permission(alice[0], "workspace", "*").permission
        == "USE"
    )
    # alice works in the workspace with the stock client.
    as_user(*alice)
    mlflow.set_workspace(team)
    experiment = mlflow.set_experiment(_name("exp"))
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.25)
    model = _name("model")
    MlflowClient().create_registered_model(model)
    client = MlflowClient()
    assert [e.experiment_id for e in client.search_experiments(filter_string=f"name = '{experiment.name}'")] == [
        experiment.experiment_id
    ]
    assert [m.name for m in client.search_registered_models(filter_string=f"name = '{model}'")] == [model]
    assert client.get_experiment(experiment.experiment_id).workspace == team  # MLflow's Experiment.workspace
    assert {w.name for w in mlflow.list_workspaces()} == {"default", team}
    assert client.get_experiment(admins).experiment_id == admins  # USE: the default level (READ) on the rest
    with pytest.raises(MlflowException, match="needs EDIT"):
        client.create_run(admins)
    # Outside the workspace (default), its experiments and models are not listed, not even to alice.
    mlflow.set_workspace(None)
    assert experiment.experiment_id not in [e.experiment_id for e in MlflowClient().search_experiments()]
    assert model not in [m.name for m in MlflowClient().search_registered_models()]
    # bob is no member: refused on each of them, and searches leave them out, though the default level is READ.
    as_user(*bob)
    bobs = MlflowClient()
    with pytest.raises(MlflowException, match="Permission denied") as denied:
        bobs.get_run(run.info.run_id)
    assert denied.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(MlflowException, match="Permission denied"):
        bobs.get_registered_model(model)
    assert bobs.get_experiment_by_name(experiment.name) is None  # by name: in bob's workspace only (a 404)
    assert team not in {w.name for w in mlflow.list_workspaces()}
    mlflow.set_workspace(team)
    assert MlflowClient().search_experiments(filter_string=f"name = '{experiment.name}'") == []
    assert MlflowClient().search_registered_models(filter_string=f"name = '{model}'") == []
    with pytest.raises(MlflowException, match="may not create in workspace"):
        MlflowClient().create_experiment(_name("intruder"))
    with pytest.raises(MlflowException, match="Permission denied"):
        mlflow.get_workspace(team)
    # SQL answers each user the rows they may read: the same views, filtered.
    query = "SELECT count(*) FROM runs WHERE run_id = ?"
    assert _sql(server, bob, query, run.info.run_id) == [[0]]
    assert _sql(server, alice, query, run.info.run_id) == [[1]]
    assert _sql(server, bob, "SELECT count(*) FROM workspaces WHERE name = ?", team) == [[0]]
    assert _sql(
        server,
        alice,
        "SELECT experiment_count, registered_model_count, member_count FROM workspaces WHERE name = ?",
        team,
    ) == [[2, 1, 1]]
    # The grant is in the activity view; once revoked, alice is out.
    grants = _sql(
        server, ADMIN, "SELECT actor, detail FROM activity WHERE entity_id = ?", f"workspace:{team}:{alice[0]}"
    )
    assert grants == [["admin", f"{alice[0]} USE on workspace {team}"]]
    as_user(*ADMIN)
    mlflow.set_workspace(team)
    get_app_client("basic-auth", tracking_uri=server.url).revoke_user_permission(alice[0], "workspace", "*")
    as_user(*alice)
    mlflow.set_workspace(team)
    with pytest.raises(MlflowException, match="Permission denied"):
        MlflowClient().get_experiment(admins)
    with pytest.raises(MlflowException, match="may not create in workspace"):
        MlflowClient().create_experiment(_name("exp"))
    # Her own experiment stays hers: the creator's MANAGE grant is on the experiment itself.
    assert MlflowClient().get_experiment(experiment.experiment_id).name == experiment.name


def test_membership_levels_and_deleting_a_workspace_that_holds_things(server: Server, as_user: Any) -> None:
    reader, writer = _user(server), _user(server)
    as_user(*ADMIN)
    team = _name("team")
    mlflow.create_workspace(team)
    grant = f"{server.url}/api/3.0/mlflow/users/permissions/grant"
    assert (
        _http.post(
            grant,
            auth=ADMIN,
            json={"username": reader[0], "resource_type": "workspace", "resource_id": team, "permission": "READ"},
        ).status_code
        == 200
    )
    assert (
        _http.post(
            grant,
            auth=ADMIN,
            json={"username": writer[0], "resource_type": "workspace", "resource_id": team, "permission": "EDIT"},
        ).status_code
        == 200
    )
    bad = _http.post(
        grant,
        auth=ADMIN,
        json={"username": reader[0], "resource_type": "workspace", "resource_id": team, "permission": "OWNER"},
    )
    assert bad.status_code == 400
    unknown = _http.post(
        grant,
        auth=ADMIN,
        json={
            "username": reader[0],
            "resource_type": "workspace",
            "resource_id": _name("nowhere"),
            "permission": "READ",
        },
    )
    assert unknown.status_code == 404
    members = _http.get(f"{server.url}/api/v1/workspaces/{team}/members", auth=reader).json()["members"]
    assert sorted((m["username"], m["permission"]) for m in members) == sorted(
        [(reader[0], "READ"), (writer[0], "EDIT")]
    )
    # A READ member reads and may not create; an EDIT member creates and logs; neither may delete.
    as_user(*writer)
    mlflow.set_workspace(team)
    experiment_id = MlflowClient().create_experiment(_name("exp"))
    as_user(*reader)
    mlflow.set_workspace(team)
    assert MlflowClient().get_experiment(experiment_id).experiment_id == experiment_id
    with pytest.raises(MlflowException, match="may not create in workspace"):
        MlflowClient().create_experiment(_name("exp"))
    with pytest.raises(MlflowException, match="needs EDIT"):
        MlflowClient().create_run(experiment_id)
    # RESTRICT (the default) refuses while it holds an experiment; SET_DEFAULT moves it to default.
    base = f"{server.url}/api/3.0/mlflow/workspaces/{team}"
    held = _http.delete(base, auth=ADMIN)
    assert held.status_code == 409 and "still holds" in held.json()["message"]
    as_user(*ADMIN)
    with pytest.raises(MlflowException, match="still holds"):
        mlflow.delete_workspace(team)
    mlflow.delete_workspace(team, mode="SET_DEFAULT")
    mlflow.set_workspace(None)
    assert experiment_id in [e.experiment_id for e in MlflowClient().search_experiments()]
    # Memberships went with it; in default, the default level (READ) applies again.
    as_user(*reader)
    assert MlflowClient().get_experiment(experiment_id).experiment_id == experiment_id
