"""SQL without a store reads the lake as it is: it never creates, evolves or commits anything."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from serve_process import child_env

from catalog import views
from catalog.connection import open_catalog
from catalog.tables import SAVED_QUERY_CHANGES, TABLES
from lakeops.errors import BackendUnavailableError, InvalidArgumentError
from lakeops.settings import LakeopsSettings
from lakeops.sql import SqlEngine
from lakeops.stores import open_store
from lakeops.tracking import TrackingService


def _metadata_locations(settings: LakeopsSettings) -> dict[str, str]:
    catalog = open_catalog("lakeops", settings.catalog_properties())
    return {d.name: catalog.load_table((settings.namespace, d.name)).metadata_location for d in TABLES}


def test_reading_changes_nothing_in_the_lake(lake_settings: LakeopsSettings) -> None:
    store = open_store(lake_settings)
    tracking = TrackingService(store)
    experiment_id = tracking.create_experiment("readonly")
    first = tracking.create_run(experiment_id, run_name="first").info.run_id
    store.commit()
    between = datetime.now(UTC)
    tracking.create_run(experiment_id, run_name="second")
    store.close()
    before = _metadata_locations(lake_settings)
    engine = SqlEngine(lake_settings)
    try:
        names = engine.query(
            "SELECT run_name FROM runs WHERE experiment_id = ? ORDER BY run_name", params=[experiment_id]
        )
        assert names.column("run_name").to_pylist() == ["first", "second"]
        then = engine.query("SELECT run_id FROM runs WHERE experiment_id = ?", params=[experiment_id], as_of=between)
        assert then.column("run_id").to_pylist() == [first]
    finally:
        engine.close()
    assert _metadata_locations(lake_settings) == before


def test_no_lake_yet_is_said_and_nothing_is_created(lake_settings: LakeopsSettings) -> None:
    engine = SqlEngine(lake_settings)
    try:
        with pytest.raises(BackendUnavailableError, match=r"there is no lake at .* yet"):
            engine.query("SELECT count(*) FROM runs")
    finally:
        engine.close()
    if lake_settings.catalog.kind == "sql":
        assert not (lake_settings.home / "catalog.db").exists()


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_a_table_missing_from_an_older_lake_is_named(lake_settings: LakeopsSettings) -> None:
    open_store(lake_settings).close()
    open_catalog("lakeops", lake_settings.catalog_properties()).drop_table(
        (lake_settings.namespace, SAVED_QUERY_CHANGES.name)
    )
    engine = SqlEngine(lake_settings)
    try:
        with pytest.raises(BackendUnavailableError, match=f"has no table {SAVED_QUERY_CHANGES.name} yet") as caught:
            engine.query("SELECT count(*) FROM saved_queries")
        assert caught.value.details == {"missing": [SAVED_QUERY_CHANGES.name]}
    finally:
        engine.close()


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_the_command_line_imports_no_pyiceberg_on_a_sqlite_catalog(lake_settings: LakeopsSettings) -> None:
    """What keeps `lakeops sql` under a CPU-second (benchmarks/bench_ops.py): pyiceberg, pandas and polars stay out."""
    store = open_store(lake_settings)
    TrackingService(store).create_experiment("imports")
    store.close()
    code = (
        "import sys\n"
        "from lakeops.cli import main\n"
        "assert main(['sql', 'SELECT name FROM experiments ORDER BY name']) == 0\n"
        "print(sorted(m for m in ('pyiceberg', 'pandas', 'polars', 'sqlalchemy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=child_env(lake_settings), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "imports" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("backend", ["file", "s3"], indirect=True)
def test_one_engine_answers_queries_over_different_views(lake_settings: LakeopsSettings) -> None:
    """Without a store, views are registered as queries need them; every view stays reachable."""
    store = open_store(lake_settings)
    tracking = TrackingService(store)
    experiment_id = tracking.create_experiment("lazy")
    run_id = tracking.create_run(experiment_id, run_name="only").info.run_id
    tracking.log_batch(run_id, params={"depth": "3"}, metrics=[("acc", 0.5, 1, 0)])
    store.close()
    engine = SqlEngine(lake_settings)
    try:
        assert engine.query("SELECT name FROM experiments WHERE name = 'lazy'").num_rows == 1
        wide = engine.query('SELECT run_name, "params.depth", "metrics.acc" FROM runs_wide(?)', params=["lazy"])
        assert wide.to_pylist() == [{"run_name": "only", "params.depth": "3", "metrics.acc": 0.5}]
        changes = engine.query("SELECT count(*) AS n FROM activity WHERE run_id = ?", params=[run_id])
        assert changes.column("n")[0].as_py() >= 1
        listed = engine.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
        assert set(listed.column("table_name").to_pylist()) == set(views.view_definitions())
        with pytest.raises(InvalidArgumentError, match='Did you mean "runs"'):
            engine.query("SELECT * FROM runz")
    finally:
        engine.close()
