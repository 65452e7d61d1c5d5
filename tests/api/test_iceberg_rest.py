"""lakeops as an Iceberg REST catalog: pyiceberg's RestCatalog and DuckDB's ATTACH read the lake by URL.

A real ``lakeops serve`` on a file:// lake (SQLite catalog) and on an s3:// lake with the
object-store catalog (SeaweedFS, nothing else running). Engines see a write the server has
acknowledged once its group commit lands, and a commit another replica made on the same lake.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from lakes import make_settings
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from s3server import S3Target
from serve_process import ServeProcess

from catalog.tables import SQL_HIDDEN_TABLES, TABLES
from lakeops.settings import LakeopsSettings, LocalStorageConfig, S3StorageConfig, SqlCatalogConfig
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

pytestmark = pytest.mark.api


class Lake:
    """A served lake and what an outside engine needs to read it."""

    def __init__(self, settings: LakeopsSettings, server: ServeProcess, s3: S3Target | None) -> None:
        self.settings = settings
        self.server = server
        self.s3 = s3
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def rest_catalog(self) -> RestCatalog:
        """pyiceberg ``type=rest`` at lakeops' URL, bringing its own object-store keys."""
        keys = {}
        if self.s3 is not None:
            keys = {"s3.access-key-id": self.s3.access_key, "s3.secret-access-key": self.s3.secret_key}
        return RestCatalog("lakeops", uri=f"{self.server.url}/iceberg", **keys)

    def duckdb(self, extension_dir: Path) -> duckdb.DuckDBPyConnection:
        """A stock DuckDB with the iceberg extension from PyPI, attached to lakeops' catalog."""
        con = duckdb.connect(config={"extension_directory": str(extension_dir)})
        con.execute("SET autoinstall_known_extensions = false")
        for name in ("iceberg", "httpfs", "avro"):
            package = Path(importlib.import_module(f"duckdb_extension_{name}").__file__ or "").parent
            con.execute(f"INSTALL '{next(package.rglob(f'{name}.duckdb_extension'))}'")
        con.execute("LOAD iceberg; LOAD httpfs")
        if self.s3 is not None:
            endpoint = self.s3.endpoint.split("://", 1)[1]
            con.execute(
                f"CREATE TEMPORARY SECRET lake_s3 (TYPE s3, KEY_ID '{self.s3.access_key}', "
                f"SECRET '{self.s3.secret_key}', REGION '{self.s3.region}', ENDPOINT '{endpoint}', "
                "URL_STYLE 'path', USE_SSL false)"
            )
        con.execute(
            f"ATTACH 'lakeops' AS lake (TYPE iceberg, ENDPOINT '{self.server.url}/iceberg', AUTHORIZATION_TYPE 'none')"
        )
        return con

    def log_run(self, name: str, loss: float) -> str:
        """Create a run with one metric point over HTTP (acknowledged, maybe not committed yet)."""
        experiment = self.http.post("/api/v1/experiments", json={"name": name})
        assert experiment.status_code == 201, experiment.text
        run = self.http.post(f"/api/v1/experiments/{experiment.json()['experiment_id']}/runs", json={})
        assert run.status_code == 201, run.text
        run_id: str = run.json()["info"]["run_id"]
        batch = self.http.post(
            f"/api/v1/runs/{run_id}/batch", json={"metrics": [{"key": "loss", "value": loss, "step": 0}]}
        )
        assert batch.status_code < 300, batch.text
        return run_id


@pytest.fixture(
    scope="module", params=[pytest.param("file", id="file"), pytest.param("s3-object", id="s3", marks=pytest.mark.s3)]
)
def lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    s3 = request.getfixturevalue("s3_server") if request.param != "file" else None
    root = tmp_path_factory.mktemp(f"iceberg-rest-{request.param}")
    settings = make_settings(request.param, root / "home", s3)  # group commit every 0.2 s
    server = ServeProcess(settings, root / "serve.log")
    try:
        yield Lake(settings, server, s3)
    finally:
        server.stop()


def test_pyiceberg_lists_and_loads_the_lake_by_url(lake: Lake) -> None:
    catalog = lake.rest_catalog()
    assert catalog.list_namespaces() == [("lakeops",)]
    served = sorted(t[-1] for t in catalog.list_tables("lakeops"))
    assert served == sorted(d.name for d in TABLES if d.name not in SQL_HIDDEN_TABLES)  # no hashes served
    assert catalog.table_exists("lakeops.run_changes") and not catalog.table_exists("lakeops.nope")
    with pytest.raises(NoSuchTableError, match=r"lakeops\.nope"):
        catalog.load_table("lakeops.nope")
    with pytest.raises(NoSuchNamespaceError, match="elsewhere"):
        catalog.list_tables("elsewhere")


def _eventually(read: Callable[[], object], expected: object) -> object:
    """``read()`` until it gives ``expected`` (a generous bound, not a timing assertion); the last answer."""
    deadline = time.monotonic() + 30
    found = read()
    while found != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        found = read()
    return found


def test_an_acknowledged_write_is_read_through_pyiceberg(lake: Lake) -> None:
    run_id = lake.log_run("seen-by-pyiceberg", 0.125)
    catalog = lake.rest_catalog()

    def values() -> object:
        table = catalog.load_table("lakeops.metrics")  # each load asks lakeops for the current snapshot
        return table.scan(row_filter=f"run_id == '{run_id}'").to_arrow().column("value").to_pylist()

    assert _eventually(values, [0.125]) == [0.125]


def test_duckdb_attaches_lakeops_and_reads_the_current_snapshot(lake: Lake, tmp_path: Path) -> None:
    con = lake.duckdb(tmp_path / "ext")
    try:
        tables = {
            row[0]
            for row in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'").fetchall()
        }
        assert {"run_changes", "metrics", "params"} <= tables
        run_id = lake.log_run("seen-by-duckdb", 0.5)

        def rows() -> object:  # each statement is a transaction: DuckDB asks the catalog again
            return con.execute("SELECT value FROM lake.lakeops.metrics WHERE run_id = ?", [run_id]).fetchall()

        assert _eventually(rows, [(0.5,)]) == [(0.5,)]
    finally:
        con.close()


def test_the_catalog_is_read_only_and_errors_take_the_spec_shape(lake: Lake) -> None:
    created = lake.http.post("/iceberg/v1/namespaces", json={"namespace": ["other"], "properties": {}})
    assert created.status_code == 405
    assert created.json()["error"]["type"] == "MethodNotAllowedException"
    assert "read-only" in created.json()["error"]["message"]
    dropped = lake.http.delete("/iceberg/v1/namespaces/lakeops/tables/metrics")
    assert dropped.status_code == 405
    missing = lake.http.get("/iceberg/v1/namespaces/lakeops/tables/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"message": "Table does not exist: lakeops.nope", "type": "NoSuchTableException", "code": 404}
    }
    config = lake.http.get("/iceberg/v1/config").json()
    assert "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}" in config["endpoints"]
    if lake.s3 is not None:  # engines are told where the store is, never its keys
        assert config["defaults"]["s3.endpoint"] == lake.s3.endpoint
        assert lake.s3.secret_key not in lake.http.get("/iceberg/v1/namespaces/lakeops/tables/metrics").text
        assert lake.s3.secret_key not in str(config)


def test_another_replicas_commit_is_served(lake: Lake, tmp_path: Path) -> None:
    """A second process on the same lake (its own home) commits; the served catalog names that commit."""
    shared: dict[str, object] = {"home": tmp_path / "replica"}
    if not isinstance(lake.settings.storage, S3StorageConfig):  # file://: share the warehouse and SQLite catalog
        shared["storage"] = LocalStorageConfig(root=Path(lake.settings.warehouse().removeprefix("file://")))
        shared["catalog"] = SqlCatalogConfig(uri=lake.settings.catalog_properties()["uri"])
    replica = open_store(lake.settings.model_copy(update=shared), start_committer=False)
    try:
        tracking = TrackingService(replica)
        run_id = tracking.create_run(tracking.create_experiment("from-the-replica")).info.run_id
        tracking.log_batch(run_id, metrics=[("loss", 0.75, 1_000, 1)])
        replica.commit()
    finally:
        replica.close()
    table = lake.rest_catalog().load_table("lakeops.metrics")
    assert table.scan(row_filter=f"run_id == '{run_id}'").to_arrow().column("value").to_pylist() == [0.75]
