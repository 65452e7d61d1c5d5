"""TLS on HTTP and on the PostgreSQL endpoint: ``lakeops serve --ssl-certfile/--ssl-keyfile``.

A self-signed certificate for 127.0.0.1 is made with the ``openssl`` command for the module; the
stock mlflow client (trusting it as a CA bundle, or with MLFLOW_TRACKING_INSECURE_TLS) and real
``psql`` with ``sslmode=require`` / ``verify-ca`` talk to a real ``lakeops serve`` with auth on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lakes import make_settings
from serve_process import ServeProcess as Server
from serve_process import child_env, free_port

pytestmark = pytest.mark.api

ADMIN = ("admin", "admin-secret-0123")
PSQL = shutil.which("psql") or "/usr/bin/psql"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)),
            *("-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Iterator[Server]:
    cert, key = certificate
    home = tmp_path_factory.mktemp("tls-serve")
    pg_port = free_port()
    srv = Server(
        make_settings("file", home, None),
        home / "serve.log",
        extra_args=("--pg-port", str(pg_port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)),
        extra_env={"LAKEOPS_AUTH__ENABLED": "true", "LAKEOPS_AUTH__ADMIN_PASSWORD": ADMIN[1]},
        ca_file=cert,
    )
    srv.pg_port = pg_port  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def _mlflow_roundtrip(url: str, env: dict[str, str]) -> str:
    """Log a metric and read it back with the stock mlflow client in a fresh process with ``env``."""
    script = (
        "import mlflow, sys\n"
        "from mlflow import MlflowClient\n"
        f"c = MlflowClient({url!r})\n"
        f"e = c.create_experiment('tls-{uuid.uuid4().hex[:8]}')\n"
        "r = c.create_run(e).info.run_id\n"
        "c.log_metric(r, 'loss', 0.25, step=3)\n"
        "print([(m.value, m.step) for m in c.get_metric_history(r, 'loss')])\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**clean, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else f"failed: {done.stderr[-800:]}"


def test_stock_client_over_https(server: Server, certificate: tuple[Path, Path]) -> None:
    cert, _key = certificate
    assert server.url.startswith("https://")
    login = {"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]}
    assert _mlflow_roundtrip(server.url, {**login, "MLFLOW_TRACKING_SERVER_CERT_PATH": str(cert)}) == "[(0.25, 3)]"
    assert _mlflow_roundtrip(server.url, {**login, "MLFLOW_TRACKING_INSECURE_TLS": "true"}) == "[(0.25, 3)]"
    # without trusting the certificate, the client refuses the server
    assert "CERTIFICATE_VERIFY_FAILED" in _mlflow_roundtrip(server.url, login)
    # and plain HTTP gets no answer from the TLS port
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https://", "http://") + "/health", timeout=5)


def _psql(server: Server, sslmode: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    port = server.pg_port  # type: ignore[attr-defined]
    dsn = f"host=127.0.0.1 port={port} user={ADMIN[0]} dbname=lakeops sslmode={sslmode} connect_timeout=10 {extra}"
    env = {**os.environ, "PGPASSWORD": ADMIN[1]}
    command = [PSQL, dsn, "-X", "-A", "-t", "-c", "SELECT 41 + 1 AS answer"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_psql_requires_tls(server: Server, certificate: tuple[Path, Path]) -> None:
    cert, _key = certificate
    required = _psql(server, "require")
    assert required.returncode == 0, required.stderr
    assert required.stdout.strip() == "42"
    verified = _psql(server, "verify-full", f"sslrootcert={cert}")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == "42"
    plain = _psql(server, "disable")
    assert plain.returncode != 0
    assert "requires TLS" in plain.stderr


def test_serve_refuses_a_bad_certificate(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, _key = certificate
    settings = make_settings("file", tmp_path, None)
    for args in (
        ["--ssl-certfile", str(cert)],
        ["--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "missing.pem")],
        ["--ssl-certfile", str(cert), "--ssl-keyfile", str(cert)],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "lakeops.cli", "serve", "--port", str(free_port()), *args],
            env=child_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "certificate" in done.stderr or "--ssl-keyfile" in done.stderr
