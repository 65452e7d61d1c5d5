"""The model registry through the stock ``mlflow`` client: lakeops against MLflow 3.17.2 on SQLite.

Run from the repository root::

    .venv/bin/python benchmarks/bench_registry.py [--quick] [--servers lakeops,mlflow]

Both servers are started (and stopped) with ``bench_mlflow_api``'s helpers: ``lakeops serve`` on
the embedded default, and a real MLflow server on SQLite from its cached venv. Each step runs on
both back to back. Workload (targets apply to lakeops):

1. ``create_model_version`` (source + run id): versions/s over ``versions`` sequential calls
   into one registered model. Target >= 100/s.
2. ``models - 1`` more models of ``per_model`` versions are added; then
   ``search_model_versions("name = '<one of them>'")`` (its 100 versions): median of 20.
   Target <= 20 ms.
3. Informational: ``set_registered_model_alias`` + ``get_model_version_by_alias``, medians of 20.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mlflow_api import QUICK, Server, make_server, progress, timed_median_ms


@dataclass(frozen=True)
class Scale:
    """How much work each step does."""

    versions: int = 200  # created (and timed) in one model
    models: int = 10
    per_model: int = 100  # versions in each of the other models
    searches: int = 20


FULL = Scale()
SMALL = Scale(versions=100, models=4, searches=10)
TARGETS = {"create_version_per_s": (100.0, ">="), "search_versions_ms": (20.0, "<=")}


class Workload:
    """The registry workload against one server."""

    def __init__(self, server: Server, scale: Scale) -> None:
        from mlflow import MlflowClient

        self.server = server
        self.scale = scale
        self.client = MlflowClient(server.url, registry_uri=server.url)
        exp = self.client.create_experiment(f"bench-{time.time_ns()}")
        self.run_id = self.client.create_run(exp).info.run_id
        self.figures: dict[str, float] = {}

    def create_versions(self) -> None:
        name = "bench-model-0"
        self.client.create_registered_model(name)
        self.client.create_model_version(name, "s3://bench/warmup", run_id=self.run_id)
        started = time.perf_counter()
        for i in range(self.scale.versions):
            self.client.create_model_version(name, f"s3://bench/{name}/{i}", run_id=self.run_id)
        elapsed = time.perf_counter() - started
        self.figures["create_version_per_s"] = self.scale.versions / elapsed
        progress(f"{self.server.name}: {self.figures['create_version_per_s']:.0f} versions/s")

    def fill(self) -> None:
        for m in range(1, self.scale.models):
            name = f"bench-model-{m}"
            self.client.create_registered_model(name, tags={"team": f"t{m % 3}"})
            for i in range(self.scale.per_model):
                self.client.create_model_version(name, f"s3://bench/{name}/{i}", run_id=self.run_id)
        total = self.scale.versions + 1 + (self.scale.models - 1) * self.scale.per_model
        progress(f"{self.server.name}: filled to {total} versions")

    def search_versions(self) -> None:
        name = f"bench-model-{self.scale.models // 2}"

        def search() -> None:
            found = self.client.search_model_versions(f"name = '{name}'")
            assert len(found) == self.scale.per_model, len(found)

        self.figures["search_versions_ms"] = timed_median_ms(search, self.scale.searches)
        progress(f"{self.server.name}: search_model_versions {self.figures['search_versions_ms']:.1f} ms")

    def aliases(self) -> None:
        name = "bench-model-1"
        counter = iter(range(10**6))

        def move() -> None:
            self.client.set_registered_model_alias(name, "champion", str(1 + next(counter) % self.scale.per_model))

        self.figures["set_alias_ms"] = timed_median_ms(move, self.scale.searches)
        self.figures["get_by_alias_ms"] = timed_median_ms(
            lambda: self.client.get_model_version_by_alias(name, "champion"), self.scale.searches
        )

    STEPS = ("create_versions", "fill", "search_versions", "aliases")


ROWS = [
    ("create_version_per_s", "model-version creation (mlflow client)", "/s"),
    ("search_versions_ms", "search_model_versions, one model's versions", "ms"),
    ("set_alias_ms", "set_registered_model_alias (informational)", "ms"),
    ("get_by_alias_ms", "get_model_version_by_alias (informational)", "ms"),
]


def print_report(results: dict[str, dict[str, float]], scale: Scale, quick: bool) -> None:
    names = list(results)
    mode = " (quick)" if quick else ""
    print(
        f"\nRegistry through the mlflow client{mode}: {scale.versions} versions created in one model, "
        f"then {scale.models - 1} more models x {scale.per_model} versions"
    )
    header = f"{'figure':48} " + " ".join(f"{n:>10}" for n in names) + f" {'target':>10} {'lakeops':>8}"
    print(header)
    print("-" * len(header))
    for key, label, unit in ROWS:
        values = " ".join(f"{results[n].get(key, float('nan')):>8.1f}{unit[:2]:>2}" for n in names)
        target = TARGETS.get(key)
        target_text = f"{target[1]} {target[0]:g}{unit}" if target else "-"
        verdict = "-"
        if target and "lakeops" in results:
            value = results["lakeops"][key]
            verdict = "PASS" if (value >= target[0] if target[1] == ">=" else value <= target[0]) else "MISS"
        print(f"{label:48} {values} {target_text:>10} {verdict:>8}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer versions and models")
    parser.add_argument("--servers", default="lakeops,mlflow", help="comma-separated subset of lakeops,mlflow")
    args = parser.parse_args(argv)
    scale = SMALL if args.quick else FULL
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # one "waiting for READY" line per version otherwise
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lakeops-bench-registry-") as tmp, contextlib.ExitStack() as stack:
        workloads: dict[str, Workload] = {}
        for name in names:
            server = make_server(name, Path(tmp) / name, QUICK)
            stack.callback(server.stop)
            progress(f"{name}: starting ...")
            server.start()
            workloads[name] = Workload(server, scale)
        for step in Workload.STEPS:
            for workload in workloads.values():
                try:
                    getattr(workload, step)()
                except BaseException:
                    progress(f"{workload.server.name}: failed; log tail:\n{workload.server.log_tail()}")
                    raise
        results = {name: w.figures for name, w in workloads.items()}
    print_report(results, scale, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
