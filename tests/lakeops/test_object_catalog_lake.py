"""A lake on the object-store catalog: the default for s3://, replicas sharing it, and migrating to it.

The catalog itself has its contract in ``tests/catalog/test_object_catalog.py``; here the lake
runs on it end to end: runs logged by one replica are seen by another through one listing of the
pointers, and an existing lake's SQLite catalog is moved to it by ``lakeops migrate-catalog``
without rewriting a data file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lakes import make_settings, settings_json
from pydantic import SecretStr

from lakeops import cli
from lakeops.errors import BackendUnavailableError
from lakeops.settings import LakeopsSettings, LocalStorageConfig, ObjectCatalogConfig, S3StorageConfig
from lakeops.sql import SqlEngine
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

OBJECT_KINDS = [pytest.param("file-object", id="file"), pytest.param("s3-object", id="s3", marks=pytest.mark.s3)]


def test_s3_lakes_default_to_the_object_store_catalog() -> None:
    s3 = S3StorageConfig(bucket="lake", endpoint="http://127.0.0.1:9000", secret_access_key=SecretStr("s"))
    assert LakeopsSettings(storage=s3).catalog.kind == "object"
    props = LakeopsSettings(storage=s3).catalog_properties()
    assert props["warehouse"] == "s3://lake/lakeops" and "uri" not in props
    assert LakeopsSettings(storage=LocalStorageConfig()).catalog.kind == "sql"
    assert LakeopsSettings(storage=s3, catalog={"kind": "sql"}).catalog.kind == "sql"  # type: ignore[arg-type]


def test_environment_selects_the_object_store_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEOPS_STORAGE__KIND", "s3")
    monkeypatch.setenv("LAKEOPS_STORAGE__BUCKET", "lake")
    assert LakeopsSettings().catalog.kind == "object"
    monkeypatch.setenv("LAKEOPS_CATALOG__KIND", "sql")
    assert LakeopsSettings().catalog.kind == "sql"
    monkeypatch.setenv("LAKEOPS_STORAGE__KIND", "local")
    monkeypatch.delenv("LAKEOPS_STORAGE__BUCKET")
    monkeypatch.setenv("LAKEOPS_CATALOG__KIND", "object")
    assert LakeopsSettings().catalog.kind == "object"  # selectable on file:// too


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_replicas_share_a_lake_with_no_database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    s3 = request.getfixturevalue("s3_server") if kind.startswith("s3") else None
    settings = make_settings(kind, tmp_path / "a", s3)
    a = open_store(settings, start_committer=False)
    shared: dict[str, object] = {"home": tmp_path / "b"}  # its own home (log, state); the same warehouse
    if kind == "file-object":
        shared["storage"] = LocalStorageConfig(root=tmp_path / "a" / "warehouse")
    b = open_store(settings.model_copy(update=shared), start_committer=False)
    try:
        assert not (tmp_path / "a" / "catalog.db").exists()
        b.refresh()
        assert b._moved_tables() == set()  # one listing of the pointers says nothing moved
        ta = TrackingService(a)
        run_id = ta.create_run(ta.create_experiment("shared")).info.run_id
        ta.log_batch(run_id, metrics=[("loss", 0.25, 1_000, 1)], params={"lr": "0.1"})
        a.commit()
        assert {"experiment_changes", "run_changes", "params", "metrics"} <= (b._moved_tables() or set())
        b.refresh()
        run = TrackingService(b).get_run(run_id)
        assert run.params == {"lr": "0.1"} and run.metrics["loss"].value == 0.25
        engine = SqlEngine(settings)  # the read-only path reads the pointers without pyiceberg
        try:
            assert engine.query("SELECT count(*) AS n FROM runs").column("n").to_pylist() == [1]
        finally:
            engine.close()
    finally:
        b.close()
        a.close()


def _data_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*.parquet")}


@pytest.fixture
def lake_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("LAKEOPS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LAKEOPS_CONFIG", os.devnull)


def _use(monkeypatch: pytest.MonkeyPatch, settings: LakeopsSettings, *, catalog: str | None) -> None:
    """Environment for the CLI: the lake of ``settings``, with the given catalog kind (None: the default)."""
    plain = json.loads(settings_json(settings))
    monkeypatch.setenv("LAKEOPS_HOME", str(settings.home))
    monkeypatch.setenv("LAKEOPS_STORAGE", json.dumps(plain["storage"]))
    if catalog is None:
        monkeypatch.delenv("LAKEOPS_CATALOG", raising=False)
    else:
        monkeypatch.setenv("LAKEOPS_CATALOG", json.dumps({"kind": catalog}))


@pytest.mark.usefixtures("lake_env")
@pytest.mark.parametrize("kind", [pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)])
def test_migrate_catalog_moves_a_sqlite_lake_without_rewriting_data(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3 = request.getfixturevalue("s3_server") if kind == "s3" else None
    old = make_settings(kind, tmp_path / "home", s3)  # a lake built by the SQLite-catalog version
    store = open_store(old)
    tracking = TrackingService(store)
    run_id = tracking.create_run(tracking.create_experiment("before")).info.run_id
    tracking.log_batch(run_id, metrics=[("loss", 0.5, 1_000, 1)], params={"lr": "0.1"})
    store.close()
    before = _data_files(tmp_path / "home") if kind == "file" else None

    new = old.model_copy(update={"catalog": ObjectCatalogConfig()})
    if kind == "s3":  # the default for s3:// is now the object-store catalog: it refuses to hide the old tables
        assert LakeopsSettings(home=old.home, storage=old.storage).catalog.kind == "object"
        with pytest.raises(BackendUnavailableError, match="lakeops migrate-catalog"):
            open_store(new, start_committer=False)

    _use(monkeypatch, old, catalog="object" if kind == "file" else None)
    assert cli.main(["migrate-catalog", "--dry-run"]) == 0
    assert "would register" in capsys.readouterr().out
    assert cli.main(["migrate-catalog"]) == 0
    out = capsys.readouterr().out
    assert "registered " in out and "no data file rewritten" in out
    assert cli.main(["migrate-catalog"]) == 0  # again: nothing to do
    assert "registered 0 of" in capsys.readouterr().out

    moved = open_store(new, start_committer=False)
    try:
        run = TrackingService(moved).get_run(run_id)
        assert run.params == {"lr": "0.1"} and run.metrics["loss"].value == 0.5
        TrackingService(moved).log_batch(run_id, metrics=[("loss", 0.25, 2_000, 2)])
        moved.commit()
    finally:
        moved.close()
    if before is not None:
        after = _data_files(tmp_path / "home")
        assert {k: after[k] for k in before} == before  # every data file still there, untouched
