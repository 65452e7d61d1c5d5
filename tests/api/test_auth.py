"""Authentication against a real ``lakeops serve`` with auth on: the stock mlflow client with a user and
password or a token, MLflow's ``AuthServiceClient``, our client, psql's protocol, and refusals.

One server for the module (file:// lake, PostgreSQL endpoint on): users and tokens are module-wide
and each test names its own with a random suffix.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import psycopg
import pytest
from conftest import Server
from lakes import make_settings
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from mlflow.server import get_app_client
from serve_process import child_env, free_port

import lakeops
from lakeops.errors import UnauthenticatedError

pytestmark = pytest.mark.api

ADMIN = ("admin", "admin-secret-0123")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("auth")
    pg_port = free_port()
    srv = Server(
        make_settings("file", home, None),
        home / "serve.log",
        extra_args=("--pg-port", str(pg_port)),
        extra_env={"LAKEOPS_AUTH__ENABLED": "true", "LAKEOPS_AUTH__ADMIN_PASSWORD": ADMIN[1]},
    )
    srv.pg_port = pg_port  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> object:
    """Set the stock client's credentials: ``as_user(name, password)`` or ``as_user(token=...)``."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    def use(username: str | None = None, password: str | None = None, *, token: str | None = None) -> None:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        if username is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or "")
        if token is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)

    return use


def _new_user(server: Server, as_user, *, admin: bool = False) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    name, password = f"user-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    as_user(*ADMIN)
    client = get_app_client("basic-auth", tracking_uri=server.url)
    client.create_user(name, password)
    if admin:
        client.update_user_admin(name, True)
    return name, password


def test_anonymous_requests_refused_with_a_challenge(server: Server) -> None:
    mlflow_route = httpx.get(f"{server.url}/api/2.0/mlflow/experiments/search", params={"max_results": 5})
    assert mlflow_route.status_code == 401
    assert mlflow_route.json()["error_code"] == "UNAUTHENTICATED"
    assert mlflow_route.headers["www-authenticate"].startswith("Basic")
    native = httpx.get(f"{server.url}/api/v1/experiments")
    assert native.status_code == 401 and native.json()["error"]["code"] == "unauthenticated"
    portal = httpx.get(f"{server.url}/", follow_redirects=False)  # the portal sends a browser to its login page
    assert portal.status_code == 303 and portal.headers["location"] == "/login"
    assert httpx.get(f"{server.url}/portal/app.js").status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200  # load balancers may probe
    cross = httpx.get(f"{server.url}/health", headers={"origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in cross.headers  # CORS closed by default
    wrong = httpx.get(f"{server.url}/api/v1/experiments", auth=(ADMIN[0], "not-the-password"))
    assert wrong.status_code == 401 and "not-the-password" not in wrong.text


def test_stock_client_with_username_and_password(server: Server, as_user) -> None:  # type: ignore[no-untyped-def]
    name, password = _new_user(server, as_user)
    as_user(name, password)
    mlflow.set_tracking_uri(server.url)
    exp = mlflow.set_experiment(f"basic-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.1")
        mlflow.log_metric("loss", 0.5, step=1)
    got = MlflowClient(server.url).get_run(run.info.run_id)
    assert got.data.params == {"lr": "0.1"} and got.data.metrics == {"loss": 0.5}
    # The user is the actor of what they did, in the audit trail.
    as_user(*ADMIN)
    rows = httpx.post(
        f"{server.url}/api/v1/sql",
        timeout=120,  # the first query opens DuckDB over the lake: seconds on a loaded machine
        auth=ADMIN,
        json={"sql": "SELECT DISTINCT actor FROM activity WHERE experiment_id = ?", "params": [exp.experiment_id]},
    ).json()["rows"]
    assert [name] in rows
    as_user(name, "wrong-password")
    with pytest.raises(MlflowException, match=r"401|nauthenticated|password") as caught:
        MlflowClient(server.url).get_run(run.info.run_id)
    assert "wrong-password" not in str(caught.value)


def test_auth_service_client_manages_users(server: Server, as_user) -> None:  # type: ignore[no-untyped-def]
    as_user(*ADMIN)
    admin = get_app_client("basic-auth", tracking_uri=server.url)
    name = f"carol-{uuid.uuid4().hex[:6]}"
    user = admin.create_user(name, "first-password-1")
    assert user.username == name and not user.is_admin and isinstance(user.id, int)
    assert admin.get_user(name).id == user.id
    with pytest.raises(RestException, match="already exists"):
        admin.create_user(name, "another-password")
    admin.update_user_password(name, "second-password-2")
    as_user(name, "first-password-1")
    assert httpx.get(f"{server.url}/api/v1/users/me", auth=(name, "first-password-1")).status_code == 401
    me = httpx.get(f"{server.url}/api/v1/users/me", auth=(name, "second-password-2")).json()["user"]
    assert me["username"] == name and me["is_admin"] is False
    # A user who is not an admin manages no one, but may change their own password with the current one.
    as_user(name, "second-password-2")
    own = get_app_client("basic-auth", tracking_uri=server.url)
    with pytest.raises(RestException, match="admins"):
        own.create_user(f"x-{uuid.uuid4().hex[:6]}", "some-password")
    with pytest.raises(RestException, match="current password"):
        own.update_user_password(name, "third-password-3")
    own.update_user_password(name, "third-password-3", current_password="second-password-2")
    as_user(*ADMIN)
    admin.update_user_admin(name, True)
    assert admin.get_user(name).is_admin
    admin.delete_user(name)
    with pytest.raises(RestException, match="not found"):
        admin.get_user(name)
    assert httpx.get(f"{server.url}/api/v1/users/me", auth=(name, "third-password-3")).status_code == 401


def test_tokens_stock_client_and_ours(server: Server, as_user) -> None:  # type: ignore[no-untyped-def]
    name, password = _new_user(server, as_user)
    issued = httpx.post(f"{server.url}/api/v1/tokens", auth=(name, password), json={"name": "ci"})
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    listed = httpx.get(f"{server.url}/api/v1/tokens", auth=(name, password)).json()["tokens"]
    assert [t["token_id"] for t in listed] == [issued.json()["token_id"]] and "token" not in listed[0]
    as_user(token=token)
    client = MlflowClient(server.url)
    exp_id = client.create_experiment(f"token-{uuid.uuid4().hex[:6]}")
    assert client.get_experiment(exp_id).name.startswith("token-")
    with lakeops.connect(server.url, token=token) as ours, ours.start_run(experiment=f"ours-{uuid.uuid4().hex[:6]}"):
        pass
    with pytest.raises(UnauthenticatedError, match="token"), lakeops.connect(server.url, token="lko_bad_token") as bad:
        bad.experiments()
    # psql-style tools send a password: a token works there too, with the user's name.
    assert httpx.get(f"{server.url}/api/v1/users/me", auth=(name, token)).status_code == 200
    assert httpx.get(f"{server.url}/api/v1/users/me", auth=("someone-else", token)).status_code == 401
    revoked = httpx.delete(f"{server.url}/api/v1/tokens/{issued.json()['token_id']}", auth=(name, password))
    assert revoked.status_code == 204
    with pytest.raises(MlflowException, match=r"401|revoked|token"):
        client.get_experiment(exp_id)


def test_secrets_stored_hashed(server: Server, as_user) -> None:  # type: ignore[no-untyped-def]
    name, password = _new_user(server, as_user)
    token = httpx.post(f"{server.url}/api/v1/tokens", auth=(name, password), json={}).json()["token"]
    httpx.post(f"{server.url}/api/v1/sql", auth=ADMIN, json={"sql": "SELECT 1"})  # commits what is queued
    home: Path = server.settings.home
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert password.encode() not in data and token.encode() not in data, path
    # User SQL cannot reach the tables that hold the hashes.
    refused = httpx.post(f"{server.url}/api/v1/sql", auth=ADMIN, json={"sql": "SELECT * FROM lake.user_changes"})
    assert refused.status_code == 400
    log = (home / "serve.log").read_text()
    assert password not in log and token not in log


def test_postgres_endpoint_logs_in_lakeops_users(server: Server, as_user) -> None:  # type: ignore[no-untyped-def]
    name, password = _new_user(server, as_user)
    port = server.pg_port  # type: ignore[attr-defined]
    dsn = f"host=127.0.0.1 port={port} dbname=lakeops sslmode=disable connect_timeout=10"
    with psycopg.connect(f"{dsn} user={name} password={password}", autocommit=True) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    token = httpx.post(f"{server.url}/api/v1/tokens", auth=(name, password), json={}).json()["token"]
    with psycopg.connect(f"{dsn} user={name} password={token}", autocommit=True) as conn:
        assert conn.execute("SELECT count(*) >= 0 FROM experiments").fetchone() == (True,)
    with pytest.raises(psycopg.OperationalError, match=r"authentication failed"):
        psycopg.connect(f"{dsn} user={name} password=wrong-password")
    # A user held back from one experiment logs in, and their SQL does not see it (tests/api/test_sql_permissions.py).
    exp = httpx.post(f"{server.url}/api/v1/experiments", auth=ADMIN, json={"name": f"held-{uuid.uuid4().hex[:6]}"})
    grant = {"username": name, "resource_type": "experiment", "permission": "NO_PERMISSIONS"}
    grant["resource_id"] = exp.json()["experiment_id"]
    assert httpx.post(f"{server.url}/api/3.0/mlflow/users/permissions/grant", auth=ADMIN, json=grant).status_code == 200
    sql = "SELECT count(*) FROM experiments WHERE experiment_id = %s"
    with psycopg.connect(f"{dsn} user={name} password={password}", autocommit=True) as conn:
        assert conn.execute(sql, (grant["resource_id"],)).fetchone() == (0,)
    with psycopg.connect(f"{dsn} user=admin password={ADMIN[1]}", autocommit=True) as conn:
        assert conn.execute(sql, (grant["resource_id"],)).fetchone() == (1,)
    held = httpx.post(
        f"{server.url}/api/v1/sql",
        auth=(name, password),
        json={"sql": sql.replace("%s", "?"), "params": [grant["resource_id"]]},
    )
    assert held.status_code == 200 and held.json()["rows"] == [[0]]


def test_serve_refuses_public_bind_without_auth(tmp_path: Path) -> None:
    settings = make_settings("file", tmp_path, None)
    refused = subprocess.run(
        [sys.executable, "-m", "lakeops.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "without authentication" in refused.stderr
    no_admin = subprocess.run(
        [sys.executable, "-m", "lakeops.cli", "serve", "--port", str(free_port()), "--no-preload"],
        env={**child_env(settings), "LAKEOPS_AUTH__ENABLED": "true"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert no_admin.returncode != 0 and "LAKEOPS_AUTH__ADMIN_PASSWORD" in no_admin.stdout + no_admin.stderr
