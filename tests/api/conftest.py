"""Fixtures for API tests: a real ``lakeops serve`` process on a free port, per backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lakes import make_settings
from s3server import S3Target
from serve_process import ServeProcess, free_port

# s3 marked in the params, so `-m "not s3"` leaves those servers out at collection.
BACKENDS = [pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)]


#: A running ``lakeops serve`` (the name these tests use for it).
Server = ServeProcess


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, plain_servers: dict[str, Server]) -> Server:
    """``lakeops serve`` on the embedded default, and on an s3:// warehouse (the session's, see ``plain_servers``:
    the client tests use the same ones)."""
    kind: str = request.param
    return plain_servers[kind]


PG_PASSWORD = "s3cret-pg-password"


@pytest.fixture(scope="session")
def sql_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Lazily started ``sql_server`` processes, one per backend kind, kept for the session: a parametrized
    session fixture is torn down and started again each time a worker's next test switches backend."""
    started: dict[str, Server] = {}

    class Lazy(dict[str, Server]):
        def __missing__(self, kind: str) -> Server:
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
            started[kind] = srv
            self[kind] = srv
            return srv

    yield Lazy()
    for srv in started.values():
        srv.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def sql_server(request: pytest.FixtureRequest, sql_servers: dict[str, Server]) -> Server:
    """``lakeops serve --pg-port N`` (user ``lakeops``, password ``PG_PASSWORD``) per backend; ``.pg_port``."""
    kind: str = request.param
    return sql_servers[kind]
