"""``lakeops serve`` as a user runs it: what it prints, when, and what it logs per request."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_process import child_env

from lakeops.settings import LakeopsSettings, LocalStorageConfig, SqlCatalogConfig

pytestmark = pytest.mark.api  # each test starts `lakeops serve`

SERVING = re.compile(r"lakeops serving \S+ on (http://127\.0\.0\.1:(\d+)) \(docs at /docs\)")


class Output:
    """The lines a child writes to stdout, as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self.reader = threading.Thread(target=lambda: [self.lines.put(line) for line in stream], daemon=True)
        self.reader.start()

    def rest(self) -> str:
        """Everything written so far and not yet read (call once the child has exited)."""
        self.reader.join(timeout=10)
        return "".join(self.seen) + "".join(self.lines.queue)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 90) -> re.Match[str]:
        """The first line (from now on) that matches, or AssertionError with what came instead."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r}; got {self.seen!r}")


def _serve(home: Path, *args: str) -> subprocess.Popen[str]:
    settings = LakeopsSettings(home=home, storage=LocalStorageConfig(), catalog=SqlCatalogConfig())
    return subprocess.Popen(
        [sys.executable, "-m", "lakeops.cli", "serve", "--port", "0", *args],
        env=child_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serving_is_printed_once_the_port_accepts_connections_then_one_access_line_per_request(
    tmp_path: Path, stop: list[subprocess.Popen[str]]
) -> None:
    proc = _serve(tmp_path / "lake")
    stop.append(proc)
    out = Output(proc)
    serving = out.wait_for(SERVING)
    url = serving.group(1)
    assert int(serving.group(2)) > 0  # --port 0: the port actually bound is the one printed
    # No retry: the moment the line is printed, the server answers.
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    out.wait_for(r'127\.0\.0\.1:\d+ "GET /health HTTP/1\.1" 200')
    assert httpx.get(f"{url}/api/v1/experiments/404404", timeout=10).status_code == 404
    out.wait_for(r'"GET /api/v1/experiments/404404 HTTP/1\.1" 404')
    # great-expectations is imported in the background, not inside the first suite request.
    out.wait_for(r"great-expectations imported in [\d.]+ s: expectation suites are ready", timeout=120)
    assert not [line for line in out.seen if "great_expectations" in line]  # its import chatter stays quiet


def test_ctrl_c_stops_the_server_without_a_traceback(tmp_path: Path, stop: list[subprocess.Popen[str]]) -> None:
    proc = _serve(tmp_path / "lake", "--no-preload")
    stop.append(proc)
    out = Output(proc)
    out.wait_for(SERVING)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    rest = out.rest()
    assert "Finished server process" in rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest


def test_log_level_warning_has_no_access_log(tmp_path: Path, stop: list[subprocess.Popen[str]]) -> None:
    proc = _serve(tmp_path / "lake", "--log-level", "warning")
    stop.append(proc)
    out = Output(proc)
    url = out.wait_for(SERVING).group(1)
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    proc.terminate()
    proc.wait(timeout=30)
    assert "GET /health" not in out.rest()


def test_an_unknown_log_level_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lakeops.cli", "serve", "--log-level", "chatty"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "invalid choice: 'chatty'" in done.stderr
