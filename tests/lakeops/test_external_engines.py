"""Engines outside lakeops read the lake: the README's DuckDB and pyiceberg recipes, run as written."""

from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import urlparse

import duckdb
from pyiceberg.catalog import load_catalog

from lakeops.settings import LakeopsSettings
from lakeops.sql import SqlEngine
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService


def plain_duckdb(extension_dir: Path) -> duckdb.DuckDBPyConnection:
    """The README's recipe: a stock DuckDB with the extensions from the duckdb-extension-* PyPI packages."""
    con = duckdb.connect(config={"extension_directory": str(extension_dir)})
    for name in ("avro", "httpfs", "iceberg"):
        package = Path(importlib.import_module(f"duckdb_extension_{name}").__file__ or "").parent
        con.execute(f"INSTALL '{next(package.rglob(f'{name}.duckdb_extension'))}'")
        con.execute(f"LOAD {name}")
    return con


def _s3_secret(con: duckdb.DuckDBPyConnection, settings: LakeopsSettings) -> None:
    storage = settings.storage
    assert storage.kind == "s3" and storage.endpoint and storage.secret_access_key
    con.execute(
        f"""CREATE SECRET lake_s3 (TYPE s3, KEY_ID '{storage.access_key_id}',
            SECRET '{storage.secret_access_key.get_secret_value()}', REGION '{storage.region}',
            ENDPOINT '{urlparse(storage.endpoint).netloc}', URL_STYLE 'path', USE_SSL false)"""
    )


def _fill(tracking: TrackingService, store: IcebergStore, runs: int = 3) -> str:
    exp = tracking.create_experiment("outside")
    for i in range(runs):
        run = tracking.create_run(exp, run_name=f"r{i}")
        tracking.log_batch(run.info.run_id, params={"i": str(i)}, metrics=[("m", float(i), 1, 0)])
    store.commit()
    return exp


def test_duckdb_reads_the_tables_straight_from_the_warehouse(
    tracking: TrackingService, store: IcebergStore, lake_settings: LakeopsSettings, tmp_path: Path, backend: str
) -> None:
    _fill(tracking, store)
    con = plain_duckdb(tmp_path / "ext")
    if lake_settings.storage.kind == "s3":
        _s3_secret(con, lake_settings)
    if backend == "rest":
        # With a REST catalog it is one ATTACH; the catalog tells DuckDB where the current metadata is.
        catalog = lake_settings.catalog
        assert catalog.kind == "rest" and catalog.credential is not None
        client_id, client_secret = catalog.credential.get_secret_value().split(":", 1)
        con.execute(
            f"""CREATE SECRET lake_catalog (TYPE iceberg, CLIENT_ID '{client_id}', CLIENT_SECRET '{client_secret}',
                OAUTH2_SERVER_URI '{catalog.uri.rstrip("/")}/v1/oauth/tokens')"""
        )
        con.execute(
            f"ATTACH '{catalog.warehouse}' AS lakehouse (TYPE iceberg, ENDPOINT '{catalog.uri}', SECRET lake_catalog)"
        )
        count = con.execute(f"SELECT count(*) FROM lakehouse.{lake_settings.namespace}.run_changes").fetchone()
        points = con.execute(f"SELECT sum(value) FROM lakehouse.{lake_settings.namespace}.metrics").fetchone()
    else:
        # With the SQL catalog: each table is <warehouse>/<namespace>/<table>; DuckDB picks its newest metadata.
        con.execute("SET unsafe_enable_version_guessing = true")
        root = f"{lake_settings.warehouse().removeprefix('file://')}/{lake_settings.namespace}"
        count = con.execute(f"SELECT count(*) FROM iceberg_scan('{root}/run_changes')").fetchone()
        points = con.execute(f"SELECT sum(value) FROM iceberg_scan('{root}/metrics')").fetchone()
    assert count == (3,)
    assert points == (3.0,)


def test_duckdb_init_script_brings_the_views_to_any_duckdb(
    tracking: TrackingService, store: IcebergStore, lake_settings: LakeopsSettings, tmp_path: Path
) -> None:
    exp = _fill(tracking, store)
    engine = SqlEngine(lake_settings, store=store)
    try:
        script = engine.external_script()
    finally:
        engine.close()
    # A fresh DuckDB: no extension installed in its (empty) extension directory, nothing set up.
    con = duckdb.connect(config={"extension_directory": str(tmp_path / "fresh-ext")})
    con.execute(script)
    assert con.execute("SELECT count(*) FROM runs WHERE experiment_id = ?", [exp]).fetchone() == (3,)
    assert con.execute("""SELECT max("metrics.m") FROM runs_wide(?)""", [exp]).fetchone() == (2.0,)
    tracking.create_run(exp, run_name="later")
    store.commit()
    # The views read each table's newest metadata: a new commit shows without re-running the script.
    assert con.execute("SELECT count(*) FROM runs WHERE experiment_id = ?", [exp]).fetchone() == (4,)


def test_pyiceberg_reads_the_tables_with_the_documented_properties(
    tracking: TrackingService, store: IcebergStore, lake_settings: LakeopsSettings
) -> None:
    _fill(tracking, store)
    catalog = load_catalog("lakeops", **lake_settings.catalog_properties())
    runs = catalog.load_table(f"{lake_settings.namespace}.run_changes").scan().to_arrow()
    assert runs.num_rows == 3
    assert sorted(runs.column("run_name").to_pylist()) == ["r0", "r1", "r2"]
