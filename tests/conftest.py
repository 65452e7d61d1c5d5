"""Shared pytest fixtures: the session-wide S3 server.

By default a SeaweedFS ``weed mini`` server is started once per session (see
``tests/s3server.py``). Set ``LAKEOPS_TEST_S3_ENDPOINT`` (with
``LAKEOPS_TEST_S3_ACCESS_KEY`` and ``LAKEOPS_TEST_S3_SECRET_KEY``; optionally
``LAKEOPS_TEST_S3_BUCKET``, ``LAKEOPS_TEST_S3_REGION``, ``LAKEOPS_TEST_ICEBERG_URI``,
``LAKEOPS_TEST_TABLE_BUCKET``) to run against an existing S3 endpoint instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from s3server import ExternalS3, S3Target, SeaweedServer


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Printed at once, before the (~20 s) collection: what is about to happen."""
    return [
        "lakeops: every test runs against real components (SeaweedFS S3, lakeops serve, psql, Chromium),",
        "  started on first use; a dot per test. Quick subset (file:// lakes in-process): make test-quick",
    ]


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
