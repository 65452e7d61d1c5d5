"""The PostgreSQL wire endpoint (``lakeops serve --pg-port``) with the real psql client and psycopg."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from conftest import PG_PASSWORD

pytestmark = pytest.mark.api

PSQL = shutil.which("psql") or "/usr/bin/psql"


def _dsn(server, password: str = PG_PASSWORD, user: str = "lakeops") -> str:  # type: ignore[no-untyped-def]
    return f"host=127.0.0.1 port={server.pg_port} user={user} password={password} dbname=lakeops sslmode=disable"


def _psql(server, sql: str, password: str = PG_PASSWORD) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(
        [
            PSQL,
            "-h",
            "127.0.0.1",
            "-p",
            str(server.pg_port),
            "-U",
            "lakeops",
            "-d",
            "lakeops",
            "-X",
            "-A",
            "-t",
            "-c",
            sql,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _make_runs(server, n: int = 4) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        exp = http.post("/api/v1/experiments", json={"name": f"pg-{uuid.uuid4().hex[:8]}"}).json()["experiment_id"]
        ids = []
        for i in range(n):
            rid = http.post(f"/api/v1/experiments/{exp}/runs", json={"run_name": f"run-{i}"}).json()["info"]["run_id"]
            http.post(
                f"/api/v1/runs/{rid}/batch",
                json={
                    "params": {"depth": str(i)},
                    "metrics": [{"key": "acc", "value": i / 10, "timestamp": 1, "step": 0}],
                },
            )
            ids.append(rid)
    return exp, ids


def test_psql_lists_the_views_and_queries_them(sql_server) -> None:  # type: ignore[no-untyped-def]
    exp, _ids = _make_runs(sql_server)
    listed = _psql(
        sql_server,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name",
    )
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.split()
    assert {"experiments", "runs", "params", "metrics", "latest_metrics", "metric_history", "tags", "activity"} <= set(
        names
    )
    runs = _psql(sql_server, f"SELECT run_name FROM runs WHERE experiment_id = '{exp}' ORDER BY run_name")
    assert runs.returncode == 0, runs.stderr
    assert runs.stdout.split() == ["run-0", "run-1", "run-2", "run-3"]
    best = _psql(sql_server, f"SELECT run_name FROM runs_wide('{exp}') ORDER BY \"metrics.acc\" DESC LIMIT 1")
    assert best.stdout.split() == ["run-3"], best.stderr
    described = _psql(sql_server, "\\dv")  # psql's own catalog query, as BI tools send them
    assert described.returncode == 0, described.stderr
    assert "main|latest_metrics|view|lakeops" in described.stdout.splitlines()
    assert not [line for line in described.stdout.splitlines() if "|activity_" in line]  # no helper views listed
    columns = _psql(sql_server, "\\d runs")  # psql's describe, with its PostgreSQL catalog functions
    assert columns.returncode == 0, columns.stderr
    assert "run_id|varchar" in columns.stdout.replace(" ", "")


def test_psql_refuses_escapes_with_a_clear_error(sql_server) -> None:  # type: ignore[no-untyped-def]
    for sql, message in [
        ("ATTACH ':memory:' AS x", "ATTACH is not allowed"),
        ("COPY (SELECT 1) TO '/tmp/pg-escape.csv'", "COPY is not allowed"),
        ("SET enable_external_access = true", "SET, RESET and USE are not allowed"),
        ("SELECT * FROM read_text('/etc/passwd')", "SQL refused"),
    ]:
        done = _psql(sql_server, sql)
        assert done.returncode != 0
        assert message in done.stderr


def test_psql_wrong_password_is_refused(sql_server) -> None:  # type: ignore[no-untyped-def]
    done = _psql(sql_server, "SELECT 1", password="not-the-password")
    assert done.returncode != 0
    assert "Invalid password" in done.stderr


def test_psycopg_information_schema_and_parameters(sql_server) -> None:  # type: ignore[no-untyped-def]
    exp, ids = _make_runs(sql_server)
    with psycopg.connect(_dsn(sql_server), autocommit=True) as conn:
        conn.execute("SET application_name = 'metabase'")  # what BI drivers send on connect: accepted
        views = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW' AND table_schema = %s",
                ["main"],
            ).fetchall()
        ]
        assert {"runs", "experiments", "latest_metrics"} <= set(views)
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                ["runs"],
            ).fetchall()
        ]
        assert columns[:3] == ["run_id", "experiment_id", "run_name"]
        rows = conn.execute(
            "SELECT run_id, run_name FROM runs WHERE experiment_id = %s AND run_name <> %s ORDER BY run_name",
            [exp, "run-0"],
        ).fetchall()
        assert [r[1] for r in rows] == ["run-1", "run-2", "run-3"]
        assert {r[0] for r in rows} == set(ids[1:])
        value = conn.execute(
            "SELECT value FROM latest_metrics WHERE run_id = %s AND key = %s", [ids[2], "acc"]
        ).fetchone()
        assert value is not None and float(value[0]) == pytest.approx(0.2)
        with pytest.raises(psycopg.Error, match="CREATE is not allowed"):
            conn.execute("CREATE TABLE t AS SELECT 1")


def test_eight_concurrent_psycopg_clients(sql_server) -> None:  # type: ignore[no-untyped-def]
    exp, ids = _make_runs(sql_server, n=8)

    def client(i: int) -> tuple[int, str, int]:
        with psycopg.connect(_dsn(sql_server), autocommit=True) as conn:
            seen = 0
            for _ in range(5):
                (count,) = conn.execute("SELECT count(*) FROM runs WHERE experiment_id = %s", [exp]).fetchone()  # type: ignore[misc]
                seen = int(count)
            (name,) = conn.execute("SELECT run_name FROM runs WHERE run_id = %s", [ids[i]]).fetchone()  # type: ignore[misc]
            return i, str(name), seen

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(client, range(8)))
    assert sorted(results) == [(i, f"run-{i}", 8) for i in range(8)]


def test_psycopg_wrong_password_and_unknown_user_are_refused(sql_server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(psycopg.OperationalError, match="Invalid password"):
        psycopg.connect(_dsn(sql_server, password="wrong"), connect_timeout=10)
    with pytest.raises(psycopg.OperationalError, match="Invalid password"):
        psycopg.connect(_dsn(sql_server, user="mallory"), connect_timeout=10)
