"""An engine that scales out reads the lake through lakeops' Iceberg REST catalog.

Daft on a two-node Ray cluster (two raylets on this machine, as ``ray.cluster_utils`` runs them)
loads the ``metrics`` table from ``lakeops serve``'s ``/iceberg`` catalog and computes a
leaderboard — each run's best accuracy, top 3 — that matches the one lakeops' own SQL gives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lakes import make_settings
from pyiceberg.catalog.rest import RestCatalog
from serve_process import ServeProcess

pytestmark = [pytest.mark.api, pytest.mark.slow]

LEADERBOARD_SQL = (
    "SELECT run_id, max(value) AS best FROM metrics WHERE key = 'accuracy' GROUP BY run_id ORDER BY best DESC LIMIT 3"
)


@pytest.fixture
def ray_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Ray cluster of two nodes with one CPU each; its address."""
    monkeypatch.setenv("DAFT_PROGRESS_BAR", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def served_lake(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(make_settings("file", tmp_path / "home", None), tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.stop()


def _log_sweep(http: httpx.Client) -> None:
    experiment_id = http.post("/api/v1/experiments", json={"name": "sweep"}).json()["experiment_id"]
    for i in range(8):
        run_id = http.post(f"/api/v1/experiments/{experiment_id}/runs", json={}).json()["info"]["run_id"]
        points = [
            {"key": "accuracy", "value": round(0.5 + 0.05 * ((i * 3) % 8) + 0.01 * s, 4), "step": s} for s in range(5)
        ]
        points += [{"key": "loss", "value": 1.0 / (s + 1), "step": s} for s in range(5)]
        assert http.post(f"/api/v1/runs/{run_id}/batch", json={"metrics": points}).status_code == 200


def test_daft_on_a_two_node_ray_cluster_reads_the_lake_by_url(ray_cluster: str, served_lake: ServeProcess) -> None:
    import daft
    import ray

    http = httpx.Client(base_url=served_lake.url, timeout=30)
    _log_sweep(http)

    def ours() -> list[list[Any]]:
        answer: list[list[Any]] = http.post("/api/v1/sql", json={"sql": LEADERBOARD_SQL}).json()["rows"]
        return answer

    deadline = time.monotonic() + 30  # set-up: the sweep's group commit has landed
    while len(ours()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    expected = ours()
    assert len(expected) == 3

    daft.set_runner_ray(address=ray_cluster)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    catalog = RestCatalog("lakeops", uri=f"{served_lake.url}/iceberg")
    metrics = daft.read_iceberg(catalog.load_table("lakeops.metrics"))
    board = (
        metrics.where(daft.col("key") == "accuracy")
        .groupby("run_id")
        .agg(daft.col("value").max().alias("best"))
        .sort("best", desc=True)
        .limit(3)
        .to_pylist()
    )
    assert [[row["run_id"], row["best"]] for row in board] == expected
