"""Benchmark of the Python client against a real ``lakeops serve`` (file:// lake in a temp dir).

1. Client-side cost of ``run.log_metric`` in a tight loop: median and p99 per call
   (target: median <= 10 us). Each call is timed with ``perf_counter_ns``; the loop's
   wall time per point (no timer inside) is printed too.
2. The same loop logs N points (default 1,000,000) from one process; then the time from the
   loop's end until every point is stored on the server and a history query returns all of
   them (target: <= 10 s).

Usage: ``python benchmarks/bench_client.py [--points N] [--quick]``.
"""

from __future__ import annotations

import argparse
import array
import sys
import tempfile
import time
from pathlib import Path

import lakeops
from lakeops.settings import LakeopsSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serve_process import ServeProcess

TARGET_MEDIAN_US = 10.0
TARGET_QUERYABLE_S = 10.0


def _percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200,000 points")
    args = parser.parse_args()
    n = 200_000 if args.quick else args.points

    with tempfile.TemporaryDirectory(prefix="lakeops-bench-client-") as tmp:
        home = Path(tmp)
        server = ServeProcess(  # the tests' helper: waits for /health, kills a server that fails to start
            LakeopsSettings(home=home), home / "serve.log", extra_args=("--no-access-log",)
        )
        try:
            client = lakeops.connect(server.url)
            run = client.start_run("bench-client", "tight-loop")
            log_metric = run.log_metric
            timings = array.array("q", bytes(8 * n))
            clock = time.perf_counter_ns
            started = time.perf_counter()
            for step in range(n):
                t0 = clock()
                log_metric("loss", 1.0 / (step + 1), step)
                timings[step] = clock() - t0
            loop_end = time.perf_counter()
            run.flush(timeout=120)
            flushed = time.perf_counter()
            history = client.metric_history(run.run_id, "loss")
            queried = time.perf_counter()
            assert history.height == n, f"{history.height} of {n} points on the server"
            run.end()

            # The loop's own cost per point, without the timer calls inside it.
            run2 = client.start_run("bench-client", "untimed-loop")
            log2 = run2.log_metric
            t_untimed = time.perf_counter()
            for step in range(min(n, 200_000)):
                log2("loss", 1.0, step)
            untimed_us = (time.perf_counter() - t_untimed) / min(n, 200_000) * 1e6
            run2.end()
            client.close()
        finally:
            server.stop()

    ordered = sorted(timings)
    median, p99 = _percentile(ordered, 0.5), _percentile(ordered, 0.99)
    loop_s = loop_end - started
    print(f"lakeops client benchmark: {n:,} points, one process, lakeops serve on file:// (localhost)")
    print(f"  log_metric median          {median:8.2f} us   target <= {TARGET_MEDIAN_US:.0f} us")
    print(f"  log_metric p99             {p99:8.2f} us")
    print(f"  log_metric max             {ordered[-1] / 1000:8.0f} us   (blocked while the buffer was full)")
    print(f"  untimed loop per point     {untimed_us:8.2f} us")
    print(f"  loop of {n:,} points       {loop_s:8.2f} s    ({n / loop_s:,.0f} points/s)")
    print(f"  loop end -> all stored     {flushed - loop_end:8.2f} s    (flush acknowledged)")
    print(
        f"  loop end -> queryable      {queried - loop_end:8.2f} s    target <= {TARGET_QUERYABLE_S:.0f} s "
        f"(history query returned all {history.height:,})"
    )
    ok = median <= TARGET_MEDIAN_US and queried - loop_end <= TARGET_QUERYABLE_S
    print("  targets met" if ok else "  TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
