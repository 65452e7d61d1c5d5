"""``lakeops sql`` and ``lakeops queries``: the command line over the views, as a user runs it."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lakeops.settings import LakeopsSettings
from lakeops.stores import open_store
from lakeops.tracking import TrackingService


def _env(settings: LakeopsSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEOPS_")}
    env["LAKEOPS_HOME"] = str(settings.home)
    env["LAKEOPS_NAMESPACE"] = settings.namespace
    for section in ("storage", "catalog"):
        for key, value in getattr(settings, section).model_dump().items():
            if value is not None:
                text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
                env[f"LAKEOPS_{section.upper()}__{key.upper()}"] = text
    return env


def _swap_environment(env: dict[str, str]) -> None:
    """Make ``os.environ`` equal ``env`` key by key (never empty: other threads may read HOME meanwhile)."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    os.environ.update(env)


def _lakeops(
    settings: LakeopsSettings, *args: str, stdin: str | None = None, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """``lakeops <args>`` on this lake: in this process by default, as a child process with ``process``.

    In-process runs ``lakeops.cli.main`` with the same environment, arguments, stdin, stdout and
    stderr a child would get; it saves the interpreter start and imports (seconds per call, ~30
    calls here). ``process=True`` keeps one end-to-end run of the installed command line.
    """
    if process:
        return subprocess.run(
            [sys.executable, "-m", "lakeops.cli", *args],
            env=_env(settings),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
    from lakeops.cli import main

    saved_env, saved_stdin = dict(os.environ), sys.stdin
    out, err = io.StringIO(), io.StringIO()
    _swap_environment(_env(settings))
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse
                code = int(exit_.code or 0)
    finally:
        _swap_environment(saved_env)
        sys.stdin = saved_stdin
    return subprocess.CompletedProcess(["lakeops", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(params=[pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest) -> str:
    """The command line runs on file:// and s3:// (a process start costs seconds: no REST round here)."""
    kind: str = request.param
    return kind


@pytest.fixture
def lake(lake_settings: LakeopsSettings) -> tuple[LakeopsSettings, str]:
    store = open_store(lake_settings)
    tracking = TrackingService(store)
    exp = tracking.create_experiment("cli")
    for i in range(3):
        run = tracking.create_run(exp, run_name=f"r{i}")
        tracking.log_batch(run.info.run_id, params={"depth": str(i)}, metrics=[("acc", i / 10, 1, 0)])
    store.close()
    return lake_settings, exp


def test_sql_prints_a_table_csv_json_and_parquet(lake: tuple[LakeopsSettings, str], tmp_path: Path) -> None:
    settings, exp = lake
    query = 'SELECT run_name, "metrics.acc" AS acc FROM runs_wide(?) ORDER BY acc DESC'
    shown = _lakeops(settings, "sql", query, "-p", exp, process=True)  # the installed command, end to end
    # A number-looking parameter stays text: it compares with the VARCHAR experiment_id, and with numbers.
    by_id = _lakeops(
        settings,
        "sql",
        "SELECT count(*) AS n FROM runs WHERE experiment_id = ? AND 1 < ?",
        "-p",
        exp,
        "-p",
        "2",
        "--format",
        "json",
    )
    assert by_id.returncode == 0, by_id.stderr
    assert json.loads(by_id.stdout) == [{"n": 3}]
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.index("r2") < shown.stdout.index("r1") < shown.stdout.index("r0")
    as_csv = _lakeops(settings, "sql", query, "-p", exp, "--format", "csv")
    assert list(csv.DictReader(io.StringIO(as_csv.stdout))) == [
        {"run_name": "r2", "acc": "0.2"},
        {"run_name": "r1", "acc": "0.1"},
        {"run_name": "r0", "acc": "0"},
    ]
    as_json = _lakeops(settings, "sql", "SELECT count(*) AS n FROM runs", "--format", "json")
    assert json.loads(as_json.stdout) == [{"n": 3}]
    out = tmp_path / "runs.parquet"
    done = _lakeops(settings, "sql", "SELECT * FROM runs", "--format", "parquet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).num_rows == 3
    piped = _lakeops(settings, "sql", "-", "--format", "json", stdin="SELECT 1 AS one")
    assert json.loads(piped.stdout) == [{"one": 1}]
    old = _lakeops(
        settings, "sql", "SELECT count(*) AS n FROM runs", "--as-of", "2001-01-01T00:00:00Z", "--format", "json"
    )
    assert old.returncode == 2 and "is before the lake's first commit" in old.stderr
    cut = _lakeops(settings, "sql", "SELECT * FROM runs", "--max-rows", "1", "--format", "json")
    assert len(json.loads(cut.stdout)) == 1 and "cut at 1 rows" in cut.stderr


def test_sql_refusals_exit_2_with_the_reason(lake: tuple[LakeopsSettings, str]) -> None:
    settings, _exp = lake
    for sql, message in [
        ("ATTACH ':memory:' AS x", "ATTACH is not allowed"),
        ("COPY runs TO 'x.csv'", "COPY is not allowed"),
        ("SELECT * FROM read_text('/etc/passwd')", "SQL refused"),
        ("SET threads = 1", "SET, RESET and USE are not allowed"),
    ]:
        done = _lakeops(settings, "sql", sql)
        assert done.returncode == 2
        assert message in done.stderr
    bad_time = _lakeops(settings, "sql", "SELECT 1", "--as-of", "yesterday")
    assert bad_time.returncode == 2 and "--as-of must be an ISO-8601 time" in bad_time.stderr


def test_saved_queries_from_the_command_line(lake: tuple[LakeopsSettings, str]) -> None:
    settings, exp = lake
    saved = _lakeops(
        settings,
        "queries",
        "save",
        "best",
        'SELECT run_name FROM runs_wide(?) ORDER BY "metrics.acc" DESC LIMIT 1',
        "--description",
        "the best run",
        "--author",
        "ana",
    )
    assert saved.returncode == 0, saved.stderr
    assert json.loads(saved.stdout)["author"] == "ana"
    again = _lakeops(settings, "queries", "save", "best", "SELECT 1")
    assert again.returncode == 2 and "already exists" in again.stderr
    listed = _lakeops(settings, "queries", "list", "--format", "json")
    assert listed.returncode == 0, (listed.stdout, listed.stderr)
    assert [q["name"] for q in json.loads(listed.stdout)] == ["best"]
    ran = _lakeops(settings, "sql", "--saved", "best", "-p", exp, "--format", "json")
    assert json.loads(ran.stdout) == [{"run_name": "r2"}], ran.stderr
    assert _lakeops(settings, "queries", "delete", "best").returncode == 0
    gone = _lakeops(settings, "sql", "--saved", "best")
    assert gone.returncode == 2 and "no saved query named 'best'" in gone.stderr
