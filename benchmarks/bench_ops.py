"""Operations benchmark: the CPU seconds of one ``lakeops sql`` command on a small lake.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ops.py [--backend file|s3|both] [--repeats N] [--runs N]

A lake of ``--runs`` runs (default 11; 2 params, 1 tag and 100 metric points each) is logged
through the store, then ``lakeops sql "SELECT run_name, status FROM runs ORDER BY run_name LIMIT 3"``
is run ``--repeats`` times as a fresh process, as a user runs it. Printed per backend: the median
CPU seconds (user + system of the child process) and wall seconds of the whole process, interpreter
start and imports included. Target: under 1 CPU-second.

Whether the installed packages carry compiled bytecode matters a lot (with
``PYTHONDONTWRITEBYTECODE=1`` and no ``.pyc`` files, every run compiles pyiceberg, pandas and
friends again: about 3 CPU-seconds); the first line says which case was measured. ``make install``
compiles it (``uv sync --compile-bytecode``).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lakeops.settings import LakeopsSettings, LocalStorageConfig, S3StorageConfig, SqlCatalogConfig, WriteConfig
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
QUERY = "SELECT run_name, status FROM runs ORDER BY run_name LIMIT 3"
TARGET_CPU_S = 1.0


def _make_lake(settings: LakeopsSettings, runs: int) -> None:
    store = open_store(settings)
    try:
        tracking = TrackingService(store)
        experiment_id = tracking.create_experiment("small")
        for i in range(runs):
            run_id = tracking.create_run(experiment_id, run_name=f"run-{i:02d}").info.run_id
            tracking.log_batch(
                run_id,
                params={"lr": 0.1, "depth": i},
                tags={"team": "ops"},
                metrics=[("loss", 1 / (step + 1), step, step) for step in range(100)],
            )
            tracking.update_run(run_id, status="FINISHED", end_time=int(time.time() * 1000))
    finally:
        store.close()


def _env(settings: LakeopsSettings) -> dict[str, str]:
    sys.path.insert(0, str(TESTS_DIR))
    from serve_process import child_env

    return child_env(settings)


def _measure(settings: LakeopsSettings, repeats: int, *, pycache: Path | None) -> tuple[float, float, str]:
    """Median CPU and wall seconds of ``lakeops sql``, and its output (``pycache``: an empty bytecode cache)."""
    env = _env(settings)
    if pycache is not None:  # Python looks for .pyc files only there: it compiles every module it imports
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    cpu: list[float] = []
    wall: list[float] = []
    output = ""
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "lakeops.cli", "sql", QUERY],  # the default output: a table on the terminal
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"lakeops sql failed: {proc.stderr[-2000:]}")
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        output = proc.stdout
    return statistics.median(cpu), statistics.median(wall), output


def _bytecode_state() -> str:
    import pyiceberg

    compiled = any(Path(pyiceberg.__file__).parent.glob("__pycache__/*.pyc"))
    writes = not sys.dont_write_bytecode
    return f"installed packages have .pyc files: {compiled}; Python writes new ones: {writes}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["file", "s3", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument(
        "--no-bytecode", action="store_true", help="measure without any .pyc file (as an install without them)"
    )
    args = parser.parse_args()
    print("no .pyc files (--no-bytecode)" if args.no_bytecode else _bytecode_state())
    print(f"query: {QUERY}")
    print(f"{'backend':<8} {'runs':>5} {'cpu s (median)':>15} {'wall s (median)':>16}  target < {TARGET_CPU_S:g} cpu s")
    kinds = ["file", "s3"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as tmp:
        root = Path(tmp)
        seaweed = None
        try:
            for kind in kinds:
                write = WriteConfig(commit_interval_s=0.2, maintain_every_commits=0)
                if kind == "file":
                    settings = LakeopsSettings(
                        home=root / kind, storage=LocalStorageConfig(), catalog=SqlCatalogConfig(), write=write
                    )
                else:
                    sys.path.insert(0, str(TESTS_DIR))
                    from pydantic import SecretStr
                    from s3server import SeaweedServer

                    seaweed = SeaweedServer(root / "seaweed").start()
                    settings = LakeopsSettings(
                        home=root / kind,
                        storage=S3StorageConfig(
                            endpoint=seaweed.endpoint,
                            bucket=seaweed.bucket,
                            access_key_id=seaweed.access_key,
                            secret_access_key=SecretStr(seaweed.secret_key),
                            region=seaweed.region,
                        ),
                        catalog=SqlCatalogConfig(),
                        write=write,
                    )
                _make_lake(settings, args.runs)
                pycache = root / "empty-pycache" if args.no_bytecode else None
                cpu, wall, output = _measure(settings, args.repeats, pycache=pycache)
                if "run-00" not in output or "run-03" in output:
                    raise RuntimeError(f"unexpected answer:\n{output}")
                verdict = "ok" if cpu < TARGET_CPU_S else "OVER"
                print(f"{kind:<8} {args.runs:>5} {cpu:>15.2f} {wall:>16.2f}  {verdict}")
        finally:
            if seaweed is not None:
                seaweed.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
