"""Shared pytest fixtures: the session-wide S3 server.

By default a SeaweedFS ``weed mini`` server is started once per session (see
``tests/s3server.py``). Set ``LAKEOPS_TEST_S3_ENDPOINT`` (with
``LAKEOPS_TEST_S3_ACCESS_KEY`` and ``LAKEOPS_TEST_S3_SECRET_KEY``; optionally
``LAKEOPS_TEST_S3_BUCKET``, ``LAKEOPS_TEST_S3_REGION``, ``LAKEOPS_TEST_ICEBERG_URI``,
``LAKEOPS_TEST_TABLE_BUCKET``) to run against an existing S3 endpoint instead.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from lakes import make_settings
from s3server import ExternalS3, S3Target, SeaweedServer
from serve_process import ServeProcess


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Printed at once, before the (~20 s) collection: what is about to happen."""
    return [
        "lakeops: every test runs against real components (SeaweedFS S3, lakeops serve, psql, Chromium),",
        "  started on first use; a dot per test. Quick subset (file:// lakes in-process): make test-quick",
    ]


@pytest.hookimpl(optionalhook=True)  # an xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` with ``--dist loadgroup`` (pyproject's addopts): tests are spread one by one, except that the
    tests of a module defining a module- or class-scoped fixture go to one worker together, so that fixture (a
    seeded lake, a browser, a server) is built once rather than once per worker.

    (xdist's own loadgroup reads ``xdist_group`` marks from a suffix it appends to node ids, which pytest 9.2's
    node ids no longer take; a module's fixtures are the grouping these tests need anyway.)
    """
    if config.getoption("dist", "no") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    shared = _modules_with_shared_fixtures(config.rootpath)

    class ModuleFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in shared else nodeid

    return ModuleFixtureScheduling(config, log)


def _modules_with_shared_fixtures(root: Path) -> set[str]:
    """Test modules (as node-id prefixes) that define a fixture shared beyond one test."""
    pattern = re.compile(r"@pytest\.fixture\([^)]*scope=[\"'](?:module|class|package)[\"']")
    found = set()
    for path in (root / "tests").rglob("test_*.py"):
        if pattern.search(path.read_text(encoding="utf-8")):
            found.add(path.relative_to(root).as_posix())
    return found


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, tests marked ``slow`` are handed out first: one started last would alone set the run's end."""
    if getattr(config.option, "loadgroup", False):  # set by xdist on its workers, which all sort alike
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """No test may leave a process behind: once every other fixture is torn down, this process has no children.

    Set up first, so torn down last (after the session's servers). Leftovers are listed and killed, and the
    teardown error fails the run. Under xdist each worker checks its own children.
    """
    yield
    leftovers = [p for p in psutil.Process().children(recursive=True) if _alive(p)]
    found = []
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            found.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:300]}")
            proc.kill()
    assert not found, "tests left these processes behind (killed now):\n" + "\n".join(found)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _say(config: pytest.Config, text: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and config.get_verbosity() >= 0:
        reporter.write_line(text)


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Target]:
    """A running S3 endpoint whose default ``bucket`` exists."""
    external = ExternalS3.from_env()
    if external is not None:
        external.make_bucket(external.bucket)
        yield external
        return
    _say(request.config, "\nstarting the S3 server for the s3 tests (SeaweedFS weed mini, a few seconds)")
    with SeaweedServer(tmp_path_factory.mktemp("s3server")) as server:
        yield server


@pytest.fixture(scope="session")
def plain_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServeProcess]]:
    """Lazily started plain ``lakeops serve`` processes (no authentication, no extra settings), one per backend
    kind for the session, shared by every test that only needs a server: the API tests' ``server`` and the
    client tests' ``servers``. A start costs ~4 CPU-s; each test works in experiments (and names) of its own.
    Kept for the session: a parametrized session fixture would be torn down and started again each time a
    worker's next test switches backend.
    """
    started: dict[str, ServeProcess] = {}

    class Lazy(dict[str, ServeProcess]):
        def __missing__(self, kind: str) -> ServeProcess:
            s3 = request.getfixturevalue("s3_server") if kind != "file" else None
            home = tmp_path_factory.mktemp(f"serve-{kind}")
            server = ServeProcess(make_settings(kind, home, s3), home / "serve.log")
            started[kind] = server
            self[kind] = server
            return server

    yield Lazy()
    for server in started.values():
        server.stop()
