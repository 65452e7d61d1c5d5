"""Fixtures for client tests: the same tests run embedded (file, s3, rest) and over HTTP (file, s3).

Over HTTP the client talks to a real ``lakeops serve`` child process, one per backend kind for
the session; each test works in its own experiment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lakes import EmptyLakes, make_settings
from serve_process import ServeProcess

import lakeops
from lakeops.client import Client

MODES = [
    pytest.param("embedded-file", id="embedded-file"),
    pytest.param("embedded-s3", id="embedded-s3", marks=pytest.mark.s3),
    pytest.param("embedded-rest", id="embedded-rest", marks=pytest.mark.s3),
    pytest.param("http-file", id="http-file", marks=pytest.mark.api),
    pytest.param("http-s3", id="http-s3", marks=[pytest.mark.api, pytest.mark.s3]),
]


@pytest.fixture(scope="session")
def servers(plain_servers: dict[str, ServeProcess]) -> dict[str, ServeProcess]:
    """Lazily started ``lakeops serve`` processes, one per backend kind, shared by the client tests (and the API
    tests: ``plain_servers`` in tests/conftest.py). Every test works in its own experiment."""
    return plain_servers


@pytest.fixture(params=MODES)
def client(request: pytest.FixtureRequest, tmp_path: Path, servers: dict[str, ServeProcess]) -> Iterator[Client]:
    """A client, embedded on a fresh lake (file, s3: a copy of an empty one, see ``EmptyLakes``) or connected to
    the module's server."""
    mode, kind = str(request.param).split("-")
    if mode == "embedded":
        s3 = request.getfixturevalue("s3_server") if kind != "file" else None
        settings = make_settings(kind, tmp_path / "lake", s3)
        empty_lakes: EmptyLakes = request.getfixturevalue("empty_lakes")
        empty_lakes.prepare(settings, s3)
        c = lakeops.connect(settings=settings, flush_interval_s=0.05)
    else:
        c = lakeops.connect(servers[kind].url, flush_interval_s=0.05)
    yield c
    c.close()


@pytest.fixture
def experiment() -> str:
    """A fresh experiment name."""
    return f"exp-{uuid.uuid4().hex[:10]}"
