"""The lineage and dataset SQL views, run by DuckDB over the rows a real lake committed."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
from lakes import make_settings

from catalog.tables import DATASET_VERSIONS, LINEAGE_EDGES, VALIDATION_RESULTS
from lakeops.services.artifacts import ArtifactService
from lakeops.services.datasets import DatasetService
from lakeops.services.lineage import LineageEdge, LineageService
from lakeops.services.tracking import TrackingService
from lakeops.stores import open_store

VIEWS = Path(__file__).parents[2] / "catalog" / "views"


def test_lineage_and_dataset_views(tmp_path: Path) -> None:
    settings = make_settings("file", tmp_path, None)
    store = open_store(settings, start_committer=False)  # commits happen when the test says
    try:
        tracking = TrackingService(store)
        datasets = DatasetService(store, ArtifactService(store, settings.storage.open_objects(settings.home)))
        run_a, run_b = tracking.create_run().info.run_id, tracking.create_run().info.run_id
        frame = pl.DataFrame({"x": [1, 2]})
        raw = datasets.log_dataframe("raw", frame, run_id=run_a)
        datasets.log_dataframe("raw", frame, run_id=run_a)  # the same content and link again
        feat = datasets.log_dataframe("features", pl.DataFrame({"y": [3]}), run_id=run_a, direction="output")
        datasets.link(feat["dataset_version_id"], run_b)
        LineageService(store).add_edges([LineageEdge("run", run_b, "model_version", "m/1", "produced")])
        store.commit()
        con = duckdb.connect()
        con.execute("ATTACH ':memory:' AS lake")
        for table_def in (LINEAGE_EDGES, DATASET_VERSIONS, VALIDATION_RESULTS):
            rows = store.table(table_def.name).scan().to_arrow()  # noqa: F841 - read by DuckDB below
            con.execute(f"CREATE TABLE lake.{table_def.name} AS SELECT * FROM rows")
        # a duplicate edge row (another replica asserting the same edge) is one edge in the view
        con.execute("INSERT INTO lake.lineage_edges SELECT * FROM lake.lineage_edges LIMIT 1")
        for name in ("lineage_edges", "datasets"):
            con.execute(f"CREATE VIEW {name} AS {(VIEWS / f'{name}.sql').read_text()}")
        assert con.execute("SELECT count(*) FROM lineage_edges").fetchone() == (4,)
        names = con.execute("SELECT dataset_name FROM datasets ORDER BY dataset_name").fetchall()
        assert names == [("features",), ("raw",)]
        # five hops upstream of the model version, in SQL
        upstream = con.execute(
            """
            WITH RECURSIVE up(kind, id, hops) AS (
                SELECT 'model_version', 'm/1', 0
                UNION
                SELECT e.source_kind, e.source_id, up.hops + 1
                FROM lineage_edges e JOIN up ON e.target_kind = up.kind AND e.target_id = up.id
                WHERE up.hops < 5
            )
            SELECT kind, id, min(hops) FROM up GROUP BY kind, id ORDER BY 3, 1
            """
        ).fetchall()
        assert upstream == [
            ("model_version", "m/1", 0),
            ("run", run_b, 1),
            ("dataset_version", feat["dataset_version_id"], 2),
            ("run", run_a, 3),
            ("dataset_version", raw["dataset_version_id"], 4),
        ]
    finally:
        store.close()
