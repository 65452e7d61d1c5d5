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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Target]:
    """A running S3 endpoint whose default ``bucket`` exists."""
    external = ExternalS3.from_env()
    if external is not None:
        external.make_bucket(external.bucket)
        yield external
        return
    with SeaweedServer(tmp_path_factory.mktemp("s3server")) as server:
        yield server
