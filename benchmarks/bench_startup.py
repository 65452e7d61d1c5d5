"""What a ``lakeops serve`` process spends before it answers: the CPU of ``import api.main`` and of a cold start.

Run from the repository root::

    .venv/bin/python benchmarks/bench_startup.py [--imports 5] [--cold-starts 5] [--runs 1000]

Prints (it is not a test):

1. the CPU seconds (user + system) of ``import api.main`` in fresh interpreters, median of ``--imports``;
   with the environment as it is (where ``PYTHONDONTWRITEBYTECODE`` is set, lakeops' own modules are
   compiled again by every process) and with bytecode cached (in a temporary ``PYTHONPYCACHEPREFIX``);
2. the server's CPU seconds from spawn until a filtered top-100 search answers, on a small ``file://``
   lake of ``--runs`` runs (built once in a temporary folder), median of ``--cold-starts``.

CPU seconds move less with other load on the machine than wall time, but on shared cores they still
rise with it: compare figures taken back to back, and note ``uptime``'s load beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scale

from lakeops.settings import LakeopsSettings, LocalStorageConfig, SqlCatalogConfig

_IMPORT_CPU = (
    "import resource; import api.main; r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime)"
)


def import_cpu(n: int, env: dict[str, str]) -> list[float]:
    """CPU seconds of ``import api.main`` in ``n`` fresh interpreters."""
    return [
        float(
            subprocess.run(
                [sys.executable, "-c", _IMPORT_CPU],
                cwd=bench_scale.ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(n)
    ]


def cold_start_cpu(lake: bench_scale.Lake, n: int) -> list[float]:
    """The server's CPU seconds until its first answered search, for ``n`` fresh servers."""
    client = httpx.Client()
    cpus = []
    for i in range(n):
        server = bench_scale.lakeops_server(lake.settings, f"startup-{i}")
        url = server.url
        try:
            _wall, cpu = bench_scale.start_until(
                server, lambda url=url: bool(bench_scale.http_search(client, url, lake))
            )
        finally:
            server.stop()
        cpus.append(cpu)
    return cpus


def _line(label: str, values: list[float]) -> str:
    return f"{label:<58} {statistics.median(values):6.2f} CPU-s   ({', '.join(f'{v:.2f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imports", type=int, default=5, help="fresh interpreters per import figure (median)")
    parser.add_argument("--cold-starts", type=int, default=5, help="server starts (median)")
    parser.add_argument("--runs", type=int, default=1000, help="runs in the served lake")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        env = dict(os.environ)
        print(_line("import api.main (environment as is)", import_cpu(args.imports, env)))
        cached = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        import_cpu(1, cached)  # writes the bytecode
        print(_line("import api.main (bytecode cached)", import_cpu(args.imports, cached)))
        settings = LakeopsSettings(home=root / "lake", storage=LocalStorageConfig(), catalog=SqlCatalogConfig())
        lake, _seconds = bench_scale.build_lake(settings, runs=args.runs, steps=2, history=False)
        print(
            _line(
                f"cold start to the first search ({args.runs:,} runs, file://)", cold_start_cpu(lake, args.cold_starts)
            )
        )
        print(f"load: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
