"""The portal's login with authentication on, in real headless Chromium against a real ``lakeops serve``.

Without a login the portal sends the browser to ``/login``; after one, the session cookie (HttpOnly,
SameSite=Strict) carries the user, who sees only the experiments they may read; a request that
changes something with the cookie but without the CSRF header is refused; logging out ends the
session on the server (its cookie no longer works anywhere).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from lakes import make_settings
from playwright.sync_api import Browser, Page, expect, sync_playwright
from serve_process import ServeProcess

# httpx's default 5 s timeout is too short for a server on a loaded 2-core box (a first password hash,
# a first SQL query): calls here wait up to 60 s.
_get = functools.partial(httpx.get, timeout=60)
_post = functools.partial(httpx.post, timeout=60)

pytestmark = [pytest.mark.api, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ADMIN = ("admin", "admin-secret-0123")
expect.set_options(timeout=20_000)


@dataclass
class User:
    name: str
    password: str
    experiment_id: str
    experiment_name: str


@dataclass
class Lake:
    server: ServeProcess
    alice: User
    bob: User


def _user(url: str, prefix: str) -> User:
    name, password = f"{prefix}{uuid.uuid4().hex[:4]}", f"pw-{uuid.uuid4().hex}"
    made = _post(f"{url}/api/2.0/mlflow/users/create", auth=ADMIN, json={"username": name, "password": password})
    assert made.status_code == 200, made.text
    experiment = f"exp-{name}"
    created = _post(f"{url}/api/v1/experiments", auth=(name, password), json={"name": experiment})
    assert created.status_code == 201, created.text
    return User(name, password, created.json()["experiment_id"], experiment)


def _hold_back(url: str, user: User, other: User) -> None:
    grant = {"username": user.name, "resource_type": "experiment", "resource_id": other.experiment_id}
    granted = _post(
        f"{url}/api/3.0/mlflow/users/permissions/grant", auth=ADMIN, json={**grant, "permission": "NO_PERMISSIONS"}
    )
    assert granted.status_code == 200, granted.text


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    home = tmp_path_factory.mktemp("portal-login")
    server = ServeProcess(
        make_settings("file", home, None),
        home / "serve.log",
        extra_env={"LAKEOPS_AUTH__ENABLED": "true", "LAKEOPS_AUTH__ADMIN_PASSWORD": ADMIN[1]},
    )
    try:
        alice, bob = _user(server.url, "alice"), _user(server.url, "bob")
        _hold_back(server.url, alice, bob)
        _hold_back(server.url, bob, alice)
        yield Lake(server, alice, bob)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def _log_in(tab: Page, lake: Lake, user: User) -> None:
    tab.goto(lake.server.url + "/")
    expect(tab).to_have_url(lake.server.url + "/login")
    tab.get_by_label("User").fill(user.name)
    tab.get_by_label("Password").fill(user.password)
    tab.get_by_role("button", name="Log in").click()
    expect(tab).to_have_url(lake.server.url + "/")


def test_portal_sends_to_login_and_shows_only_readable_experiments(tab: Page, lake: Lake) -> None:
    tab.goto(lake.server.url + "/")
    expect(tab).to_have_url(lake.server.url + "/login")
    tab.get_by_label("User").fill(lake.alice.name)
    tab.get_by_label("Password").fill("not-the-password")
    tab.get_by_role("button", name="Log in").click()
    expect(tab.get_by_role("alert")).to_have_text("Invalid username or password")

    _log_in(tab, lake, lake.alice)
    mine = tab.locator(f'tr[data-experiment-id="{lake.alice.experiment_id}"]')
    expect(mine).to_contain_text(lake.alice.experiment_name)
    expect(tab.locator(f'tr[data-experiment-id="{lake.bob.experiment_id}"]')).to_have_count(0)
    expect(tab.get_by_text(lake.bob.experiment_name)).to_have_count(0)
    # the SQL console runs as alice too
    tab.goto(lake.server.url + "/#/sql?sql=" + quote("SELECT name FROM experiments ORDER BY name"))
    expect(tab.locator("#view")).to_contain_text(lake.alice.experiment_name)
    expect(tab.locator("#view")).not_to_contain_text(lake.bob.experiment_name)

    cookies = {c["name"]: c for c in tab.context.cookies()}
    session = cookies["lakeops_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert cookies["lakeops_csrf"]["httpOnly"] is False and cookies["lakeops_csrf"]["sameSite"] == "Strict"
    assert tab.evaluate("document.cookie").find("lakeops_session") == -1  # scripts cannot read the session


def test_cookie_requests_that_change_something_need_the_csrf_header(tab: Page, lake: Lake) -> None:
    _log_in(tab, lake, lake.bob)
    cookies = {c["name"]: c["value"] for c in tab.context.cookies()}
    url = lake.server.url
    with httpx.Client(base_url=url, cookies={"lakeops_session": cookies["lakeops_session"]}) as http:
        assert http.get(f"/api/v1/experiments/{lake.bob.experiment_id}").status_code == 200  # reads need no header
        body = {"name": f"forged-{uuid.uuid4().hex[:6]}"}
        forged = http.post("/api/v1/experiments", json=body)
        assert forged.status_code == 403 and "CSRF" in forged.json()["error"]["message"]
        wrong = http.post("/api/v1/experiments", json=body, headers={"x-csrf-token": "0" * 64})
        assert wrong.status_code == 403
        made = http.post("/api/v1/experiments", json=body, headers={"x-csrf-token": cookies["lakeops_csrf"]})
        assert made.status_code == 201, made.text
    names = [e["name"] for e in _get(f"{url}/api/v1/experiments", auth=ADMIN).json()["experiments"]]
    assert names.count(body["name"]) == 1  # the refused requests stored nothing


def test_logout_ends_the_session_on_the_server(tab: Page, lake: Lake) -> None:
    _log_in(tab, lake, lake.alice)
    session = {c["name"]: c["value"] for c in tab.context.cookies()}["lakeops_session"]
    tab.get_by_role("button", name="Log out").click()
    expect(tab).to_have_url(lake.server.url + "/login")
    assert "lakeops_session" not in {c["name"] for c in tab.context.cookies()}
    replayed = _get(f"{lake.server.url}/api/v1/experiments", cookies={"lakeops_session": session})
    assert replayed.status_code == 401
    tab.goto(lake.server.url + "/")
    expect(tab).to_have_url(lake.server.url + "/login")
