"""Malformed input on every route of a real ``lakeops serve``: a 4xx with a message, never a 5xx.

Generated from the application's route table (``api.permissions.app_endpoints``), like the
permission matrix: each route is called with path parameters, query parameters and JSON bodies
that are wrong in the ways clients get them wrong (wrong types, integers past 64 bits, non-finite
numbers, lone surrogates, empty and non-JSON bodies, paths that climb out). The server runs with
authentication on, as an admin, so every route is reached past its permission check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from conftest import Server
from lakes import make_settings

from api.main import create_app
from api.permissions import app_endpoints

pytestmark = pytest.mark.api

ADMIN = ("admin", "admin-secret-0123")
_PLACEHOLDER = re.compile(r"\{(\w+)(?::path)?\}")
PATH_VALUES = ("9" * 40, "..%2F..%2Fetc%2Fpasswd", "%ED%A0%80")
BODIES: tuple[bytes, ...] = (
    b"",
    b"not json",
    b"[]",
    b'{"x": "\\ud800"}',
    b'{"name": 18446744073709551616, "experiment_id": [], "run_id": {}, "value": "NaN", "max_results": -1}',
    b'{"name": "\\u0000", "key": "../../x", "timestamp": 1e400, "step": -9223372036854775809, "tags": "x"}',
)
QUERY = {"max_results": "99999999999999999999", "run_id": "\x00", "filter": "params.x = ", "page_token": "%%"}


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home = tmp_path_factory.mktemp("fuzz")
    srv = Server(
        make_settings("file", home, None),
        home / "serve.log",
        extra_env={"LAKEOPS_AUTH__ENABLED": "true", "LAKEOPS_AUTH__ADMIN_PASSWORD": ADMIN[1]},
    )
    with httpx.Client(base_url=srv.url, auth=ADMIN, timeout=60) as client:
        yield client
    srv.stop()


def _routes() -> list[tuple[str, str, str]]:
    found = []
    for name, ways in sorted(app_endpoints(create_app()).items()):
        method, path = sorted(ways, key=lambda w: ("/ajax-api" in w, len(w)))[0].split(" ", 1)
        if path.startswith(("/docs", "/redoc")):
            continue
        found.append((name, method.split(",")[0], path))
    return found


ROUTES = _routes()


@pytest.mark.parametrize(("name", "method", "template"), ROUTES, ids=[r[0].removeprefix("api.") for r in ROUTES])
def test_malformed_input_is_a_4xx(admin: httpx.Client, name: str, method: str, template: str) -> None:
    problems = []
    for value in PATH_VALUES:
        path = _PLACEHOLDER.sub(value, template)
        for body in BODIES if method not in ("GET", "HEAD") else (b"",):
            response = admin.request(
                method, path, params=QUERY, content=body, headers={"content-type": "application/json"}
            )
            if response.status_code >= 500:
                problems.append((path, body, response.status_code, response.text[:200]))
    assert not problems, problems[:3]
