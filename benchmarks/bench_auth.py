"""What authentication costs per call: ``log_metric`` through the stock mlflow client, auth off and on.

Run from the repository root::

    .venv/bin/python benchmarks/bench_auth.py [--calls 500] [--rounds 5]

Three ``lakeops serve`` processes on free loopback ports, each with a fresh temporary lake: auth off;
auth on with the client sending a user and password (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``: HTTP
Basic, argon2 verified once, then the per-process cache); auth on with an API token
(``MLFLOW_TRACKING_TOKEN``: Bearer, one SHA-256). Rounds of ``--calls`` single ``log_metric`` calls
go to the three back to back, so drifting load elsewhere on the machine hits them alike; the table
gives the p50 over all calls and the difference to auth off. Target: at most +0.2 ms p50.

``--sql`` measures user SQL instead (``POST /api/v1/sql``, a small query over ``runs`` and
``latest_metrics``) on a lake of ``--experiments`` experiments with ``--runs`` runs each: auth off;
auth on as the admin (every row, the same database as auth off); auth on as a user held back from
half the experiments (the database whose lake views filter rows by the user's permissions).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ADMIN_PASSWORD = "bench-admin-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(home: Path, *, auth: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEOPS_", "MLFLOW_"))}
    env["LAKEOPS_HOME"] = str(home)
    if auth:
        env.update(LAKEOPS_AUTH__ENABLED="true", LAKEOPS_AUTH__ADMIN_PASSWORD=ADMIN_PASSWORD)
    log = (home.parent / f"{home.name}.log").open("w")
    cmd = [sys.executable, "-m", "lakeops.cli", "serve", "--port", str(port), "--no-preload", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"lakeops serve did not start: see {log.name}")


def client_for(url: str, env: dict[str, str]) -> tuple[object, str]:
    """A stock MlflowClient with these credentials and a run to log to."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(env)
    from mlflow import MlflowClient

    client = MlflowClient(url)
    experiment_id = client.create_experiment(f"bench-{time.time_ns()}")
    return client, client.create_run(experiment_id).info.run_id


def timed_calls(env: dict[str, str], client: object, run_id: str, calls: int, step0: int) -> list[float]:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(env)  # the client reads its credentials per request
    out = []
    for i in range(calls):
        started = time.perf_counter()
        client.log_metric(run_id, "loss", 0.5, step=step0 + i)  # type: ignore[attr-defined]
        out.append((time.perf_counter() - started) * 1000)
    return out


SQL = (
    "SELECT r.experiment_id, count(*) AS runs, avg(m.value) AS loss FROM runs AS r "
    "JOIN latest_metrics AS m USING (run_id) WHERE m.key = 'loss' GROUP BY r.experiment_id ORDER BY 1"
)


def fill(url: str, auth: tuple[str, str] | None, *, experiments: int, runs: int) -> list[str]:
    """Experiments with runs, each with a param and a metric; their ids."""
    api = f"{url}/api/2.0/mlflow"
    ids = []
    with httpx.Client(auth=auth, timeout=60) as http:
        for e in range(experiments):
            experiment_id = http.post(f"{api}/experiments/create", json={"name": f"bench-{e}"}).json()["experiment_id"]
            ids.append(experiment_id)
            for r in range(runs):
                run_id = http.post(f"{api}/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"][
                    "run_id"
                ]
                batch = {
                    "run_id": run_id,
                    "params": [{"key": "lr", "value": str(r)}],
                    "metrics": [{"key": "loss", "value": r / runs, "timestamp": 1000, "step": 0}],
                }
                http.post(f"{api}/runs/log-batch", json=batch).raise_for_status()
    return ids


def bench_sql(args: argparse.Namespace) -> int:
    admin = ("admin", ADMIN_PASSWORD)
    with tempfile.TemporaryDirectory(prefix="bench-auth-sql-") as tmp:
        procs = []
        try:
            off, off_url = start(Path(tmp) / "off", auth=False)
            on, on_url = start(Path(tmp) / "on", auth=True)
            procs = [off, on]
            fill(off_url, None, experiments=args.experiments, runs=args.runs)
            ids = fill(on_url, admin, experiments=args.experiments, runs=args.runs)
            user = ("analyst", "analyst-password-1")
            httpx.post(
                f"{on_url}/api/2.0/mlflow/users/create", auth=admin, json={"username": user[0], "password": user[1]}
            )
            for experiment_id in ids[: len(ids) // 2]:
                grant = {"username": user[0], "resource_type": "experiment", "resource_id": experiment_id}
                httpx.post(
                    f"{on_url}/api/3.0/mlflow/users/permissions/grant",
                    auth=admin,
                    json={**grant, "permission": "NO_PERMISSIONS"},
                ).raise_for_status()
            setups = {
                "auth off": (off_url, None),
                "auth on, admin (all rows)": (on_url, admin),
                "auth on, user (filtered)": (on_url, user),
            }
            clients = {name: httpx.Client(auth=auth, timeout=60) for name, (_url, auth) in setups.items()}
            answers = {}
            for name, (url, _auth) in setups.items():  # warm up: the filtered database is built on first use
                answers[name] = clients[name].post(f"{url}/api/v1/sql", json={"sql": SQL}).json()["rows"]
            samples: dict[str, list[float]] = {name: [] for name in setups}
            for r in range(args.rounds):
                for name, (url, _auth) in setups.items():
                    for _ in range(args.calls):
                        started = time.perf_counter()
                        clients[name].post(f"{url}/api/v1/sql", json={"sql": SQL}).raise_for_status()
                        samples[name].append((time.perf_counter() - started) * 1000)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    title = f"POST /api/v1/sql, {args.experiments} experiments x {args.runs} runs, {args.rounds} x {args.calls} queries"
    print_latencies(title, samples, rows={name: len(answer) for name, answer in answers.items()})
    return 0


def print_latencies(title: str, samples: dict[str, list[float]], rows: dict[str, int] | None = None) -> None:
    """p50 and p90 of each setup's samples (ms), and the p50's difference from "auth off"'s."""
    base = statistics.median(samples["auth off"])
    print(title)
    print(f"{'setup':<28} {'rows' if rows else '':>5} {'p50 ms':>8} {'p90 ms':>8} {'vs off':>8}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        count = rows[name] if rows else ""
        print(f"{name:<28} {count:>5} {p50:8.3f} {p90:8.3f} {p50 - base:+8.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sql", action="store_true", help="measure user SQL instead of log_metric")
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if args.sql:
        return bench_sql(args)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        procs = []
        try:
            off, off_url = start(Path(tmp) / "off", auth=False)
            on, on_url = start(Path(tmp) / "on", auth=True)
            procs = [off, on]
            token = httpx.post(
                f"{on_url}/api/v1/tokens", auth=("admin", ADMIN_PASSWORD), json={"name": "bench"}
            ).json()["token"]
            setups = {
                "auth off": (off_url, {}),
                "auth on, user+password": (
                    on_url,
                    {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD},
                ),
                "auth on, API token": (on_url, {"MLFLOW_TRACKING_TOKEN": token}),
            }
            clients = {name: client_for(url, env) for name, (url, env) in setups.items()}
            samples: dict[str, list[float]] = {name: [] for name in setups}
            for r in range(args.rounds):
                for name, (_url, env) in setups.items():
                    client, run_id = clients[name]
                    samples[name] += timed_calls(env, client, run_id, args.calls, r * args.calls)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    print_latencies(f"log_metric through the stock mlflow client, {args.rounds} x {args.calls} calls each", samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
