"""MLflow's own web UI (from the installed mlflow wheel) served by ``lakeops serve`` at ``/mlflow/``,
driven in a real headless Chromium: each page loads with no failed API call and shows the seeded data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from lakes import make_settings
from mlflow import MlflowClient
from playwright.sync_api import Browser, Page, sync_playwright
from serve_process import ServeProcess

pytestmark = [pytest.mark.api, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
# The UI asks for the signed-in user on every page; with authentication off lakeops answers that route
# (api/routers/users.py) with 400, which the UI takes as "no user", as it takes an MLflow server's 404.
TOLERATED = re.compile(r"/ajax-api/2\.0/mlflow/users/current$")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("webui")
    srv = ServeProcess(make_settings("file", home, None), home / "serve.log")
    mlflow.set_tracking_uri(srv.url)
    exp = mlflow.set_experiment("ui-exp")
    with mlflow.start_run(run_name="ui-run") as run:
        mlflow.log_param("lr", 0.1)
        for step in range(5):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.log_text("hello", "notes/readme.txt")

    @mlflow.trace
    def double(x: int) -> int:
        return x * 2

    double(21)
    mlflow.flush_trace_async_logging()
    client = MlflowClient(srv.url)
    client.create_registered_model("ui-model")
    client.create_model_version("ui-model", f"runs:/{run.info.run_id}/notes", run_id=run.info.run_id)
    yield {"url": srv.url, "exp": exp.experiment_id, "run": run.info.run_id}
    srv.stop()
    mlflow.tracing.reset()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _visit(browser: Browser, url: str, shows: list[str]) -> None:
    page: Page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400 and not TOLERATED.search(r.url)
            else None
        ),
    )
    try:
        page.goto(url)
        for text in shows:
            page.get_by_text(text, exact=False).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)  # the calls a page makes after its first paint
        assert not problems, f"{url}: {problems}"
    finally:
        page.close()


def test_mlflow_ui_pages(browser: Browser, seeded: dict[str, str]) -> None:
    base, exp, run = f"{seeded['url']}/mlflow/", seeded["exp"], seeded["run"]
    # server-info reports workspaces enabled: as with ``mlflow server --enable-workspaces``, the UI opens on
    # its workspace picker, and its pages carry the workspace chosen (``?workspace=``, sent as X-MLFLOW-WORKSPACE).
    _visit(browser, f"{base}#/experiments", ["Select a workspace", "default"])
    ws = "?workspace=default"
    _visit(browser, f"{base}#/experiments{ws}", ["ui-exp"])
    _visit(browser, f"{base}#/experiments/{exp}{ws}", ["ui-exp"])  # overview: trace metrics charts
    _visit(browser, f"{base}#/experiments/{exp}/runs/{run}{ws}", ["ui-run", "lr"])
    _visit(browser, f"{base}#/experiments/{exp}/runs/{run}/model-metrics{ws}", ["loss"])
    _visit(browser, f"{base}#/experiments/{exp}/runs/{run}/artifacts{ws}", ["notes"])
    _visit(browser, f"{base}#/experiments/{exp}/traces{ws}", ['{"x": 21}'])
    _visit(browser, f"{base}#/models{ws}", ["ui-model"])
    _visit(browser, f"{base}#/models/ui-model{ws}", ["Version 1"])
