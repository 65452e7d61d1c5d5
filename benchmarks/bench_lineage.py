"""Lineage benchmark: N-hop queries over 100,000 edges, on a real file:// lake.

Run from the repository root::

    .venv/bin/python benchmarks/bench_lineage.py [--edges 100000] [--queries 200]

The graph is shaped like an ML platform's: 1,000 raw dataset versions; runs that each read one
raw version and two outputs of earlier runs and write one dataset version; half of the runs
produce a model version, each model version deployed once. Edges are written through the
store (write-ahead log, Iceberg commit) with ``lineage_edge_rows``; the lake is then reopened,
so queries run on the adjacency index rebuilt from Iceberg, as after a restart.

Printed beside the target: the 5-hop upstream query from a deployment (median and p95 over
random deployments; target <= 50 ms), and for information the 5-hop downstream query from a
raw dataset version (which fans out much wider), ``as_of`` variants, and the reload time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from catalog.tables import LINEAGE_EDGES
from lakeops.lineage import LineageService
from lakeops.lineage.edges import LineageEdge, lineage_edge_rows
from lakeops.settings import LakeopsSettings, LocalStorageConfig, SqlCatalogConfig, WriteConfig
from lakeops.stores import open_store

TARGET_MS = 50.0


def build_edges(total: int, rng: random.Random) -> tuple[list[LineageEdge], list[str], list[str]]:
    """Edges of the layered graph, and the deployment and raw-dataset node ids."""
    raw = [f"raw-{i}" for i in range(1000)]
    outputs: list[str] = []
    deployments: list[str] = []
    edges: list[LineageEdge] = []
    run = 0
    while len(edges) < total:
        run_id = f"run-{run}"
        inputs = [rng.choice(raw)] + ([rng.choice(outputs[-5000:]) for _ in range(2)] if outputs else [])
        edges += [LineageEdge("dataset_version", d, "run", run_id, "input") for d in set(inputs)]
        out = f"dv-{run}"
        outputs.append(out)
        edges.append(LineageEdge("run", run_id, "dataset_version", out, "output"))
        if run % 2 == 0:
            model_version = f"model/{run}"
            deployment = f"deploy-{run}"
            edges.append(LineageEdge("run", run_id, "model_version", model_version, "produced"))
            edges.append(LineageEdge("model_version", model_version, "deployment", deployment, "deployed"))
            deployments.append(deployment)
        run += 1
    return edges[:total], deployments, raw


def timed(fn: object, samples: list[tuple[str, str]], **kwargs: object) -> tuple[float, float, float]:
    """Median and p95 in ms, and mean nodes returned."""
    times, sizes = [], []
    for kind, node in samples:
        started = time.perf_counter()
        result = fn(kind, node, **kwargs)  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
        sizes.append(len(result["nodes"]))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], statistics.mean(sizes)


def http_timings(settings: LakeopsSettings, samples: list[tuple[str, str]]) -> tuple[float, float]:
    """The upstream query through the native API (FastAPI app, in-process transport)."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    times = []
    with TestClient(create_app(settings)) as client:
        for i, (kind, node) in enumerate(samples):
            started = time.perf_counter()
            response = client.get(f"/api/v1/lineage/{kind}/{node}", params={"depth": 5})
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.text
            if i >= 10:  # warm-up
                times.append(elapsed)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(7)
    edges, deployments, raw = build_edges(args.edges, rng)
    with tempfile.TemporaryDirectory() as tmp:
        settings = LakeopsSettings(
            home=Path(tmp),
            storage=LocalStorageConfig(),
            catalog=SqlCatalogConfig(),
            write=WriteConfig(commit_interval_s=3600, maintain_every_commits=0),
        )
        store = open_store(settings, start_committer=False)
        started = time.perf_counter()
        half = len(edges) // 2
        store.write(lambda _s: {LINEAGE_EDGES.name: lineage_edge_rows(edges[:half], actor="bench", created_at_us=1)})
        store.write(lambda _s: {LINEAGE_EDGES.name: lineage_edge_rows(edges[half:], actor="bench", created_at_us=2)})
        store.commit()
        write_s = time.perf_counter() - started
        store.close()
        started = time.perf_counter()
        store = open_store(settings, start_committer=False)
        reload_s = time.perf_counter() - started
        try:
            lineage = LineageService(store)
            assert store.state.lineage.edge_count == len(edges), store.state.lineage.edge_count
            ups = [("deployment", rng.choice(deployments)) for _ in range(args.queries)]
            downs = [("dataset_version", rng.choice(raw)) for _ in range(min(args.queries, 50))]
            timed(lineage.query, ups[:10], depth=5)  # warm-up
            up = timed(lineage.query, ups, depth=5, direction="upstream")
            up_as_of = timed(lineage.query, ups, depth=5, direction="upstream", as_of="1970-01-01T00:00:00.000001Z")
            down = timed(lineage.query, downs, depth=5, direction="downstream")
        finally:
            store.close()
        http = http_timings(settings, ups)
    print(f"lineage graph: {len(edges):,} edges; committed in {write_s:.2f} s; reopened in {reload_s:.2f} s")
    verdict = "PASS" if up[0] <= TARGET_MS else "MISS"
    print(
        f"5-hop upstream from a deployment:        median {up[0]:7.2f} ms  p95 {up[1]:7.2f} ms  "
        f"(~{up[2]:.0f} nodes)   target <= {TARGET_MS:.0f} ms  {verdict}"
    )
    print(
        f"5-hop upstream, as_of the first half:    median {up_as_of[0]:7.2f} ms  p95 {up_as_of[1]:7.2f} ms  "
        f"(~{up_as_of[2]:.0f} nodes)"
    )
    print(
        f"5-hop downstream from a raw dataset:     median {down[0]:7.2f} ms  p95 {down[1]:7.2f} ms  "
        f"(~{down[2]:.0f} nodes)   for information"
    )
    verdict = "PASS" if http[0] <= TARGET_MS else "MISS"
    print(
        f"same over HTTP (GET /api/v1/lineage):    median {http[0]:7.2f} ms  p95 {http[1]:7.2f} ms  "
        f"(in-process ASGI client)   target <= {TARGET_MS:.0f} ms  {verdict}"
    )


if __name__ == "__main__":
    main()
