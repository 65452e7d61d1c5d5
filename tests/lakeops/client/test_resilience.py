"""The client against a real server that goes away: buffering, backpressure, retries, exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lakes import make_settings
from serve_process import ServeProcess, child_env

import lakeops
from lakeops.errors import BackendUnavailableError
from lakeops.settings import LakeopsSettings
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

pytestmark = pytest.mark.api


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll until ``condition`` holds (a liveness deadline, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> LakeopsSettings:
    kind: str = request.param
    s3 = request.getfixturevalue("s3_server") if kind != "file" else None
    return make_settings(kind, tmp_path / "home", s3)


@pytest.fixture
def server(lake: LakeopsSettings, tmp_path: Path) -> Iterator[ServeProcess]:
    srv = ServeProcess(lake, tmp_path / "serve.log")
    yield srv
    srv.stop()


def test_points_logged_while_the_server_restarts_all_arrive(server: ServeProcess) -> None:
    cap, batch = 2_000, 500
    client = lakeops.connect(server.url, max_buffered_points=cap, batch_size=batch, flush_interval_s=0.05)
    run = client.start_run("restart", "survivor", params={"lr": 0.1})
    for step in range(1_000):
        run.log_metric("loss", float(step), step=step)
    run.flush()

    server.stop()
    total = 10_000
    peak = 0

    def train() -> None:
        nonlocal peak
        for step in range(1_000, total):
            run.log_metric("loss", float(step), step=step)
            peak = max(peak, client.sender.pending())

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    # With the server down the buffer fills up, then log_metric blocks: memory stays bounded.
    _wait_for(lambda: len(client.sender.queue) >= cap, "the buffer to fill")
    assert trainer.is_alive()
    with pytest.raises(BackendUnavailableError, match="stay queued"):
        client.flush(timeout=0.5)
    assert client.sender.pending() <= cap + batch + 1  # + the flush marker, which never waits for room

    server.start()  # same port, same home
    trainer.join(timeout=120)
    assert not trainer.is_alive()
    run.flush()
    run.end()
    assert peak <= cap + batch + 1

    history = client.metric_history(run.run_id, "loss")
    assert history.height == total
    assert history["step"].to_list() == list(range(total))
    assert history["value"].to_list() == [float(s) for s in range(total)]
    assert client.get_run(run.run_id).status == "FINISHED"
    client.close()


SCRIPT = textwrap.dedent(
    """
    import sys
    import lakeops

    client = lakeops.connect(sys.argv[1]) if len(sys.argv) > 1 else lakeops.connect()
    run = client.start_run("atexit", "no-flush")
    for step in range(5000):
        run.log_metric("loss", float(step), step=step)
    print(run.run_id, flush=True)
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("pyiceberg", "duckdb")), flush=True)
    # no flush, no close, no end: the interpreter's exit must ship the points
    """
)


def _run_script(tmp_path: Path, settings: LakeopsSettings, *args: str) -> tuple[str, str]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    assert "lakeops:" not in done.stderr, done.stderr
    run_id, modules = done.stdout.strip().splitlines()
    return run_id, modules


def test_exit_flushes_over_http_without_pyiceberg(server: ServeProcess, tmp_path: Path) -> None:
    run_id, modules = _run_script(tmp_path, server.settings, server.url)
    assert modules == "[]"  # the HTTP client never imports pyiceberg or duckdb
    client = lakeops.connect(server.url)
    assert client.metric_history(run_id, "loss").height == 5000
    client.close()


def test_exit_flushes_embedded(lake: LakeopsSettings, tmp_path: Path) -> None:
    run_id, _modules = _run_script(tmp_path, lake)
    store = open_store(lake)
    try:
        assert TrackingService(store).metric_history_table(run_id, "loss").num_rows == 5000
    finally:
        store.close()
