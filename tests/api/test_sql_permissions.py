"""User SQL sees only what its user may read: ``POST /api/v1/sql``, saved queries and real ``psql``.

One ``lakeops serve`` per backend with authentication on (default READ) and the PostgreSQL endpoint.
Alice and Bob each create an experiment with a run (param, metric, tag), a registered model with a
version from that run and a comment; each is held back (NO_PERMISSIONS) from the other's. Every view
and every ``lake.<table>`` reachable from user SQL is then read whole as each of them, and no row may
name the other's experiment, run, model or comment; an admin's same reads do (so the check can fail).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from lakes import make_settings
from s3server import S3Target
from serve_process import ServeProcess as Server
from serve_process import free_port

pytestmark = pytest.mark.api

# One client for the module: a call with a default of 5 s timed out on the shared box (load ~19, a user's first
# request); and httpx.post() & co. build a client, with its TLS context, per call.
_http = httpx.Client(timeout=60)

BACKENDS = [pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)]

ADMIN = ("admin", "admin-secret-0123")
PSQL = shutil.which("psql") or "/usr/bin/psql"


@dataclass
class Owned:
    """What one user created: the ids and names that must not show to the other."""

    username: str
    password: str
    experiment_id: str
    experiment_name: str
    run_id: str
    model_name: str
    model_id: str
    comment: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def markers(self) -> set[str]:
        return {self.experiment_id, self.experiment_name, self.run_id, self.model_name, self.model_id, self.comment}


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    return response.json() if response.content else {}


def _populate(url: str, username: str) -> Owned:
    password = f"pw-{uuid.uuid4().hex}"
    _ok(_http.post(f"{url}/api/2.0/mlflow/users/create", auth=ADMIN, json={"username": username, "password": password}))
    auth = (username, password)
    suffix = uuid.uuid4().hex[:8]
    name = f"exp-{username}-{suffix}"
    mlflow = f"{url}/api/2.0/mlflow"
    experiment_id = _ok(_http.post(f"{mlflow}/experiments/create", auth=auth, json={"name": name}))["experiment_id"]
    run = _ok(_http.post(f"{mlflow}/runs/create", auth=auth, json={"experiment_id": experiment_id, "start_time": 1}))
    run_id = run["run"]["info"]["run_id"]
    batch = {
        "run_id": run_id,
        "params": [{"key": f"lr-{username}", "value": "0.1"}],
        "metrics": [{"key": f"loss-{username}", "value": 0.5, "timestamp": 1000, "step": 0}],
        "tags": [{"key": f"team-{username}", "value": "x"}],
    }
    _ok(_http.post(f"{mlflow}/runs/log-batch", auth=auth, json=batch))
    model_name = f"model-{username}-{suffix}"
    _ok(_http.post(f"{mlflow}/registered-models/create", auth=auth, json={"name": model_name}))
    version = {"name": model_name, "source": f"runs:/{run_id}/model", "run_id": run_id}
    _ok(_http.post(f"{mlflow}/model-versions/create", auth=auth, json=version))
    model = _ok(_http.get(f"{url}/api/v1/registered-models/{model_name}", auth=auth))
    model_id = model.get("registered_model_id") or model.get("id")
    assert isinstance(model_id, str), model
    comment = f"comment-{username}-{suffix}"
    _ok(_http.post(f"{url}/api/v1/comments", auth=auth, json={"target": f"run:{run_id}", "body": comment}))
    return Owned(username, password, experiment_id, name, run_id, model_name, model_id, comment)


def _hold_back(url: str, user: Owned, other: Owned) -> None:
    for kind, resource_id in (("experiment", other.experiment_id), ("registered_model", other.model_name)):
        grant = {"username": user.username, "resource_type": kind, "resource_id": resource_id}
        _ok(
            _http.post(
                f"{url}/api/3.0/mlflow/users/permissions/grant",
                auth=ADMIN,
                json=grant | {"permission": "NO_PERMISSIONS"},
            )
        )


@dataclass
class Lake:
    server: Server
    pg_port: int
    alice: Owned
    bob: Owned


@pytest.fixture(scope="module", params=BACKENDS)
def lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    kind: str = request.param
    s3: S3Target | None = request.getfixturevalue("s3_server") if kind == "s3" else None
    home = tmp_path_factory.mktemp(f"sql-perm-{kind}")
    pg_port = free_port()
    server = Server(
        make_settings(kind, home, s3),
        home / "serve.log",
        extra_args=("--pg-port", str(pg_port)),
        extra_env={"LAKEOPS_AUTH__ENABLED": "true", "LAKEOPS_AUTH__ADMIN_PASSWORD": ADMIN[1]},
    )
    try:
        alice = _populate(server.url, f"alice{uuid.uuid4().hex[:4]}")
        bob = _populate(server.url, f"bob{uuid.uuid4().hex[:4]}")
        _hold_back(server.url, alice, bob)
        _hold_back(server.url, bob, alice)
        # An experiment nobody was granted anything on: the default (READ) lets both see it.
        shared = _ok(
            _http.post(f"{server.url}/api/v1/experiments", auth=ADMIN, json={"name": f"shared-{uuid.uuid4().hex[:6]}"})
        )
        server.shared_experiment = shared["experiment_id"]  # type: ignore[attr-defined]
        yield Lake(server, pg_port, alice, bob)
    finally:
        server.stop()


def _sql(lake: Lake, auth: tuple[str, str], sql: str) -> httpx.Response:
    return _http.post(f"{lake.server.url}/api/v1/sql", auth=auth, json={"sql": sql, "max_rows": 100_000}, timeout=120)


def _rows(lake: Lake, auth: tuple[str, str], sql: str) -> list[list[Any]]:
    response = _sql(lake, auth, sql)
    assert response.status_code == 200, response.text
    rows: list[list[Any]] = response.json()["rows"]
    return rows


def _readable_objects(lake: Lake) -> list[str]:
    """Every view, table macro-free relation and ``lake.<table>`` user SQL can name (as DuckDB lists them)."""
    rows = _rows(
        lake,
        ADMIN,
        "SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE NOT internal "
        "UNION ALL SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY 1",
    )
    names = [r[0] for r in rows]
    assert "main.experiments" in names and "lake.metrics" in names and "main.activity" in names
    return names


def _seen(lake: Lake, auth: tuple[str, str], names: list[str]) -> str:
    """Every row of every relation, as one text."""
    parts = []
    for name in names:
        parts.append(name)
        for row in _rows(lake, auth, f"SELECT * FROM {name}"):
            parts.append(" ".join(str(v) for v in row))
    return "\n".join(parts)


def test_every_view_and_lake_table_shows_a_user_only_what_they_may_read(lake: Lake) -> None:
    names = _readable_objects(lake)
    as_admin = _seen(lake, ADMIN, names)
    as_alice = _seen(lake, lake.alice.auth, names)
    as_bob = _seen(lake, lake.bob.auth, names)
    for marker in lake.alice.markers() | lake.bob.markers():
        assert marker in as_admin, f"the admin should see {marker}"
    for marker in lake.alice.markers():
        assert marker in as_alice, f"alice should see her own {marker}"
        assert marker not in as_bob, f"bob sees alice's {marker}"
    for marker in lake.bob.markers():
        assert marker in as_bob, f"bob should see his own {marker}"
        assert marker not in as_alice, f"alice sees bob's {marker}"


def test_views_filter_runs_metrics_and_the_shared_default(lake: Lake) -> None:
    shared = lake.server.shared_experiment  # type: ignore[attr-defined]
    experiments = {r[0] for r in _rows(lake, lake.alice.auth, "SELECT experiment_id FROM experiments")}
    assert lake.alice.experiment_id in experiments and shared in experiments
    assert lake.bob.experiment_id not in experiments
    metrics = _rows(lake, lake.bob.auth, "SELECT run_id, key FROM metrics ORDER BY key")
    assert metrics == [[lake.bob.run_id, f"loss-{lake.bob.username}"]]
    wide = _sql(lake, lake.bob.auth, f"SELECT run_id FROM runs_wide('{lake.alice.experiment_id}')")
    assert wide.status_code == 400 and "no experiment with id or name" in wide.text  # as if it did not exist
    assert _rows(lake, lake.bob.auth, f"SELECT run_id FROM runs_wide('{lake.bob.experiment_id}')") == [
        [lake.bob.run_id]
    ]
    both = _rows(lake, ADMIN, "SELECT count(DISTINCT run_id) FROM metrics")
    assert both == [[2]]


def test_unfiltered_data_cannot_be_reached_another_way(lake: Lake) -> None:
    alice = lake.alice.auth
    location = _rows(lake, ADMIN, "SELECT sql FROM duckdb_views() WHERE schema_name = 'lake' AND view_name = 'metrics'")
    assert "iceberg_scan" in location[0][0]
    for sql in (
        "SELECT * FROM iceberg_scan('x')",
        "SELECT * FROM read_parquet('x')",
        "SELECT * FROM query('SELECT 1')",
        "SET VARIABLE lakeops_readable = NULL",
        "SELECT getvariable('lakeops_readable')",
        "ATTACH ':memory:' AS other",
    ):
        response = _sql(lake, alice, sql)
        assert response.status_code == 400, (sql, response.text)
    # time travel reads through the same filter
    now = _sql(lake, alice, "SELECT count(*) FROM runs").json()["rows"]
    at = _http.post(
        f"{lake.server.url}/api/v1/sql",
        auth=alice,
        json={"sql": "SELECT count(*) FROM runs", "as_of": "2999-01-01T00:00:00Z"},
        timeout=60,
    )
    assert at.status_code == 200 and at.json()["rows"] == now
    assert _rows(
        lake, alice, "SELECT count(*) FROM lake.run_changes WHERE experiment_id = " + repr(lake.bob.experiment_id)
    ) == [[0]]


def test_saved_query_runs_as_whoever_runs_it(lake: Lake) -> None:
    name = f"runs-{uuid.uuid4().hex[:6]}"
    saved = _http.post(
        f"{lake.server.url}/api/v1/saved-queries",
        auth=lake.alice.auth,
        json={"name": name, "sql": "SELECT run_id FROM runs ORDER BY run_id"},
    )
    assert saved.status_code == 201, saved.text
    for user in (lake.alice, lake.bob):
        ran = _http.post(f"{lake.server.url}/api/v1/saved-queries/{name}/run", auth=user.auth, json={})
        assert ran.status_code == 200, ran.text
        assert ran.json()["rows"] == [[user.run_id]]


def _psql(lake: Lake, user: Owned, sql: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": user.password, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    command = [PSQL, "-h", "127.0.0.1", "-p", str(lake.pg_port), "-U", user.username, "-d", "lakeops"]
    return subprocess.run(
        [*command, "-X", "-A", "-t", "-c", sql], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_psql_sessions_see_their_users_rows(lake: Lake) -> None:
    for user, other in ((lake.alice, lake.bob), (lake.bob, lake.alice)):
        done = _psql(lake, user, "SELECT name FROM experiments ORDER BY name")
        assert done.returncode == 0, done.stderr
        names = done.stdout.split()
        assert user.experiment_name in names and other.experiment_name not in names
        done = _psql(lake, user, "SELECT name FROM registered_models")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [user.model_name]
        refused = _psql(lake, user, "SELECT * FROM read_csv('/etc/passwd')")
        assert refused.returncode != 0 and "not allowed" in refused.stderr


def test_grant_applies_to_an_open_postgres_session(lake: Lake) -> None:
    dsn = f"host=127.0.0.1 port={lake.pg_port} dbname=lakeops sslmode=disable connect_timeout=10"
    carol = _populate(lake.server.url, f"carol{uuid.uuid4().hex[:4]}")
    with psycopg.connect(f"{dsn} user={carol.username} password={carol.password}", autocommit=True) as conn:
        sql = "SELECT count(*) FROM runs WHERE experiment_id = %s"
        assert conn.execute(sql, (lake.alice.experiment_id,)).fetchone() == (1,)  # the default: READ
        _hold_back(lake.server.url, carol, lake.alice)
        assert conn.execute(sql, (lake.alice.experiment_id,)).fetchone() == (0,)
