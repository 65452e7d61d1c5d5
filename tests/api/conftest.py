"""Fixtures for API tests: a real ``lakeops serve`` process on a free port, per backend."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lakes import make_settings
from s3server import S3Target

from lakeops.settings import LakeopsSettings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: LakeopsSettings) -> dict[str, str]:
    """The environment variables that configure ``settings`` in a child process."""
    env = {"LAKEOPS_HOME": str(settings.home), "LAKEOPS_NAMESPACE": settings.namespace}
    for section in ("storage", "catalog", "write"):
        for key, value in getattr(settings, section).model_dump().items():
            if value is None:
                continue
            text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            env[f"LAKEOPS_{section.upper()}__{key.upper()}"] = text
    return env


class Server:
    """A running ``lakeops serve``."""

    def __init__(
        self,
        settings: LakeopsSettings,
        log: Path,
        *,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEOPS_", "MLFLOW_"))}
        env.update(settings_env(settings))
        env.update(extra_env or {})
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lakeops.cli", "serve", "--port", str(self.port), *extra_args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lakeops serve exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"lakeops serve did not start: {log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="session", params=["file", "s3"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``lakeops serve`` on the embedded default, and on an s3:// warehouse."""
    kind: str = request.param
    s3: S3Target | None = request.getfixturevalue("s3_server") if kind == "s3" else None
    home = tmp_path_factory.mktemp(f"serve-{kind}")
    srv = Server(make_settings(kind, home, s3), home / "serve.log")
    yield srv
    srv.stop()


PG_PASSWORD = "s3cret-pg-password"


@pytest.fixture(scope="session", params=["file", "s3"])
def sql_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``lakeops serve --pg-port N`` (user ``lakeops``, password ``PG_PASSWORD``) per backend; ``.pg_port``."""
    kind: str = request.param
    s3: S3Target | None = request.getfixturevalue("s3_server") if kind == "s3" else None
    home = tmp_path_factory.mktemp(f"sql-serve-{kind}")
    pg_port = _free_port()
    srv = Server(
        make_settings(kind, home, s3),
        home / "serve.log",
        extra_args=("--pg-port", str(pg_port)),
        extra_env={"LAKEOPS_SQL__PG_PASSWORD": PG_PASSWORD, "LAKEOPS_SQL__TIMEOUT_S": "5"},
    )
    srv.pg_port = pg_port  # type: ignore[attr-defined]
    yield srv
    srv.stop()
