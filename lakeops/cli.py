"""The ``lakeops`` command line: demo, maintain, info (and serve, once the API lands)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections.abc import Sequence

from lakeops.settings import LakeopsSettings


def _open(settings: LakeopsSettings):  # type: ignore[no-untyped-def]
    from lakeops.services.tracking import TrackingService
    from lakeops.stores import open_store

    store = open_store(settings)
    return store, TrackingService(store)


def cmd_demo(args: argparse.Namespace) -> int:
    """Log a small hyper-parameter sweep and print the best runs."""
    settings = LakeopsSettings()
    store, tracking = _open(settings)
    try:
        name = args.experiment
        try:
            experiment_id = tracking.get_experiment_by_name(name).experiment_id
        except Exception:
            experiment_id = tracking.create_experiment(name, tags={"team": "demo"})
        rng = random.Random(42)
        started = time.perf_counter()
        for lr in (0.001, 0.01, 0.1):
            for depth in (2, 4, 8):
                run = tracking.create_run(experiment_id, run_name=f"lr{lr}-d{depth}", user_id="demo")
                tracking.log_batch(run.info.run_id, params={"lr": lr, "depth": depth}, tags={"model": "gbm"})
                now = int(time.time() * 1000)
                loss = 1.0
                points = []
                for step in range(args.steps):
                    loss *= 1 - lr * rng.uniform(0.5, 1.5) / math.sqrt(depth)
                    points.append(("loss", loss, now + step, step))
                tracking.log_batch(run.info.run_id, metrics=points)
                tracking.log_metric(run.info.run_id, "accuracy", round(1 - loss / 2, 4), timestamp=now)
                tracking.update_run(run.info.run_id, status="FINISHED", end_time=int(time.time() * 1000))
        elapsed = time.perf_counter() - started
        page = tracking.search_runs(
            [experiment_id],
            filter_string="params.depth != '2' AND metrics.accuracy > 0",
            order_by=["metrics.accuracy DESC"],
            max_results=5,
        )
        print(f"lakeops demo: 9 runs x {args.steps} steps logged to experiment {name!r} in {elapsed:.2f}s")
        print(f"warehouse: {settings.warehouse()}")
        print(f"{'run_name':<14} {'lr':>6} {'depth':>5} {'accuracy':>9}")
        for run in page.runs:
            acc = run.metrics["accuracy"].value
            print(f"{run.info.run_name:<14} {run.params['lr']:>6} {run.params['depth']:>5} {acc:>9.4f}")
    finally:
        store.close()
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    """Compact small files and expire old snapshots now."""
    settings = LakeopsSettings()
    from catalog.tables import TABLES
    from lakeops.progress import progress_bar
    from lakeops.stores import open_store

    store = open_store(settings, start_committer=False)
    try:
        store.commit()
        with progress_bar(len(TABLES), desc="maintaining", unit="tables", enabled=args.progress) as bar:
            report = store.maintain(
                compact=not args.no_compact,
                expire=not args.no_expire,
                on_table=lambda name: (bar.set_postfix_str(name), bar.update(1)),
            )
    finally:
        store.close()
    print(json.dumps(report, indent=2))
    return 0


def cmd_info(_args: argparse.Namespace) -> int:
    """Print where the lake is and what it holds."""
    settings = LakeopsSettings()
    from lakeops.stores import open_store

    store = open_store(settings, start_committer=False)
    try:
        info = {
            **settings.describe(),
            "experiments": len(store.state.experiments),
            "runs": len(store.state.runs),
            "tables": {
                name: (store.table(name).metadata.current_snapshot() or None)
                and store.table(name).metadata.current_snapshot().summary.additional_properties.get("total-records")  # type: ignore[union-attr]
                for name in ("experiment_changes", "run_changes", "tag_changes", "params", "metrics")
            },
        }
    finally:
        store.close()
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service (native API, MLflow protocol) on the configured lake."""
    import uvicorn

    from api.main import create_app  # imported here: the domain never imports api at import time

    settings = LakeopsSettings()
    print(f"lakeops serving {settings.warehouse()} on http://{args.host}:{args.port} (docs at /docs)", flush=True)
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level="warning" if not args.verbose else "info"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="lakeops", description="Lakehouse-native ML metadata on Apache Iceberg.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="log a small sweep on the configured lake and show the best runs")
    demo.add_argument("--experiment", default="demo-sweep")
    demo.add_argument("--steps", type=int, default=200)
    demo.set_defaults(func=cmd_demo)
    maintain = sub.add_parser("maintain", help="compact small files and expire old snapshots")
    maintain.add_argument("--no-compact", action="store_true")
    maintain.add_argument("--no-expire", action="store_true")
    maintain.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    maintain.set_defaults(func=cmd_maintain)
    serve = sub.add_parser("serve", help="run the HTTP service: native API at /api/v1, MLflow protocol at /api/2.0")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.set_defaults(func=cmd_serve)
    info = sub.add_parser("info", help="show the configured lake")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lakeops`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
