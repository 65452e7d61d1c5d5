"""Fixtures for API tests: a real ``lakeops serve`` process on a free port, per backend."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lakes import make_settings
from s3server import S3Target
from serve_process import child_env, free_port

from lakeops.settings import LakeopsSettings

# s3 marked in the params, so `-m "not s3"` leaves those servers out at collection.
BACKENDS = [pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)]


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
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**child_env(settings), **(extra_env or {})}
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lakeops.cli", "serve", "--port", str(self.port), "--no-preload", *extra_args],
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


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``lakeops serve`` on the embedded default, and on an s3:// warehouse."""
    kind: str = request.param
    s3: S3Target | None = request.getfixturevalue("s3_server") if kind == "s3" else None
    home = tmp_path_factory.mktemp(f"serve-{kind}")
    srv = Server(make_settings(kind, home, s3), home / "serve.log")
    yield srv
    srv.stop()


PG_PASSWORD = "s3cret-pg-password"


@pytest.fixture(scope="session", params=BACKENDS)
def sql_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``lakeops serve --pg-port N`` (user ``lakeops``, password ``PG_PASSWORD``) per backend; ``.pg_port``."""
    kind: str = request.param
    s3: S3Target | None = request.getfixturevalue("s3_server") if kind == "s3" else None
    home = tmp_path_factory.mktemp(f"sql-serve-{kind}")
    pg_port = free_port()
    srv = Server(
        make_settings(kind, home, s3),
        home / "serve.log",
        extra_args=("--pg-port", str(pg_port)),
        extra_env={"LAKEOPS_SQL__PG_PASSWORD": PG_PASSWORD, "LAKEOPS_SQL__TIMEOUT_S": "5"},
    )
    srv.pg_port = pg_port  # type: ignore[attr-defined]
    yield srv
    srv.stop()
