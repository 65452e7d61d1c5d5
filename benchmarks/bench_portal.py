"""The web portal in a real browser at scale: figures for issue 12.

Builds a lake of 100,000 runs (10 params, 5 metrics each, through the same bulk path as
``bench_scale.py``) plus one run with a 1,000,000-point metric, serves it with ``lakeops serve``,
and drives Debian's Chromium (``/usr/bin/chromium``, headless, through Playwright) over the portal:

* runs table: time from navigation to the first rows on screen; scrolling through the table one
  screen per frame and with long jumps (rows fetched page by page as they come into view): frame
  times (median, 95th percentile, worst) and the longest main-thread task; sorting by a metric:
  time until the re-sorted rows are on screen, and the longest task meanwhile;
* run page: time until the 1M-point chart is drawn (downsampled by the server);
* compare: time until 100 runs' curves are drawn.

Targets (from the issue) are printed beside each figure; nothing here fails a build. The server's
part comes first: the search calls the table makes, alone, including a sort on a key no search used yet
(its column is built then) and one on a key the first page made the server build in the background.

``--mlflow``: MLflow 3.17.2's own UI side by side. The same runs (read back from the lake: runs, params,
tags, every metric point) are bulk-loaded into a SQLite database made by MLflow's own store, ``mlflow
server`` (this venv's, its UI from the wheel, default workers) serves it, and the same Chromium opens
each experiment page three times, alternating: time from navigation until the newest run's name is on
screen, and the ratio. Use a smaller ``--runs`` (10,000) there: MLflow's SQLite store is the slow part.

    .venv/bin/python benchmarks/bench_portal.py [--runs 100000] [--points 1000000] [--backend file|s3] [--lake DIR]
    .venv/bin/python benchmarks/bench_portal.py --runs 10000 --points 10000 --mlflow

``--lake DIR`` keeps the built lake (file backend) in DIR and reuses it when run again with the same sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mlflow_api import Server, clean_env, progress  # noqa: E402
from bench_scale import MLFLOW, backend, build_lake, lakeops_server, wait_idle  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from lakeops.lake import Lake  # noqa: E402
from lakeops.settings import LakeopsSettings, LocalStorageConfig, SqlCatalogConfig  # noqa: E402
from lakeops.stores import open_store  # noqa: E402
from lakeops.tracking import TrackingService  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COMPARE_RUNS = 100

# Collected in the page: when the runs table first showed rows, every animation frame, every long task.
PROBE = """
window.__bench = { rows: [], frames: [], longTasks: [] };
window.addEventListener("lakeops:rows", () => window.__bench.rows.push(performance.now()));
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__bench.longTasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
"""

SCROLL = """
async ({ frames, jump }) => {
  const el = document.getElementById("runs-table");
  const times = [];
  let last = performance.now();
  for (let i = 0; i < frames; i++) {
    el.scrollTop += i % 10 === 9 ? jump : el.clientHeight;
    await new Promise(requestAnimationFrame);
    const now = performance.now();
    times.push(now - last);
    last = now;
  }
  return { times, loaded: Number(el.dataset.loadedRows), top: el.scrollTop };
}
"""


def add_history_run(settings: Any, experiment_id: str, points: int) -> str:
    """A run with one ``points``-point metric (``wave``), written through the Arrow bulk path."""
    store = open_store(settings, start_committer=False)
    try:
        tracking = TrackingService(store, actor="bench")
        run_id = tracking.create_run(experiment_id, run_name="million").info.run_id
        steps = np.arange(points, dtype=np.int64)
        for start in range(0, points, 250_000):
            part = steps[start : start + 250_000]
            tracking.log_metrics_table(
                pa.table(
                    {
                        "run_id": pa.array([run_id] * len(part)),
                        "key": pa.array(["wave"] * len(part)),
                        "value": np.sin(part / 5000.0) + np.random.default_rng(start).normal(0, 0.05, len(part)),
                        "timestamp": 1_700_000_000_000 + part,
                        "step": part,
                    }
                )
            )
            store.commit()
    finally:
        store.close()
    return run_id


def search_ms(url: str, body: dict[str, Any]) -> float:
    """Median wall time of three identical search calls, in ms."""
    times = []
    with httpx.Client(timeout=120) as client:
        for _ in range(3):
            started = time.perf_counter()
            client.post(f"{url}/api/v1/runs/search", json=body).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def search_once_ms(url: str, body: dict[str, Any]) -> float:
    """Wall time of one search call, in ms."""
    started = time.perf_counter()
    httpx.post(f"{url}/api/v1/runs/search", json=body, timeout=120).raise_for_status()
    return (time.perf_counter() - started) * 1000


def wait_ms(page: Page, condition: str) -> float:
    """performance.now() (ms since navigation) when ``condition`` first holds, polled every frame."""
    page.wait_for_function(condition, timeout=120_000, polling="raf")
    return float(page.evaluate("performance.now()"))


def longest_task(page: Page, since: float) -> float:
    tasks = page.evaluate("window.__bench.longTasks")
    return max((d for start, d in tasks if start >= since), default=0.0)


def line(name: str, value: float, unit: str, target: str = "") -> None:
    print(f"  {name:<52} {value:>10.1f} {unit:<3} {target}")


def measure(
    url: str, experiment_id: str, history_run_id: str, compare_ids: list[str], *, runs: int, points: int
) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script(PROBE)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        print(f"runs table ({runs:,} runs)")
        firsts = []
        for _ in range(3):
            page.goto(f"{url}/#/experiments/{experiment_id}")
            first_row = "window.__bench.rows.length > 0 && document.querySelector('#runs-body .vt-row')"
            firsts.append(wait_ms(page, first_row))
            page.goto("about:blank")
        line("first rows on screen after navigation (median of 3)", statistics.median(firsts), "ms", "(target <= 1000)")
        page.goto(f"{url}/#/experiments/{experiment_id}")
        wait_ms(page, "document.querySelector('#runs-body .vt-row')")
        since = float(page.evaluate("performance.now()"))
        scrolled = page.evaluate(SCROLL, {"frames": 300, "jump": 200_000})
        times = sorted(scrolled["times"])
        line("scroll: frame time, median", statistics.median(times), "ms")
        line("scroll: frame time, 95th percentile", times[int(len(times) * 0.95)], "ms")
        line("scroll: worst frame", times[-1], "ms", "(target: no freeze > 100)")
        line("scroll: longest main-thread task", longest_task(page, since), "ms")
        print(f"  {'rows loaded while scrolling (fetched page by page)':<52} {scrolled['loaded']:>10,}")

        before = len(page.evaluate("window.__bench.rows"))
        since = float(page.evaluate("performance.now()"))
        page.locator('#runs-head [data-order="metrics.m0"]').click()
        done = wait_ms(page, f"window.__bench.rows.length > {before}")
        line("sort by a metric: re-sorted rows on screen", done - since, "ms")
        line("sort: longest main-thread task", longest_task(page, since), "ms", "(target <= 100)")

        since = float(page.evaluate("performance.now()"))
        page.locator("#group-by").select_option("p1")
        done = wait_ms(page, "document.getElementById('runs-table').dataset.groups")
        line("group by a param: groups with counts and means on screen", done - since, "ms")
        since = float(page.evaluate("performance.now()"))
        page.locator("#runs-body .vt-toggle").first.click()
        done = wait_ms(page, "Number(document.getElementById('runs-table').dataset.loadedRows) > 0")
        line("expand a group: its first runs on screen", done - since, "ms")
        line("group: longest main-thread task", longest_task(page, since), "ms", "(target <= 100)")

        print("charts")
        chart_ms = []
        for _ in range(3):
            page.goto(f"{url}/#/experiments/{experiment_id}/runs/{history_run_id}")
            chart_ms.append(wait_ms(page, "document.querySelector('figure[data-key=\"wave\"] .chart')?.dataset.points"))
            page.goto("about:blank")
        points_label = f"{points:,}-point metric drawn on the run page (median of 3)"
        line(points_label, statistics.median(chart_ms), "ms", "(target <= 1000 at 1M)")
        compare_ms = []
        for _ in range(3):
            page.goto(f"{url}/#/compare?runs={','.join(compare_ids)}&metric=m0")
            compare_ms.append(wait_ms(page, "document.getElementById('curves')?.dataset.total"))
            page.goto("about:blank")
        compare_label = f"{len(compare_ids)} runs' curves drawn on the compare page (median of 3)"
        line(compare_label, statistics.median(compare_ms), "ms", "(target <= 2000)")
        if errors:
            print(f"page errors: {errors[:5]}")
        browser.close()


# -- MLflow's UI on the same runs --------------------------------------------------------------------


def _mlflow_rows(settings: LakeopsSettings, experiment_id: str) -> dict[str, Any]:
    """The experiment's runs, params, run tags and every metric point, read back from the lake with SQL."""
    with Lake(settings, start_committer=False) as lake:
        ask = lake.sql.query
        cap = 100_000_000
        runs = ask(
            "SELECT run_id, run_name, user_id, status, epoch_ms(started_at) AS start_time, "
            "epoch_ms(ended_at) AS end_time FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active'",
            params=[experiment_id],
            max_rows=cap,
        )
        within = "run_id IN (SELECT run_id FROM runs WHERE experiment_id = ?)"
        params = ask(f"SELECT key, value, run_id FROM params WHERE {within}", params=[experiment_id], max_rows=cap)
        tags = ask(
            "SELECT key, value, entity_id AS run_id FROM tags WHERE entity_type = 'run' AND "
            + within.replace("run_id IN", "entity_id IN"),
            params=[experiment_id],
            max_rows=cap,
        )
        points = ask(
            f"SELECT key, value, epoch_ms(recorded_at) AS timestamp, run_id, step FROM metrics WHERE {within}",
            params=[experiment_id],
            max_rows=cap,
        )
    return {"runs": runs.to_pylist(), "params": params, "tags": tags, "points": points}


def seed_mlflow(home: Path, settings: LakeopsSettings, experiment_id: str) -> tuple[str, int]:
    """A SQLite database made by MLflow's own store, holding the lake experiment's runs (bulk-inserted:
    one experiment, runs, params, tags, metrics and latest_metrics as MLflow's store keeps them).
    Returns MLflow's experiment id and the number of runs."""
    import os
    import sqlite3

    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    home.mkdir(parents=True, exist_ok=True)
    db = home / "mlflow.db"
    marker = home / "seeded.json"
    if marker.exists():  # a kept lake (--lake) keeps its MLflow copy too
        kept = json.loads(marker.read_text())
        return kept["experiment_id"], kept["runs"]
    store = SqlAlchemyStore(f"sqlite:///{db}", str(home / "artifacts"))  # type: ignore[no-untyped-call]
    mlflow_id = store.create_experiment("portal-bench")  # type: ignore[no-untyped-call]
    store.set_experiment_tag(  # type: ignore[no-untyped-call]
        mlflow_id, _experiment_tag("mlflow.experimentKind", "custom_model_development")
    )
    rows = _mlflow_rows(settings, experiment_id)
    runs = rows["runs"]
    con = sqlite3.connect(db)
    with con:
        con.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time,"
            " end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES"
            " (?, ?, 'LOCAL', '', '', ?, ?, ?, ?, '', 'active', ?, ?)",
            [
                (
                    r["run_id"],
                    r["run_name"],
                    r["user_id"] or "",  # MLflow's search refuses a run without one
                    r["status"],
                    r["start_time"],
                    r["end_time"],
                    f"{home}/artifacts/{r['run_id']}",
                    int(mlflow_id),
                )
                for r in runs
            ],
        )
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", _tuples(rows["params"]))
        tags = [t for t in _tuples(rows["tags"]) if t[0] != "mlflow.runName"]
        tags += [("mlflow.runName", r["run_name"], r["run_id"]) for r in runs if r["run_name"]]
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
        points = rows["points"]
        con.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
            _tuples(points),
        )
        # MLflow's latest value: the greatest timestamp, then step, then value (as its store keeps it).
        con.execute(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "SELECT key, value, timestamp, step, is_nan, run_uuid FROM (SELECT *, row_number() OVER "
            "(PARTITION BY run_uuid, key ORDER BY timestamp DESC, step DESC, value DESC) AS n FROM metrics) WHERE n = 1"
        )
    con.close()
    marker.write_text(json.dumps({"experiment_id": mlflow_id, "runs": len(runs)}))
    return mlflow_id, len(runs)


def _experiment_tag(key: str, value: str) -> Any:
    from mlflow.entities import ExperimentTag

    return ExperimentTag(key, value)


def _tuples(table: pa.Table) -> list[tuple[Any, ...]]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return list(zip(*columns, strict=True))


def mlflow_server(home: Path) -> Server:
    argv = [
        str(MLFLOW),
        "server",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    return Server("mlflow", argv, env, home / "server.log", start_timeout=300)


def measure_against_mlflow(
    url: str, experiment_id: str, mlflow: Server, mlflow_id: str, newest_run_name: str, *, runs: int
) -> None:
    """First rows of the experiment page in both UIs, three navigations each, alternating."""
    shown = f"document.body && document.body.innerText.includes({json.dumps(newest_run_name)})"
    pages = {
        "lakeops": f"{url}/#/experiments/{experiment_id}",
        "mlflow": f"{mlflow.url}/#/experiments/{mlflow_id}/runs",  # its runs table (the default tab is an overview)
    }
    times: dict[str, list[float]] = {name: [] for name in pages}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        for _ in range(3):
            for name, address in pages.items():
                page.goto(address)
                times[name].append(wait_ms(page, shown))
                page.goto("about:blank")
        browser.close()
    print(f"side by side with MLflow 3.17.2's UI (mlflow server + SQLite, same {runs:,} runs)")
    ours, theirs = statistics.median(times["lakeops"]), statistics.median(times["mlflow"])
    line("lakeops: experiment page, first rows (median of 3)", ours, "ms", f"(each: {_each(times['lakeops'])})")
    line("MLflow: experiment page, first rows (median of 3)", theirs, "ms", f"(each: {_each(times['mlflow'])})")
    print(f"  {'MLflow / lakeops':<52} {theirs / ours:>10.1f} x")


def _each(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def kept_lake(root: Path, *, runs: int, steps: int, points: int) -> tuple[LakeopsSettings, str, str]:
    """The lake kept in ``root`` by an earlier run of the same sizes, or a new one built there."""
    settings = LakeopsSettings(home=root / "portal", storage=LocalStorageConfig(), catalog=SqlCatalogConfig())
    marker = root / "bench_portal.json"
    sizes = {"runs": runs, "steps": steps, "points": points}
    if marker.exists():
        kept = json.loads(marker.read_text())
        if kept["sizes"] == sizes:
            progress(f"reusing the lake in {root}")
            return settings, kept["experiment_id"], kept["history_run_id"]
        sys.exit(f"{root} holds a lake of other sizes ({kept['sizes']}): remove it or pick another directory")
    progress(f"building {runs:,} runs x {steps} steps in {root} ...")
    lake, seconds = build_lake(settings, runs=runs, steps=steps, history=False)
    history_run_id = add_history_run(settings, lake.experiment_id, points)
    progress(f"built in {seconds:.0f} s")
    marker.write_text(
        json.dumps({"sizes": sizes, "experiment_id": lake.experiment_id, "history_run_id": history_run_id})
    )
    return settings, lake.experiment_id, history_run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=5, help="points per metric of each run")
    parser.add_argument("--backend", choices=["file", "s3"], default="file")
    parser.add_argument("--lake", type=Path, help="keep the lake in DIR and reuse it next time (file backend only)")
    parser.add_argument("--mlflow", action="store_true", help="also MLflow's UI on the same runs (use --runs 10000)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    if args.lake and args.backend != "file":
        sys.exit("--lake keeps file-backend lakes only")
    with contextlib.ExitStack() as stack:
        if args.lake:
            args.lake.mkdir(parents=True, exist_ok=True)
            settings, experiment_id, history_run_id = kept_lake(
                args.lake, runs=args.runs, steps=args.steps, points=args.points
            )
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-portal-"))
            settings = stack.enter_context(backend(args.backend, Path(tmp)))("portal")
            progress(f"building {args.runs:,} runs x {args.steps} steps on {args.backend} ...")
            lake, seconds = build_lake(settings, runs=args.runs, steps=args.steps, history=False)
            experiment_id = lake.experiment_id
            history_run_id = add_history_run(settings, experiment_id, args.points)
            progress(f"built in {seconds:.0f} s")
        progress("serving")
        server = lakeops_server(settings, "portal")
        server.start()
        stack.callback(server.stop)
        wait_idle(server)  # a fresh server imports great-expectations in the background (seconds of CPU)
        page = httpx.post(
            f"{server.url}/api/v1/runs/search",
            json={"experiment_ids": [experiment_id], "max_results": COMPARE_RUNS},
            timeout=120,
        ).json()
        compare_ids = [r["info"]["run_id"] for r in page["runs"]]
        print(f"lakeops portal on {args.backend}: {args.runs:,} runs, one run with {args.points:,} points")
        print("the search calls the table makes, alone (median of 3; the server's part of the figures below)")
        first = {"experiment_ids": [experiment_id], "max_results": 200}
        # m4 was never searched on: its column is built by this call. m0 is among the first page's first metrics,
        # whose columns the server builds in the background once a first page is out.
        wait_idle(server)  # the columns the first page suggested are built in the background meanwhile
        for label, key in (("first sort by a cold key (m4)", "m4"), ("first sort by m0 (built after page 1)", "m0")):
            body = {**first, "order_by": [f"metrics.{key} DESC"]}
            line(f"POST /api/v1/runs/search: {label}", search_once_ms(server.url, body), "ms")
        for label, order in (
            ("first page of 200, default order", []),
            ("sorted by metrics.m0", ["metrics.m0 DESC"]),
        ):
            body = {**first, "order_by": order}
            line(f"POST /api/v1/runs/search: {label}", search_ms(server.url, body), "ms")
        measure(server.url, experiment_id, history_run_id, compare_ids, runs=args.runs + 1, points=args.points)
        if args.mlflow:
            progress("copying the runs into MLflow's SQLite store ...")
            home = settings.home.parent / "mlflow"
            mlflow_id, copied = seed_mlflow(home, settings, experiment_id)
            progress(f"{copied:,} runs copied; starting mlflow server")
            mlflow = mlflow_server(home)
            mlflow.start()
            stack.callback(mlflow.stop)
            wait_idle(mlflow)
            newest = httpx.post(
                f"{server.url}/api/v1/runs/search",
                json={"experiment_ids": [experiment_id], "max_results": 1},
                timeout=120,
            ).json()["runs"][0]["info"]["run_name"]
            measure_against_mlflow(server.url, experiment_id, mlflow, mlflow_id, newest, runs=copied)


if __name__ == "__main__":
    main()
