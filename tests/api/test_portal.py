"""The web portal in a real headless Chromium (Debian's), driven by Playwright, against ``lakeops serve``.

Page by page on the embedded default (file://), and one walk through every page on an s3:// warehouse;
one server per backend and one browser for the module. Each test opens its own page and fails on any
console error or failed request. Screenshots of every page go to ``$LAKEOPS_TEST_ARTIFACTS/portal``
(default: pytest's temporary directory).
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lakes import make_settings
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    Response,
    Route,
    expect,
    sync_playwright,
)
from serve_process import ServeProcess

pytestmark = [pytest.mark.api, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# As the machine's probe runs it: no sandbox as root, and no background calls to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The machine is shared: give the page time under load (a wait ends as soon as its condition holds).
expect.set_options(timeout=20_000)

RUNS = 40
LONG_POINTS = 200_000
SPIKE_STEP = 123_457
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


@dataclass
class Lake:
    """A seeded server: one experiment of ``RUNS`` runs, each with params, tags and a loss history."""

    server: ServeProcess
    experiment_id: str
    experiment_name: str
    run_ids: list[str] = field(default_factory=list)
    long_run_id: str = ""
    long_experiment_id: str = ""
    model_name: str = ""

    @property
    def url(self) -> str:
        return self.server.url


def _seed(server: ServeProcess) -> Lake:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        name = f"portal-{uuid.uuid4().hex[:6]}"
        exp = http.post("/api/v1/experiments", json={"name": name}).json()
        lake = Lake(server, exp["experiment_id"], name)
        for i in range(RUNS):
            r = http.post(
                f"/api/v1/experiments/{exp['experiment_id']}/runs",
                json={"run_name": f"run-{i:02d}", "user_id": "ana", "start_time": 1_700_000_000_000 + i * 1000},
            )
            run_id = r.json()["info"]["run_id"]
            lake.run_ids.append(run_id)
            points = [
                {"key": "loss", "value": 1.0 / (s + 1 + i), "timestamp": 1_700_000_000_000 + s, "step": s}
                for s in range(0, 50)
            ] + [{"key": "acc", "value": i / RUNS, "timestamp": 1_700_000_000_000, "step": 0}]
            r = http.post(
                f"/api/v1/runs/{run_id}/batch",
                json={
                    "params": {"lr": str(0.001 * (i + 1)), "depth": str(i % 4), "optimizer": "adam"},
                    "tags": {"team": "vision" if i % 2 else "nlp"},
                    "metrics": points,
                },
            )
            assert r.status_code == 200, r.text
        # run-00 trained on a dataset never validated: the quality gate refuses its model for protected aliases.
        train = pa.table({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, train.schema) as writer:
            writer.write_table(train)
        r = http.post(
            f"/api/v1/datasets/{name}-train/dataframe",
            params={"run_id": lake.run_ids[0]},
            content=sink.getvalue().to_pybytes(),
            headers={"content-type": ARROW},
        )
        assert r.status_code == 201, r.text
        # A registered model with versions from the first two runs: v1 (run-00) is refused by the gate, v2 passes.
        lake.model_name = f"{name}-model"
        assert http.post("/api/v1/registered-models", json={"name": lake.model_name}).status_code == 201
        for run_id in lake.run_ids[:2]:
            r = http.post(
                f"/api/v1/registered-models/{lake.model_name}/versions",
                json={"source": f"runs:/{run_id}/model", "run_id": run_id},
            )
            assert r.status_code == 201, r.text
        # One run with a long history (a spike at SPIKE_STEP) for the downsampled charts.
        long_exp = http.post("/api/v1/experiments", json={"name": f"{name}-long"}).json()
        lake.long_experiment_id = long_exp["experiment_id"]
        r = http.post(f"/api/v1/experiments/{long_exp['experiment_id']}/runs", json={"run_name": "long-run"})
        lake.long_run_id = r.json()["info"]["run_id"]
        steps = np.arange(LONG_POINTS)
        values = np.sin(steps / 2000.0)
        values[SPIKE_STEP] = 25.0
        points = pa.table(
            {
                "run_id": [lake.long_run_id] * LONG_POINTS,
                "key": ["wave"] * LONG_POINTS,
                "value": values,
                "timestamp": 1_700_000_000_000 + steps,
                "step": steps,
            }
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, points.schema) as writer:
            writer.write_table(points)
        r = http.post("/api/v1/metrics/ingest", content=sink.getvalue().to_pybytes(), headers={"content-type": ARROW})
        assert r.json() == {"ingested": LONG_POINTS}
    return lake


def _serve(kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    s3 = request.getfixturevalue("s3_server") if kind == "s3" else None
    home = tmp_path_factory.mktemp(f"portal-{kind}")
    server = ServeProcess(make_settings(kind, home, s3), home / "serve.log")
    try:
        yield _seed(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """A seeded ``lakeops serve`` on the embedded default (file://) for the page-by-page tests."""
    yield from _serve("file", request, tmp_path_factory)


@pytest.fixture(scope="module")
def s3_lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """The same lake on an s3:// warehouse (SeaweedFS): ``test_every_page_on_s3`` walks every page over it.

    The pages read the same native API whatever the storage, and the services behind them are tested on
    every backend in tests/lakeops; one walk through all pages on S3 keeps this module's time down.
    """
    yield from _serve("s3", request, tmp_path_factory)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("LAKEOPS_TEST_ARTIFACTS")
    folder = Path(base) / "portal" if base else tmp_path_factory.mktemp("portal-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Problems:
    """Console errors and failed requests seen by a page."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.seen.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def allow(self, pattern: str) -> None:
        """Expect failures whose text matches ``pattern`` (a test that provokes an error on purpose)."""
        self.allowed.append(re.compile(pattern))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(f"console: {message.text}")

    def _failed(self, request: Request) -> None:
        self.seen.append(f"request failed: {request.method} {request.url} {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.seen.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def unexpected(self) -> list[str]:
        return [s for s in self.seen if not any(p.search(s) for p in self.allowed)]


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, shots: Path) -> Iterator[tuple[Page, Problems]]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    problems = Problems(tab)
    yield tab, problems
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    tab.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    context.close()
    assert problems.unexpected() == []


def test_root_serves_the_portal_and_its_dependencies(lake: Lake) -> None:
    r = httpx.get(lake.url + "/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert '<script type="module" src="/portal/app.js">' in r.text
    assert httpx.get(lake.url + "/portal/vendor/uplot.js").status_code == 200
    assert httpx.get(lake.url + "/portal/pages/runs.js").status_code == 200
    for bad in ("/portal/../main.py", "/portal/node_modules/uplot/package.json", "/portal/package.json"):
        r = httpx.get(lake.url + bad)
        assert r.status_code == 404, bad
    r = httpx.get(lake.url + "/portal/vendor/nope.js")
    assert r.status_code == 404
    assert "nope.js" in r.json()["error"]["message"]


def test_experiments_list_shows_run_counts(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    tab.goto(lake.url + "/")
    row = tab.locator(f'tr[data-experiment-id="{lake.experiment_id}"]')
    expect(row).to_contain_text(lake.experiment_name)
    expect(row.locator(".runs-count")).to_have_text(str(RUNS))
    tab.get_by_label("Search").fill(lake.experiment_name[-6:])
    tab.get_by_role("button", name="Search").click()
    expect(tab.locator("#experiments tbody tr")).to_have_count(2)  # the experiment and its "-long" sibling
    tab.get_by_role("link", name=lake.experiment_name, exact=True).click()
    expect(tab.get_by_role("heading", level=1)).to_contain_text(lake.experiment_name)


def test_runs_table_filters_sorts_and_picks_columns(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}")
    table = tab.locator("#runs-table")
    expect(table).to_have_attribute("data-loaded-rows", str(RUNS))
    # Virtualised: fewer rows in the DOM than runs loaded would be at scale; here all 40 fit in the overscan.
    assert tab.locator("#runs-body .vt-row").count() <= RUNS

    tab.get_by_role("searchbox", name="Filter").fill("params.depth = '1' AND metrics.acc > 0.5")
    tab.get_by_role("button", name="Apply").click()
    expected = sorted(f"run-{i:02d}" for i in range(RUNS) if i % 4 == 1 and i / RUNS > 0.5)
    expect(table).to_have_attribute("data-loaded-rows", str(len(expected)))
    names = tab.locator("#runs-body .vt-row .vt-cell:nth-child(2)").all_inner_texts()
    assert sorted(names) == expected
    assert "filter=" in tab.url

    tab.get_by_role("columnheader", name="Run").click()  # DESC by run name
    expect(tab.locator("#runs-body .vt-row").first).to_contain_text(expected[-1])
    tab.get_by_role("columnheader", name="Run").click()  # then ASC
    expect(tab.locator("#runs-body .vt-row").first).to_contain_text(expected[0])

    tab.get_by_role("button", name="Columns").click()
    tab.get_by_label("Find a column").fill("team")
    tab.locator('#columns-panel input[data-kind="tags"][data-key="team"]').check()
    expect(tab.get_by_role("columnheader", name="t.team")).to_be_visible()
    expect(tab.locator("#runs-body .vt-row").first).to_contain_text("vision")
    # A metric's highest value over all its points (from SQL), beside the latest one (from the search).
    tab.get_by_label("Find a column").fill("loss")
    tab.get_by_label("max of loss").check()
    expect(tab.get_by_role("columnheader", name="m.loss (max)")).to_be_visible()
    first = int(expected[0].split("-")[1])
    expect(tab.locator("#runs-body .vt-row").first.locator(".vt-cell").last).to_have_text(f"{1 / (1 + first):.6g}")
    tab.get_by_role("heading", level=1).click()  # a click elsewhere closes the picker
    expect(tab.locator("#columns-panel")).to_be_hidden()


def test_runs_table_groups_by_a_param(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, problems = page
    problems.allow(r"HTTP 400: POST .*/api/v1/runs/groups")
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}")
    table = tab.locator("#runs-table")
    expect(table).to_have_attribute("data-loaded-rows", str(RUNS))
    tab.get_by_label("Group by").select_option("depth")
    expect(table).to_have_attribute("data-groups", "4")
    assert "group=depth" in tab.url
    headers = tab.locator("#runs-body .vt-group")
    expect(headers).to_have_count(4)
    group = tab.locator('#runs-body .vt-group[data-group="1"]')
    expect(group).to_contain_text("depth = 1")
    expect(group).to_contain_text("10 runs")
    # acc is i / RUNS: the runs with depth 1 are i = 1, 5, ..., 37, so their mean acc is 19 / RUNS.
    expect(group).to_contain_text(f"x̄ {19 / RUNS:.6g}")
    # Collapsed: no run rows. Expanded: exactly the group's runs, under its header.
    runs = tab.locator("#runs-body .vt-row:not(.vt-group)")
    expect(runs).to_have_count(0)
    tab.get_by_role("button", name="Expand depth = 1").click()
    expect(table).to_have_attribute("data-loaded-rows", "10")
    expected = sorted(f"run-{i:02d}" for i in range(RUNS) if i % 4 == 1)
    expect(runs).to_have_count(10)
    assert sorted(runs.locator(".vt-cell:nth-child(2)").all_inner_texts()) == expected
    tab.get_by_role("button", name="Collapse depth = 1").click()
    expect(runs).to_have_count(0)
    # The filter narrows the groups: acc > 0.5 keeps i >= 21, five runs a depth.
    tab.get_by_role("searchbox", name="Filter").fill("metrics.acc > 0.5")
    tab.get_by_role("button", name="Apply").click()
    expect(tab.locator('#runs-body .vt-group[data-group="1"]')).to_contain_text("5 runs")
    # A link keeps the grouping; the same groups come from the native API for scripts.
    tab.reload()
    expect(tab.locator("#runs-body .vt-group")).to_have_count(4)
    answer = httpx.post(
        f"{lake.url}/api/v1/runs/groups",
        json={"experiment_ids": [lake.experiment_id], "group_by": "params.depth", "metrics": ["acc"]},
    )
    assert answer.status_code == 200, answer.text
    groups = answer.json()["groups"]
    assert [(g["value"], g["count"]) for g in groups] == [("0", 10), ("1", 10), ("2", 10), ("3", 10)]
    assert groups[1]["metrics"]["acc"] == {"count": 10, "min": 1 / RUNS, "mean": 19 / RUNS, "max": 37 / RUNS}
    bad = httpx.post(
        f"{lake.url}/api/v1/runs/groups", json={"experiment_ids": [lake.experiment_id], "group_by": "metrics.acc"}
    )
    assert bad.status_code == 400
    assert "Invalid group_by 'metrics.acc'" in bad.json()["error"]["message"]


def test_runs_table_groups_by_a_param_in_sql_mode(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    # An OR the MLflow filter cannot say: depth 1, or acc above 0.9 (i = 37, 38, 39).
    where = '"params.depth" = \'1\' OR "metrics.acc" > 0.9'
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}?mode=sql&group=depth&filter=" + quote(where))
    table = tab.locator("#runs-table")
    expect(table).to_have_attribute("data-groups", "3")  # depth 1 (10 runs), 2 (i = 38), 3 (i = 39)
    one = tab.locator('#runs-body .vt-group[data-group="1"]')
    expect(one).to_contain_text("10 runs")
    expect(one).to_contain_text(f"x̄ {19 / RUNS:.6g}")  # mean acc of i = 1, 5, ..., 37
    expect(tab.locator('#runs-body .vt-group[data-group="2"]')).to_contain_text("1 run")
    tab.get_by_role("button", name="Expand depth = 3").click()
    runs = tab.locator("#runs-body .vt-row:not(.vt-group)")
    expect(runs).to_have_count(1)
    expect(runs.first).to_contain_text("run-39")
    tab.get_by_role("button", name="Collapse depth = 3").click()
    tab.get_by_role("button", name="Expand depth = 1").click()
    expect(runs).to_have_count(10)
    assert sorted(runs.locator(".vt-cell:nth-child(2)").all_inner_texts()) == sorted(
        f"run-{i:02d}" for i in range(RUNS) if i % 4 == 1
    )
    assert "mode=sql" in tab.url


def test_a_bad_filter_says_why(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, problems = page
    problems.allow(r"HTTP 400: POST .*/api/v1/runs/search")
    problems.allow(r"console: Failed to load resource: the server responded with a status of 400")
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}")
    tab.get_by_role("searchbox", name="Filter").fill("metrics.loss <<< 1")
    tab.get_by_role("button", name="Apply").click()
    expect(tab.get_by_role("alert")).to_contain_text("Invalid value")


def test_runs_table_renders_only_visible_rows_and_pages_on_scroll(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    tab.set_viewport_size({"width": 1200, "height": 500})
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}")
    table = tab.locator("#runs-table")
    expect(table).to_have_attribute("data-loaded-rows", str(RUNS))
    rendered = tab.locator("#runs-body .vt-row").count()
    assert rendered < RUNS
    table.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(tab.locator("#runs-body .vt-row").last).to_contain_text("run-00")  # default order: newest first


def test_mlflow_client_run_link_opens_the_run_page(
    lake: Lake, page: tuple[Page, Problems], capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(lake.url)
    run = client.create_run(
        lake.long_experiment_id, run_name="from-mlflow"
    )  # leaves the main experiment's counts alone
    client.log_param(run.info.run_id, "alpha", "0.5")
    client.log_metric(run.info.run_id, "score", 0.75, step=3)
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput

    frame = mlflow.data.from_pandas(pd.DataFrame({"x": [1, 2]}), name="train-frame")
    client.log_inputs(run.info.run_id, [DatasetInput(frame._to_mlflow_entity())])
    client.set_terminated(run.info.run_id)
    printed = capsys.readouterr().out
    link = re.search(r"View run from-mlflow at: (\S+)", printed)
    assert link, printed
    tab, _ = page
    tab.goto(link.group(1))
    expect(tab.get_by_role("heading", level=1)).to_contain_text("from-mlflow")
    expect(tab.locator("#params")).to_contain_text("alpha")
    expect(tab.locator("#metrics")).to_contain_text("0.75")
    expect(tab.locator("#run-info")).to_contain_text(run.info.run_id)
    expect(tab.locator("#run-io")).to_contain_text("train-frame")


def test_unknown_run_says_not_found(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, problems = page
    problems.allow(r"HTTP 404: GET .*/api/v1/runs/")
    problems.allow(r"console: Failed to load resource: the server responded with a status of 404")
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}/runs/{'0' * 32}")
    expect(tab.get_by_role("alert")).to_contain_text("0" * 32)


# -- downsampled histories: the route, the client, the chart ---------------------------------------------------


def test_downsampled_route_keeps_spikes_and_zooms_to_full_resolution(lake: Lake) -> None:
    base = f"{lake.url}/api/v1/runs/{lake.long_run_id}/metrics/wave/downsampled"
    body = httpx.get(base, params={"points": 500}, timeout=60).json()
    assert len(body["steps"]) <= 500
    assert body["points_in_range"] == LONG_POINTS and body["downsampled"] is True
    assert SPIKE_STEP in body["steps"]
    assert max(body["values"]) == 25.0
    assert body["steps"] == sorted(body["steps"])
    zoom = httpx.get(base, params={"points": 500, "min_step": 1000, "max_step": 1399}, timeout=60).json()
    assert zoom["steps"] == list(range(1000, 1400)) and zoom["downsampled"] is False
    arrow = httpx.get(base, params={"points": 100}, headers={"accept": ARROW}, timeout=60)
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.column_names == ["step", "timestamp", "value"] and table.num_rows <= 100
    assert arrow.headers["x-lakeops-points-in-range"] == str(LONG_POINTS)


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        pytest.param({"points": 2}, 400, "points must be between", id="too-few-points"),
        pytest.param({"points": "many"}, 422, "points", id="not-a-number"),
        pytest.param({"min_step": 9, "max_step": 1}, 400, "greater than max_step", id="inverted-range"),
    ],
)
def test_downsampled_route_refuses_bad_input(lake: Lake, query: dict[str, object], status: int, message: str) -> None:
    r = httpx.get(f"{lake.url}/api/v1/runs/{lake.long_run_id}/metrics/wave/downsampled", params=query, timeout=60)
    assert r.status_code == status
    assert message in r.text


def test_downsampled_route_unknown_run_is_404(lake: Lake) -> None:
    r = httpx.get(f"{lake.url}/api/v1/runs/{'0' * 32}/metrics/wave/downsampled", timeout=60)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_client_metric_history_with_points(lake: Lake) -> None:
    import lakeops

    client = lakeops.connect(lake.url)
    try:
        frame = client.metric_history(lake.long_run_id, "wave", points=300)
        assert 0 < frame.height <= 300
        assert SPIKE_STEP in frame["step"].to_list()
        zoom = client.metric_history(lake.long_run_id, "wave", points=300, min_step=10, max_step=19)
        assert zoom["step"].to_list() == list(range(10, 20))
        full = client.metric_history(lake.run_ids[0], "loss")
        assert full.height == 50
    finally:
        client.close()


def test_run_page_draws_downsampled_chart_and_zooms(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    tab.goto(f"{lake.url}/#/experiments/{lake.long_experiment_id}/runs/{lake.long_run_id}")
    figure = tab.locator('figure[data-key="wave"]')
    chart = figure.locator(".chart")
    expect(chart).to_have_attribute("data-total", str(LONG_POINTS))
    drawn = int(chart.get_attribute("data-points") or 0)
    assert 0 < drawn <= 4000  # about two points per pixel column
    expect(figure.locator(".chart-info")).to_contain_text(f"of {LONG_POINTS:,} points")
    expect(chart.locator("canvas")).to_have_count(1)
    # Drag across a narrow strip near the left edge: the server sends that range at full resolution.
    over = chart.locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    tab.mouse.move(box["x"] + 5, box["y"] + box["height"] / 2)
    tab.mouse.down()
    tab.mouse.move(box["x"] + 9, box["y"] + box["height"] / 2, steps=4)
    tab.mouse.up()
    expect(figure.locator(".chart-info")).not_to_contain_text(f"of {LONG_POINTS:,}")
    zoomed_total = int(chart.get_attribute("data-total") or 0)
    assert 0 < zoomed_total < LONG_POINTS
    assert chart.get_attribute("data-points") == str(zoomed_total)  # all of the range, nothing left out


# -- comments and the activity feed --------------------------------------------------------------------------


def test_comments_routes(lake: Lake) -> None:
    run_id = lake.run_ids[1]
    with httpx.Client(base_url=lake.url, timeout=60) as http:
        r = http.post("/api/v1/comments", json={"target": f"run:{run_id}", "body": "ping @ana", "author": "bo"})
        assert r.status_code == 201, r.text
        posted = r.json()
        assert posted["mentions"] == ["ana"] and posted["target"] == f"run:{run_id}"
        listed = http.get("/api/v1/comments", params={"target": f"run:{run_id}"}).json()["comments"]
        assert [c["comment_id"] for c in listed] == [posted["comment_id"]]
        r = http.delete(f"/api/v1/comments/{posted['comment_id']}", params={"target": f"run:{run_id}"})
        assert r.status_code == 204
        assert http.get("/api/v1/comments", params={"target": f"run:{run_id}"}).json()["comments"] == []
        # Bad input: 4xx with the reason, nothing stored.
        r = http.post("/api/v1/comments", json={"target": "run:nope", "body": "x"})
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
        r = http.post("/api/v1/comments", json={"target": "table:x", "body": "x"})
        assert r.status_code == 400 and "must be one of run, model, version" in r.json()["error"]["message"]
        r = http.post("/api/v1/comments", json={"target": f"run:{run_id}", "body": ""})
        assert r.status_code == 400
        r = http.get("/api/v1/comments")
        assert r.status_code == 422
        r = http.delete(f"/api/v1/comments/{posted['comment_id']}", params={"target": f"run:{run_id}"})
        assert r.status_code == 404
        assert http.get("/api/v1/comments", params={"target": f"run:{run_id}"}).json()["comments"] == []


def test_client_comments(lake: Lake) -> None:
    import lakeops

    client = lakeops.connect(lake.url)
    try:
        posted = client.comment(f"run:{lake.run_ids[2]}", "from the client, cc @carl", author="dana")
        assert posted["mentions"] == ["carl"]
        assert [c["body"] for c in client.comments(f"run:{lake.run_ids[2]}")] == ["from the client, cc @carl"]
    finally:
        client.close()


def test_run_page_comments_with_mentions_and_activity_feed(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    run_id = lake.run_ids[3]
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}/runs/{run_id}")
    expect(tab.locator("#comment-list")).to_contain_text("No comments yet.")
    tab.get_by_label("Your name").fill("erin")
    tab.get_by_role("textbox", name="Comment").fill("loss plateaus at 0.03 <b>not bold</b> @frank please check")
    tab.get_by_role("button", name="Post comment").click()
    comment = tab.locator("#comment-list li").first
    expect(comment).to_contain_text("erin")
    expect(comment.locator(".mention")).to_have_text("@frank")
    expect(comment).to_contain_text("<b>not bold</b>")  # shown as text, never as markup

    tab.goto(f"{lake.url}/#/activity?kind=comment")
    feed = tab.locator("#activity")
    expect(feed).to_contain_text("erin")
    expect(feed).to_contain_text("loss plateaus")
    tab.get_by_label("Comments mentioning @").fill("frank")
    tab.get_by_role("button", name="Find").click()
    expect(tab.locator("#mentions li").first).to_contain_text("erin")
    tab.locator("#mentions li a").first.click()
    expect(tab.get_by_role("heading", level=1)).to_contain_text("run-03")
    assert f"#/experiments/{lake.experiment_id}/runs/{run_id}" in tab.url


# -- compare -----------------------------------------------------------------------------------------------------


def test_many_histories_in_one_call(lake: Lake) -> None:
    with httpx.Client(base_url=lake.url, timeout=60) as http:
        body = {"run_ids": [*lake.run_ids[:3], lake.long_run_id], "key": "loss", "points": 10}
        series = http.post("/api/v1/metrics/downsampled", json=body).json()["series"]
        assert [s["run_id"] for s in series] == body["run_ids"]
        assert [s["points_in_range"] for s in series] == [50, 50, 50, 0]  # the long run logged no "loss"
        assert all(len(s["steps"]) <= 10 for s in series)
        r = http.post("/api/v1/metrics/downsampled", json={**body, "run_ids": [*lake.run_ids[:1], "f" * 32]})
        assert r.status_code == 404 and "f" * 32 in r.json()["error"]["message"]
        assert http.post("/api/v1/metrics/downsampled", json={**body, "run_ids": []}).status_code == 422
        r = http.post("/api/v1/metrics/downsampled", json={**body, "points": 1})
        assert r.status_code == 400 and "points must be between" in r.json()["error"]["message"]


def test_select_runs_and_compare(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}?order=attributes.run_name+ASC")
    expect(tab.locator("#runs-table")).to_have_attribute("data-loaded-rows", str(RUNS))
    for name in ("run-00", "run-01", "run-02"):
        tab.get_by_label(f"Select {name}", exact=True).check()
    tab.get_by_role("button", name="Compare 3").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Compare 3 runs")
    expect(tab.locator("#compare-runs tbody tr")).to_have_count(3)
    diff = tab.locator("#param-diff")
    expect(diff.locator("thead")).to_contain_text("depth")
    expect(diff.locator("thead")).to_contain_text("lr")
    expect(diff.locator("thead")).not_to_contain_text("optimizer")
    expect(tab.locator("#param-same")).to_contain_text("optimizer=adam")
    curves = tab.locator("#curves")
    tab.get_by_label("Metric", exact=True).select_option("loss")
    expect(curves).to_have_attribute("data-total", "150")
    expect(curves.locator("canvas")).to_have_count(1)
    tab.get_by_label("Log scale").check()
    expect(curves.locator("canvas")).to_have_count(1)
    assert "log=1" in tab.url and "metric=loss" in tab.url
    tab.get_by_label("Param", exact=True).select_option("lr")
    tab.get_by_label("Metric (latest)").select_option("acc")
    expect(tab.locator("#scatter")).to_have_attribute("data-points", "3")


def test_compare_a_hundred_runs_curves(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    ids = ",".join(lake.run_ids)
    tab.goto(f"{lake.url}/#/compare?runs={ids}&metric=loss")
    expect(tab.get_by_role("heading", level=1)).to_have_text(f"Compare {RUNS} runs")
    expect(tab.locator("#curves")).to_have_attribute("data-total", str(RUNS * 50))
    expect(tab.locator("#curve-info")).to_contain_text(f"from {RUNS} runs")


def test_compare_parallel_coordinates_brush_keeps_runs(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    tab.goto(f"{lake.url}/#/compare?runs={','.join(lake.run_ids)}&metric=loss")
    box = tab.locator("#parallel")
    expect(box).to_have_attribute("data-lines", str(RUNS))
    expect(box).to_have_attribute("data-selected", str(RUNS))
    # The params that differ and the metrics are axes; optimizer (adam everywhere) is not.
    axes = box.locator("g.pc-axis")
    assert sorted(axes.evaluate_all("gs => gs.map(g => g.dataset.key)")) == ["m:acc", "m:loss", "p:depth", "p:lr"]
    expect(box.locator("path.kept")).to_have_count(RUNS)

    # A range typed in: depth 1 only.
    tab.get_by_label("Keep runs with").select_option("p:depth")
    tab.get_by_label("from", exact=True).fill("1")
    tab.get_by_label("to", exact=True).fill("1")
    tab.get_by_role("button", name="Keep range").click()
    expect(tab.locator("#pc-kept")).to_have_text(str(RUNS // 4))
    # A range dragged along the acc axis, from its top to its middle: acc >= ~0.49 (runs 20..39).
    hit = box.locator('g.pc-axis[data-key="m:acc"] .pc-hit').bounding_box()
    assert hit is not None
    x = hit["x"] + hit["width"] / 2
    tab.mouse.move(x, hit["y"] + 1)
    tab.mouse.down()
    tab.mouse.move(x, hit["y"] + hit["height"] / 2, steps=6)
    tab.mouse.up()
    expected = [f"run-{i:02d}" for i in range(RUNS) if i % 4 == 1 and i >= RUNS // 2]
    expect(tab.locator("#pc-kept")).to_have_text(str(len(expected)))
    expect(box).to_have_attribute("data-selected", str(len(expected)))
    assert sorted(tab.locator("#pc-kept-runs a").all_inner_texts()) == expected
    # A click on the depth axis clears its range: every run with acc in the dragged range again.
    depth = box.locator('g.pc-axis[data-key="p:depth"] .pc-hit')
    depth.click()
    expect(tab.locator("#pc-kept")).to_have_text(str(RUNS // 2))
    tab.get_by_role("button", name="Clear ranges").click()
    expect(tab.locator("#pc-summary")).to_contain_text(f"All {RUNS} runs")
    # Fewer columns, then compare what a range keeps.
    tab.locator("#pc-columns summary").click()
    tab.locator('#pc-columns input[data-axis="m:loss"]').uncheck()
    expect(axes).to_have_count(3)
    tab.get_by_label("Keep runs with").select_option("p:lr")
    tab.get_by_label("from", exact=True).fill("0.0305")
    tab.get_by_label("to", exact=True).fill("")
    tab.get_by_role("button", name="Keep range").click()
    expect(tab.locator("#pc-kept")).to_have_text("10")  # lr 0.031 .. 0.040
    tab.get_by_role("link", name="compare these 10").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Compare 10 runs")
    expect(tab.locator("#parallel")).to_have_attribute("data-lines", "10")


# -- registry ----------------------------------------------------------------------------------------------------


def test_models_page_moves_aliases_through_the_gate(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, problems = page
    problems.allow(r"HTTP 422: PUT .*/aliases/production")
    problems.allow(r"console: Failed to load resource: the server responded with a status of 422")
    tab.goto(f"{lake.url}/#/models")
    tab.get_by_role("link", name=lake.model_name).click()
    expect(tab.get_by_role("heading", level=1)).to_have_text(lake.model_name)
    versions = tab.locator("#versions tbody tr")
    expect(versions).to_have_count(2)
    expect(tab.locator('#versions tr[data-version="1"] .gate')).to_contain_text("was never validated")
    expect(tab.locator('#versions tr[data-version="2"] .gate')).to_have_text("passes")

    # A plain alias moves at once.
    tab.get_by_label("Alias", exact=True).fill("staging")
    tab.get_by_label("Version", exact=True).select_option("2")
    tab.get_by_role("button", name="Move alias").click()
    expect(tab.locator("#gate-answer")).to_contain_text("staging now points at v2")
    expect(tab.locator('#aliases tr[data-alias="staging"]')).to_contain_text("v2")

    # A protected alias asks the gate: its refusal is shown, and forcing needs a reason.
    tab.get_by_label("Alias", exact=True).fill("production")
    tab.get_by_label("Version", exact=True).select_option("1")
    tab.get_by_role("button", name="Move alias").click()
    expect(tab.locator("#gate-reasons")).to_contain_text("was never validated")
    expect(tab.locator("#aliases")).not_to_contain_text("production")
    tab.get_by_label("Override, because").fill("hotfix approved by ana")
    tab.get_by_role("button", name="Force").click()
    expect(tab.locator('#aliases tr[data-alias="production"]')).to_contain_text("v1")
    tab.locator('#aliases tr[data-alias="production"]').get_by_role("button", name="Show moves").click()
    expect(tab.locator("#alias-moves")).to_contain_text("forced")
    expect(tab.locator("#alias-moves")).to_contain_text("hotfix approved by ana")

    # Comments on the model and on a version.
    tab.get_by_label("Your name").fill("gus")
    tab.get_by_role("textbox", name="Comment").fill("ship it after @hana signs off")
    tab.get_by_role("button", name="Post comment").click()
    expect(tab.locator("#comment-list li").first.locator(".mention")).to_have_text("@hana")
    tab.locator('#versions tr[data-version="2"] a').first.click()
    expect(tab.get_by_role("heading", level=1)).to_contain_text("v2")
    expect(tab.locator("#version-info")).to_contain_text(lake.run_ids[1])
    expect(tab.locator("#comment-list")).to_contain_text("No comments yet.")


# -- SQL console -------------------------------------------------------------------------------------------------


def test_sql_console_runs_charts_downloads_and_saves(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, problems = page
    problems.allow(r"HTTP 400: POST .*/api/v1/sql")
    problems.allow(r"console: Failed to load resource: the server responded with a status of 400")
    tab.goto(f"{lake.url}/#/sql")
    editor = tab.get_by_role("textbox", name="SQL")
    query = (
        f"SELECT run_name, CAST(p.value AS DOUBLE) AS lr FROM runs JOIN params p USING (run_id) "
        f"WHERE experiment_id = '{lake.experiment_id}' AND p.key = 'lr' ORDER BY lr"
    )
    editor.fill(query)
    editor.press("Control+Enter")
    expect(tab.locator("#sql-status")).to_contain_text(f"{RUNS} rows")
    expect(tab.locator("#sql-table tbody tr")).to_have_count(RUNS)
    expect(tab.locator("#sql-table tbody tr").first).to_contain_text("run-00")
    with tab.expect_download() as download:
        tab.get_by_role("button", name="Download CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "run_name,lr" and lines[1] == "run-00,0.001" and len(lines) == RUNS + 1
    tab.get_by_label("Chart").check()
    tab.get_by_label("Y", exact=True).select_option("lr")
    expect(tab.locator("#sql-chart")).to_have_attribute("data-points", str(RUNS))

    name = f"lr-{uuid.uuid4().hex[:6]}"
    tab.get_by_label("Name", exact=True).fill(name)
    tab.get_by_label("Description").fill("learning rates")
    tab.get_by_role("button", name="Save").click()
    expect(tab.locator("#save-status")).to_contain_text(f"Saved as {name}")
    saved = httpx.get(f"{lake.url}/api/v1/saved-queries/{name}").json()
    assert saved["sql"] == query and saved["description"] == "learning rates"

    editor.fill("DELETE FROM runs")
    tab.get_by_role("button", name="Run").click()
    expect(tab.locator("#sql-result [role=alert]")).to_contain_text("DELETE is not allowed")
    tab.get_by_role("button", name=name).click()  # a saved query loads and runs
    expect(tab.locator("#sql-table tbody tr")).to_have_count(RUNS)


def test_sql_console_shows_the_last_run_not_the_last_answer(lake: Lake, page: tuple[Page, Problems]) -> None:
    """A query still running when the next one is asked for must not overwrite the later answer when it lands.

    The page runs the query in its URL on load (here a slow one); the user runs a fast one before it answers.
    """
    tab, _ = page
    slow = "SELECT count(*) AS n FROM range(150000000) t(i) WHERE i % 7 = 3"
    with tab.expect_response(lambda r: "/api/v1/sql" in r.url and "range(150000000)" in (r.request.post_data or "")):
        tab.goto(f"{lake.url}/#/sql?sql={quote(slow)}")
        editor = tab.get_by_role("textbox", name="SQL")
        editor.fill(f"SELECT run_id FROM runs WHERE experiment_id = '{lake.experiment_id}'")
        tab.get_by_role("button", name="Run").click()
        expect(tab.locator("#sql-table tbody tr")).to_have_count(RUNS)
    tab.evaluate("() => new Promise((done) => setTimeout(done, 300))")  # the slow answer's handler has run
    expect(tab.locator("#sql-table tbody tr")).to_have_count(RUNS)
    expect(tab.locator("#sql-status")).to_contain_text(f"{RUNS} rows")


def test_sql_route_answers_parquet(lake: Lake) -> None:
    query = "SELECT run_name, started_at, CAST(1 AS BIGINT) AS one FROM runs WHERE experiment_id = ? ORDER BY run_name"
    with httpx.Client(base_url=lake.url, timeout=60) as http:
        r = http.post("/api/v1/sql", json={"sql": query, "params": [lake.experiment_id]}, headers={"accept": PARQUET})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == PARQUET and r.headers["x-lakeops-truncated"] == "false"
        table = pq.read_table(pa.BufferReader(r.content))
        assert table.column_names == ["run_name", "started_at", "one"]
        assert table.column("run_name").to_pylist() == [f"run-{i:02d}" for i in range(RUNS)]
        assert pa.types.is_timestamp(table.schema.field("started_at").type)  # typed, unlike CSV
        assert table.schema.field("one").type == pa.int64()
        cut = http.post(
            "/api/v1/sql",
            json={"sql": query, "params": [lake.experiment_id], "max_rows": 5},
            headers={"accept": PARQUET},
        )
        assert (
            cut.headers["x-lakeops-truncated"] == "true" and pq.read_table(pa.BufferReader(cut.content)).num_rows == 5
        )
        bad = http.post("/api/v1/sql", json={"sql": "DROP TABLE runs"}, headers={"accept": PARQUET})
        assert bad.status_code == 400 and "DROP" in bad.json()["error"]["message"]  # errors stay JSON


def test_sql_console_downloads_parquet(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    query = f"SELECT run_name, started_at FROM runs WHERE experiment_id = '{lake.experiment_id}' ORDER BY run_name"
    tab.goto(f"{lake.url}/#/sql?sql={quote(query)}")
    expect(tab.locator("#sql-table tbody tr")).to_have_count(RUNS)
    with tab.expect_download() as download:
        tab.get_by_role("button", name="Download Parquet").click()
    assert download.value.suggested_filename == "lakeops-query.parquet"
    table = pq.read_table(download.value.path())
    assert table.column("run_name").to_pylist() == [f"run-{i:02d}" for i in range(RUNS)]
    assert pa.types.is_timestamp(table.schema.field("started_at").type)
    expect(tab.locator("#sql-status")).to_have_text("Parquet downloaded")


# -- lineage -----------------------------------------------------------------------------------------------------


def test_lineage_explorer_from_a_run_and_rerooted(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, _ = page
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}/runs/{lake.run_ids[0]}")
    tab.get_by_role("link", name="datasets in, models out").click()
    graph = tab.locator("#lineage-graph")
    nodes = tab.locator("#lineage-nodes")
    expect(nodes.locator('li[data-kind="dataset_version"]')).to_have_count(1)  # upstream: its training data
    expect(nodes.locator('li[data-kind="model_version"]')).to_contain_text(f"{lake.model_name}/1")  # downstream
    expect(graph.locator("g.lineage-node")).to_have_count(int(graph.get_attribute("data-nodes") or 0))
    assert int(graph.get_attribute("data-edges") or 0) >= 2
    # Re-root on the model version by keyboard: upstream now reaches the dataset in two hops.
    tab.locator(f'g.lineage-node[data-kind="model_version"][data-id="{lake.model_name}/1"]').focus()
    tab.keyboard.press("Enter")
    expect(tab.get_by_label("ID", exact=True)).to_have_value(f"{lake.model_name}/1")
    expect(nodes.locator('li[data-kind="dataset_version"]')).to_contain_text("2 up")
    assert "kind=model_version" in tab.url


def test_lineage_of_an_unknown_node_says_so(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, problems = page
    problems.allow(r"HTTP 404: GET .*/api/v1/lineage/")
    problems.allow(r"console: Failed to load resource: the server responded with a status of 404")
    tab.goto(f"{lake.url}/#/lineage?kind=run&id={'e' * 32}&direction=upstream")
    expect(tab.get_by_role("alert")).to_contain_text("e" * 32)


def test_lineage_shows_the_last_node_asked_for_not_the_last_answer(lake: Lake, page: tuple[Page, Problems]) -> None:
    """Re-rooting before the first graph answered: the first answer, landing last, must not replace the second.

    The browser holds the first request (to the real server) until the second graph is drawn, then lets it go.
    """
    tab, _ = page
    held: list[Route] = []
    tab.route("**/api/v1/lineage/run/**", lambda route: held.append(route))
    tab.goto(f"{lake.url}/#/lineage?kind=run&id={lake.run_ids[0]}&direction=upstream")
    expect(tab.locator("#lineage-graph")).to_contain_text("Loading")
    assert len(held) == 1
    tab.get_by_label("Node kind").select_option("model_version")
    tab.get_by_label("ID", exact=True).fill(f"{lake.model_name}/1")
    tab.get_by_role("button", name="Explore").click()
    nodes = tab.locator("#lineage-nodes")
    expect(nodes.locator('li[data-kind="dataset_version"]')).to_contain_text("2 up")
    with tab.expect_response(lambda r: "/api/v1/lineage/run/" in r.url):
        held[0].continue_()
    tab.evaluate("() => new Promise((done) => setTimeout(done, 300))")  # the late answer's handler has run
    expect(nodes.locator('li[data-kind="dataset_version"]')).to_contain_text("2 up")  # the run's graph: "1 up"
    expect(nodes.locator("li").filter(has_text="root")).to_contain_text(f"{lake.model_name}/1")


# -- time travel -------------------------------------------------------------------------------------------------


def _whole_second_from_now() -> float:
    """Wait for the next whole second and return it: the "As of" field has a resolution of one second."""
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.05)
    return float(math.ceil(now))


def _set_as_of(tab: Page, epoch_s: float) -> None:
    local = tab.evaluate(
        "ms => { const d = new Date(ms); return new Date(ms - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19); }",
        epoch_s * 1000,
    )
    tab.get_by_label("As of").fill(local)
    tab.get_by_label("As of").dispatch_event("change")


def test_as_of_shows_experiments_and_aliases_as_they_stood(lake: Lake, page: tuple[Page, Problems]) -> None:
    with httpx.Client(base_url=lake.url, timeout=60) as http:
        assert http.post("/api/v1/sql", json={"sql": "SELECT 1"}).status_code == 200  # commits what is queued
        before = _whole_second_from_now()
        late = f"late-{uuid.uuid4().hex[:6]}"
        assert http.post("/api/v1/experiments", json={"name": late}).status_code == 201
        r = http.put(f"/api/v1/registered-models/{lake.model_name}/aliases/canary", json={"version": 2})
        assert r.status_code == 200, r.text
    tab, _ = page
    tab.goto(f"{lake.url}/#/")
    expect(tab.locator("#experiments")).to_contain_text(late)
    _set_as_of(tab, before)
    expect(tab.get_by_role("status")).to_contain_text("As of")
    expect(tab.locator("#experiments")).to_contain_text(lake.experiment_name)
    expect(tab.locator("#experiments")).not_to_contain_text(late)

    tab.goto(f"{lake.url}/#/models/{lake.model_name}")  # the time stays chosen from page to page
    expect(tab.get_by_role("heading", level=1)).to_have_text(lake.model_name)
    expect(tab.locator("#versions")).to_be_visible()
    expect(tab.locator('#aliases tr[data-alias="canary"]')).to_have_count(0)
    expect(tab.locator("#move-alias")).to_have_count(0)  # no writes while looking at the past
    tab.get_by_role("button", name="Now").click()
    expect(tab.locator('#aliases tr[data-alias="canary"]')).to_contain_text("v2")

    _set_as_of(tab, before)
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}")
    expect(tab.get_by_role("heading", level=1)).to_have_text(f"{lake.experiment_name} runs")
    expect(tab.get_by_role("status")).to_contain_text("As of")  # the runs table answers as of the time too


def test_as_of_shows_a_run_as_it_stood(lake: Lake, page: tuple[Page, Problems]) -> None:
    with httpx.Client(base_url=lake.url, timeout=60) as http:
        r = http.post(f"/api/v1/experiments/{lake.long_experiment_id}/runs", json={"run_name": "then-and-now"})
        run_id = r.json()["info"]["run_id"]
        early = [
            {"key": "loss", "value": 1.0 / (s + 1), "timestamp": 1_700_000_000_000 + s, "step": s} for s in range(10)
        ]
        assert (
            http.post(f"/api/v1/runs/{run_id}/batch", json={"params": {"early": "1"}, "metrics": early}).status_code
            == 200
        )
        assert (
            http.post(
                "/api/v1/comments", json={"target": f"run:{run_id}", "body": "said before", "author": "ana"}
            ).status_code
            == 201
        )
        assert http.post("/api/v1/sql", json={"sql": "SELECT 1"}).status_code == 200  # commits what is queued
        before = _whole_second_from_now()
        late = [{"key": "loss", "value": 0.01, "timestamp": 1_700_000_001_000 + s, "step": s} for s in range(10, 20)]
        body = {"params": {"late": "2"}, "tags": {"stage": "late"}, "metrics": late}
        assert http.post(f"/api/v1/runs/{run_id}/batch", json=body).status_code == 200
        assert http.patch(f"/api/v1/runs/{run_id}", json={"status": "FINISHED"}).status_code == 200
        assert (
            http.post(
                "/api/v1/comments", json={"target": f"run:{run_id}", "body": "said after", "author": "bo"}
            ).status_code
            == 201
        )
        assert http.post("/api/v1/sql", json={"sql": "SELECT 1"}).status_code == 200
    tab, _ = page
    tab.goto(f"{lake.url}/#/")
    _set_as_of(tab, before)
    tab.goto(f"{lake.url}/#/experiments/{lake.long_experiment_id}/runs/{run_id}")
    expect(tab.get_by_role("heading", level=1)).to_contain_text("RUNNING")
    expect(tab.locator(".badge[role=status]")).to_contain_text("As of")
    expect(tab.locator("#params")).to_contain_text("early")
    expect(tab.locator("#params")).not_to_contain_text("late")
    expect(tab.locator("#tags")).not_to_contain_text("stage")
    loss = tab.locator("#metrics tbody tr").filter(has_text="loss")
    expect(loss.locator("td").nth(1)).to_have_text("0.1")  # loss then: 0.1 at step 9
    expect(loss.locator("td").nth(2)).to_have_text("9")
    chart = tab.locator('figure[data-key="loss"] .chart')
    expect(chart).to_have_attribute("data-total", "10")  # the history up to step 9
    expect(tab.locator("#comment-list")).to_contain_text("said before")
    expect(tab.locator("#comment-list")).not_to_contain_text("said after")
    expect(tab.locator("#comment-form")).to_have_count(0)  # no writes while looking at the past
    tab.get_by_role("button", name="Now").click()
    expect(tab.get_by_role("heading", level=1)).to_contain_text("FINISHED")
    expect(tab.locator("#params")).to_contain_text("late")
    expect(tab.locator("#tags")).to_contain_text("stage")
    expect(tab.locator('figure[data-key="loss"] .chart')).to_have_attribute("data-total", "20")
    expect(tab.locator("#comment-list")).to_contain_text("said after")
    expect(tab.locator("#comment-form")).to_have_count(1)


def test_as_of_shows_compare_runs_table_and_artifacts_as_they_stood(lake: Lake, page: tuple[Page, Problems]) -> None:
    """A run's param, metric and artifacts changed after T, and a run made after T: as of T, the runs table (filter
    and SQL modes, grouped too), compare and the artifact listing show the old values; Now shows the new ones."""
    with httpx.Client(base_url=lake.url, timeout=60) as http:
        exp_id = http.post("/api/v1/experiments", json={"name": f"tt-{uuid.uuid4().hex[:6]}"}).json()["experiment_id"]
        ids = []
        for name, lr, loss in (("first", "0.1", 1.0), ("second", "0.2", 2.0)):
            run_id = http.post(f"/api/v1/experiments/{exp_id}/runs", json={"run_name": name}).json()["info"]["run_id"]
            points = [{"key": "loss", "value": loss, "timestamp": 1_700_000_000_000 + s, "step": s} for s in range(5)]
            body = {"params": {"lr": lr}, "metrics": points}
            assert http.post(f"/api/v1/runs/{run_id}/batch", json=body).status_code == 200
            ids.append(run_id)
        first, second = ids
        root = http.get(f"/api/v1/runs/{first}").json()["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
        assert http.put(f"/api/v1/artifacts/{root}/early.txt", content=b"early\n").status_code == 201
        assert http.post("/api/v1/sql", json={"sql": "SELECT 1"}).status_code == 200  # commits what is queued
        before = _whole_second_from_now()
        late = [{"key": "loss", "value": 0.05, "timestamp": 1_700_000_001_000 + s, "step": s} for s in range(5, 10)]
        body = {"params": {"late": "x"}, "metrics": late}
        assert http.post(f"/api/v1/runs/{first}/batch", json=body).status_code == 200
        assert http.put(f"/api/v1/artifacts/{root}/later.txt", content=b"later\n").status_code == 201
        third = http.post(f"/api/v1/experiments/{exp_id}/runs", json={"run_name": "third"}).json()["info"]["run_id"]
        assert http.post("/api/v1/sql", json={"sql": "SELECT 1"}).status_code == 200
        # The API says why a time older than the lake cannot be answered.
        old = {"experiment_ids": [exp_id], "as_of": "2001-01-01T00:00:00Z"}
        r = http.post("/api/v1/runs/search", json=old)
        assert r.status_code == 400
        assert "before the lake's first commit" in r.json()["error"]["message"]
        assert http.post("/api/v1/runs/groups", json={**old, "group_by": "params.lr"}).status_code == 400
    tab, _ = page
    tab.goto(f"{lake.url}/#/")
    _set_as_of(tab, before)
    table = tab.locator("#runs-table")
    row = tab.locator(f'#runs-body .vt-row[data-run-id="{first}"]')
    loss = tab.get_by_role("columnheader", name="m.loss")

    def loss_of_first() -> Locator:
        index = [h.strip() for h in tab.locator("#runs-head .vt-cell").all_inner_texts()].index("m.loss")
        return row.locator(".vt-cell").nth(index)

    tab.goto(f"{lake.url}/#/experiments/{exp_id}")
    expect(tab.locator(".badge[role=status]")).to_contain_text("As of")
    expect(table).to_have_attribute("data-loaded-rows", "2")  # "third" did not exist yet
    expect(loss).to_be_visible()
    expect(loss_of_first()).to_have_text("1")
    expect(tab.get_by_role("columnheader", name="p.late")).to_have_count(0)
    tab.get_by_role("searchbox", name="Filter").fill("metrics.loss < 0.5")
    tab.get_by_role("button", name="Apply").click()
    expect(tab.locator("#runs-error")).to_contain_text("No runs match")
    # SQL mode, and grouped by a param in SQL mode, as of T.
    tab.get_by_label("Filter language").select_option("sql")
    tab.get_by_role("searchbox", name="Filter").fill('"metrics.loss" >= 1 OR "params.lr" = \'0.3\'')
    tab.get_by_role("button", name="Apply").click()
    expect(table).to_have_attribute("data-loaded-rows", "2")
    expect(loss_of_first()).to_have_text("1")
    tab.get_by_label("Group by").select_option("lr")
    expect(table).to_have_attribute("data-groups", "2")
    group = tab.locator('#runs-body .vt-group[data-group="0.1"]')
    expect(group).to_contain_text("1 run")
    expect(group).to_contain_text("x̄ 1")  # loss then
    tab.get_by_role("button", name="Expand lr = 0.1").click()
    expect(loss_of_first()).to_have_text("1")

    tab.goto(f"{lake.url}/#/compare?runs={first},{second},{third}&metric=loss")
    expect(tab.locator(".badge[role=status]")).to_contain_text("As of")
    expect(tab.locator("#compare-missing")).to_contain_text(third)
    compared = tab.locator("#compare-runs tbody tr").filter(has_text="first")
    expect(compared.locator("td").nth(3)).to_have_text("1")
    expect(tab.locator("#curves")).to_have_attribute("data-total", "10")  # steps 0-4 of both runs
    expect(tab.locator("#param-diff")).not_to_contain_text("late")

    tab.goto(f"{lake.url}/#/experiments/{exp_id}/runs/{first}")
    expect(tab.get_by_role("button", name="early.txt")).to_be_visible()
    expect(tab.get_by_role("button", name="later.txt")).to_have_count(0)

    tab.get_by_role("button", name="Now").click()
    expect(tab.get_by_role("button", name="later.txt")).to_be_visible()
    tab.goto(f"{lake.url}/#/compare?runs={first},{second},{third}&metric=loss")
    expect(compared.locator("td").nth(3)).to_have_text("0.05")
    expect(tab.locator("#curves")).to_have_attribute("data-total", "15")
    expect(tab.locator("#param-diff")).to_contain_text("late")
    tab.goto(f"{lake.url}/#/experiments/{exp_id}?mode=sql&filter=" + quote('"metrics.loss" < 0.5'))
    expect(table).to_have_attribute("data-loaded-rows", "1")
    expect(loss_of_first()).to_have_text("0.05")


# -- artifacts ---------------------------------------------------------------------------------------------------


def test_run_page_artifacts_versions_and_previews(lake: Lake, page: tuple[Page, Problems]) -> None:
    run_id = lake.run_ids[4]
    with httpx.Client(base_url=lake.url, timeout=60) as http:
        root = http.get(f"/api/v1/runs/{run_id}").json()["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
        for body in (b"first draft\n", b"second draft <script>alert(1)</script>\n"):
            assert http.put(f"/api/v1/artifacts/{root}/notes.txt", content=body).status_code == 201
        assert (
            http.put(f"/api/v1/artifacts/{root}/eval/scores.csv", content=b"k,score\na,0.5\nb,0.75\n").status_code
            == 201
        )
    tab, _ = page
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}/runs/{run_id}")
    tab.get_by_role("button", name="notes.txt").click()
    versions = tab.locator("#artifact-versions tbody tr")
    expect(versions).to_have_count(2)
    expect(tab.locator("#artifact-text")).to_contain_text("second draft <script>")  # text, never markup
    tab.get_by_role("button", name="v1").click()
    expect(tab.locator("#artifact-text")).to_have_text("first draft\n")
    tab.get_by_role("button", name="📁 eval/").click()
    tab.get_by_role("button", name="scores.csv").click()
    expect(tab.locator("#artifact-table tbody tr")).to_have_count(2)
    expect(tab.locator("#artifact-table")).to_contain_text("0.75")


# -- traces on the run page ---------------------------------------------------------------------------------------


def test_run_page_lists_its_traces_with_spans(
    lake: Lake, page: tuple[Page, Problems], shots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.entities import AssessmentSource, SpanType

    @mlflow.trace(name="answer", span_type=SpanType.AGENT)
    def answer(question: str) -> str:
        with mlflow.start_span("retrieve", span_type=SpanType.RETRIEVER) as span:
            span.set_inputs({"query": question})
            span.set_outputs(["faq#12"])
        if question == "boom":
            raise ValueError("no answer")
        return "Restart the router."

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(lake.url)
    try:
        with mlflow.start_run(experiment_id=lake.long_experiment_id, run_name="traced") as run:
            answer("My internet is down")
            ok_id = mlflow.get_last_active_trace_id()
            with pytest.raises(ValueError, match="no answer"):
                answer("boom")
        mlflow.flush_trace_async_logging()
        mlflow.log_feedback(
            trace_id=ok_id, name="helpful", value=True, source=AssessmentSource(source_type="HUMAN", source_id="ana")
        )
    finally:
        mlflow.tracing.reset()
        mlflow.set_tracking_uri(previous)
    tab, _ = page
    tab.goto(f"{lake.url}/#/experiments/{lake.long_experiment_id}/runs/{run.info.run_id}")
    traces = tab.locator("#traces tbody tr[data-trace-id]")
    expect(traces).to_have_count(2)
    ok = tab.locator(f'#traces tr[data-trace-id="{ok_id}"]')
    expect(ok).to_contain_text("OK")
    expect(ok.locator(".span-count")).to_have_text("2")
    expect(ok).to_contain_text("AGENT, RETRIEVER")
    expect(ok).to_contain_text("My internet is down")
    failed = traces.filter(has_not=tab.locator(f'[data-trace-id="{ok_id}"]')).filter(has_text="ERROR")
    expect(failed.locator(".span-count")).to_contain_text("1 failed")
    # Expand the OK trace: its spans as a tree, the child's inputs and outputs, the feedback.
    ok.get_by_role("button", name="answer").click()
    detail = tab.locator(f"#spans-{ok_id}")
    expect(detail.locator('tr[data-span="answer"]')).to_have_attribute("data-depth", "0")
    expect(detail.locator('tr[data-span="retrieve"]')).to_have_attribute("data-depth", "1")
    detail.locator('tr[data-span="retrieve"] summary').click()
    expect(detail.locator('tr[data-span="retrieve"] pre').first).to_contain_text("My internet is down")
    expect(detail.locator(".assessments")).to_contain_text("helpful")
    expect(detail.locator(".assessments")).to_contain_text("ana")
    tab.locator("#run-traces").screenshot(path=str(shots / "run_page_traces.png"))
    detail.get_by_role("link", name="These spans in SQL").click()
    expect(tab.locator("#sql-table tbody tr")).to_have_count(2)


# -- every page on S3 ----------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_every_page_on_s3(s3_lake: Lake, page: tuple[Page, Problems]) -> None:
    lake = s3_lake
    tab, _ = page
    tab.goto(f"{lake.url}/#/")
    expect(tab.locator(f'tr[data-experiment-id="{lake.experiment_id}"] .runs-count')).to_have_text(str(RUNS))
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}?order=attributes.run_name+ASC")
    expect(tab.locator("#runs-table")).to_have_attribute("data-loaded-rows", str(RUNS))
    for name in ("run-00", "run-01", "run-02"):
        tab.get_by_label(f"Select {name}", exact=True).check()
    tab.get_by_role("button", name="Compare 3").click()
    tab.get_by_label("Metric", exact=True).select_option("loss")
    expect(tab.locator("#curves")).to_have_attribute("data-total", "150")
    expect(tab.locator("#param-same")).to_contain_text("optimizer=adam")

    tab.goto(f"{lake.url}/#/experiments/{lake.long_experiment_id}/runs/{lake.long_run_id}")
    expect(tab.locator('figure[data-key="wave"] .chart')).to_have_attribute("data-total", str(LONG_POINTS))
    tab.get_by_label("Your name").fill("s3-user")
    tab.get_by_role("textbox", name="Comment").fill("on S3 too, @ana")
    tab.get_by_role("button", name="Post comment").click()
    expect(tab.locator("#comment-list li").first.locator(".mention")).to_have_text("@ana")

    tab.goto(f"{lake.url}/#/models/{lake.model_name}")
    expect(tab.locator('#versions tr[data-version="1"] .gate')).to_contain_text("was never validated")
    tab.goto(f"{lake.url}/#/lineage?kind=run&id={lake.run_ids[0]}")
    expect(tab.locator('#lineage-nodes li[data-kind="dataset_version"]')).to_have_count(1)
    tab.goto(f"{lake.url}/#/sql")
    tab.get_by_role("textbox", name="SQL").fill(f"SELECT run_id FROM runs WHERE experiment_id = '{lake.experiment_id}'")
    tab.get_by_role("button", name="Run").click()
    expect(tab.locator("#sql-table tbody tr")).to_have_count(RUNS)
    tab.goto(f"{lake.url}/#/activity?kind=comment")
    expect(tab.locator("#activity")).to_contain_text("s3-user")


def test_runs_table_sql_mode_answers_what_mlflow_filters_cannot(lake: Lake, page: tuple[Page, Problems]) -> None:
    tab, problems = page
    problems.allow(r"HTTP 400: POST .*/api/v1/sql")
    problems.allow(r"console: Failed to load resource: the server responded with a status of 400")
    tab.goto(f"{lake.url}/#/experiments/{lake.experiment_id}")
    table = tab.locator("#runs-table")
    expect(table).to_have_attribute("data-loaded-rows", str(RUNS))
    tab.get_by_label("Filter language").select_option("sql")
    tab.get_by_role("searchbox", name="Filter").fill(
        """"params.depth" = '1' OR "metrics.acc" > 0.9"""
    )  # OR: not in MLflow's
    tab.get_by_role("button", name="Apply").click()
    expected = sorted(f"run-{i:02d}" for i in range(RUNS) if i % 4 == 1 or i / RUNS > 0.9)
    expect(table).to_have_attribute("data-loaded-rows", str(len(expected)))
    names = tab.locator("#runs-body .vt-row .vt-cell:nth-child(2)")
    assert sorted(names.all_inner_texts()) == expected
    tab.get_by_role("columnheader", name="Run").click()  # DESC by run name, in SQL
    expect(tab.locator("#runs-body .vt-row").first).to_contain_text(expected[-1])
    assert "mode=sql" in tab.url
    tab.get_by_role("searchbox", name="Filter").fill("no_such_column > 1")
    tab.get_by_role("button", name="Apply").click()
    expect(tab.get_by_role("alert")).to_contain_text("no_such_column")
