"""Traces: span ingest, trace search and trace reads — lakeops against MLflow 3.17.2 on SQLite.

Run from the repository root::

    .venv/bin/python benchmarks/bench_traces.py [--quick] [--servers lakeops,mlflow] [--traces N]

Both servers are started (and stopped) with ``bench_mlflow_api``'s helpers. Each step runs on both
back to back; the report prints each figure side by side with the ratio lakeops / MLflow.

1. OTLP ingest: ``traces`` traces of ``spans`` spans each, posted to ``/v1/traces`` as OpenTelemetry
   protobuf, ``batch`` spans per request (what an OpenTelemetry batch exporter sends): spans/s.
   Target >= 20,000 spans/s.
2. The stock client's exporter: ``client_traces`` traces of ``spans`` spans made with
   ``mlflow.start_span`` and exported by the SDK (per span to ``/v1/traces``, then the trace's info),
   timed until the SDK's queue is flushed: spans/s.
3. ``search_traces`` (100 newest of the experiment's traces): median ms.
4. ``get_trace`` of one trace (info and its spans): median ms.
5. ``search_traces`` at scale: ``search_traces`` traces (100,000; 10,000 with ``--quick``), each a root
   span sent over OTLP, 2,000 a request, in an experiment of their own; then the 100 newest, and the
   100 newest with ``trace.status = 'OK'`` (half of them): median ms.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mlflow_api import QUICK, Server, make_server, progress, timed_median_ms


@dataclass(frozen=True)
class Scale:
    """How much work each step does."""

    traces: int = 2000  # ingested over OTLP
    spans: int = 10  # per trace
    batch: int = 500  # spans per OTLP request
    client_traces: int = 100  # made with the stock client's SDK
    reads: int = 20
    search_traces: int = 100_000  # one-span traces in an experiment of their own, for search at scale


FULL = Scale()
SMALL = Scale(traces=300, client_traces=30, reads=10, search_traces=10_000)
TARGETS = {"otlp_spans_per_s": (20_000.0, ">=")}


def _requests(scale: Scale) -> list[bytes]:
    """The OTLP export requests: every trace a root and ``spans - 1`` children, ``batch`` spans per request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    bodies: list[bytes] = []
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    base = time.time_ns()
    count = 0
    for t in range(scale.traces):
        trace_id = uuid.uuid4().bytes
        start = base + t * 1_000_000
        for s in range(scale.spans):
            span = scope.spans.add(trace_id=trace_id, span_id=(s + 1).to_bytes(8, "big"), name=f"step-{s}")
            if s:
                span.parent_span_id = (1).to_bytes(8, "big")
            span.start_time_unix_nano = start + s * 1000
            span.end_time_unix_nano = start + 500_000 + s * 1000
            span.status.code = 1
            attribute = span.attributes.add(key="mlflow.spanType")
            attribute.value.string_value = '"LLM"' if s else '"CHAIN"'
            count += 1
            if count % scale.batch == 0:
                bodies.append(request.SerializeToString())
                request = ExportTraceServiceRequest()
                scope = request.resource_spans.add().scope_spans.add()
    if len(scope.spans):
        bodies.append(request.SerializeToString())
    return bodies


def _root_requests(traces: int, batch: int) -> list[bytes]:
    """OTLP requests of ``traces`` one-span traces (every other one failed), ``batch`` a request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    bodies: list[bytes] = []
    base = time.time_ns()
    for first in range(0, traces, batch):
        request = ExportTraceServiceRequest()
        spans = request.resource_spans.add().scope_spans.add().spans
        for t in range(first, min(first + batch, traces)):
            span = spans.add(trace_id=uuid.uuid4().bytes, span_id=(1).to_bytes(8, "big"), name=f"request-{t % 10}")
            span.start_time_unix_nano = base + t * 1_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + 250_000_000
            span.status.code = 2 if t % 2 else 1
            span.attributes.add(key="mlflow.spanType").value.string_value = '"CHAIN"'
        bodies.append(request.SerializeToString())
    return bodies


class Workload:
    """The trace workload against one server."""

    def __init__(self, server: Server, scale: Scale) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.server = server
        self.scale = scale
        self.client = MlflowClient(server.url)
        self.experiment_id = self.client.create_experiment(f"bench-traces-{time.time_ns()}")
        self.mlflow = mlflow
        self.figures: dict[str, float] = {}

    def otlp_ingest(self) -> None:
        import httpx

        bodies = _requests(self.scale)
        headers = {"content-type": "application/x-protobuf", "x-mlflow-experiment-id": self.experiment_id}
        with httpx.Client(timeout=120) as http:
            started = time.perf_counter()
            for body in bodies:
                answer = http.post(f"{self.server.url}/v1/traces", content=body, headers=headers)
                answer.raise_for_status()
            elapsed = time.perf_counter() - started
        spans = self.scale.traces * self.scale.spans
        self.figures["otlp_spans_per_s"] = spans / elapsed
        progress(f"{self.server.name}: OTLP {self.figures['otlp_spans_per_s']:,.0f} spans/s")

    def client_export(self) -> None:
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.server.url)
        mlflow.set_experiment(experiment_id=self.experiment_id)

        def record(traces: int) -> None:
            for t in range(traces):
                with mlflow.start_span(f"request-{t}") as root:
                    root.set_inputs({"t": t})
                    for s in range(self.scale.spans - 1):
                        with mlflow.start_span(f"step-{s}") as span:
                            span.set_attribute("s", s)
            mlflow.flush_trace_async_logging()

        record(2)  # not timed: the SDK's first trace imports much of mlflow (seconds) and starts its threads
        started = time.perf_counter()
        record(self.scale.client_traces)
        elapsed = time.perf_counter() - started
        self.figures["client_spans_per_s"] = self.scale.client_traces * self.scale.spans / elapsed
        self.last_trace_id = mlflow.get_last_active_trace_id()
        progress(f"{self.server.name}: stock client {self.figures['client_spans_per_s']:,.0f} spans/s")

    def search(self) -> None:
        def search() -> None:
            found = self.client.search_traces(locations=[self.experiment_id], max_results=100, include_spans=False)
            assert len(found) == 100, len(found)

        self.figures["search_traces_ms"] = timed_median_ms(search, self.scale.reads)
        progress(f"{self.server.name}: search_traces {self.figures['search_traces_ms']:.1f} ms")

    def get_trace(self) -> None:
        def get() -> None:
            trace = self.client.get_trace(self.last_trace_id)
            assert len(trace.data.spans) == self.scale.spans, len(trace.data.spans)

        self.figures["get_trace_ms"] = timed_median_ms(get, self.scale.reads)
        progress(f"{self.server.name}: get_trace {self.figures['get_trace_ms']:.1f} ms")

    def search_at_scale(self) -> None:
        import httpx

        n = self.scale.search_traces
        experiment_id = self.client.create_experiment(f"bench-traces-scale-{time.time_ns()}")
        headers = {"content-type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id}
        started = time.perf_counter()
        with httpx.Client(timeout=600) as http:
            for body in _root_requests(n, 2000):
                http.post(f"{self.server.url}/v1/traces", content=body, headers=headers).raise_for_status()
        self.figures["scale_traces_per_s"] = n / (time.perf_counter() - started)
        progress(f"{self.server.name}: {n:,} traces loaded at {self.figures['scale_traces_per_s']:,.0f}/s")

        def newest() -> None:
            found = self.client.search_traces(locations=[experiment_id], max_results=100, include_spans=False)
            assert len(found) == 100, len(found)

        def ok() -> None:
            found = self.client.search_traces(
                locations=[experiment_id], filter_string="trace.status = 'OK'", max_results=100, include_spans=False
            )
            assert len(found) == 100, len(found)
            assert all(t.info.state.value == "OK" for t in found)

        self.figures["scale_newest_ms"] = timed_median_ms(newest, self.scale.reads)
        self.figures["scale_filtered_ms"] = timed_median_ms(ok, self.scale.reads)
        progress(
            f"{self.server.name}: search at {n:,}: newest {self.figures['scale_newest_ms']:.1f} ms, "
            f"status = 'OK' {self.figures['scale_filtered_ms']:.1f} ms"
        )

    STEPS = ("otlp_ingest", "client_export", "search", "get_trace", "search_at_scale")


ROWS = [
    ("otlp_spans_per_s", "OTLP span ingest (protobuf, batched)", "/s"),
    ("client_spans_per_s", "spans exported by the stock client's SDK", "/s"),
    ("search_traces_ms", "search_traces, 100 newest", "ms"),
    ("get_trace_ms", "get_trace (info and spans)", "ms"),
    ("scale_traces_per_s", "one-span traces loaded over OTLP", "/s"),
    ("scale_newest_ms", "search_traces at scale, 100 newest", "ms"),
    ("scale_filtered_ms", "... with trace.status = 'OK'", "ms"),
]


def print_report(results: dict[str, dict[str, float]], scale: Scale, quick: bool) -> None:
    names = list(results)
    mode = " (quick)" if quick else ""
    print(
        f"\nTraces{mode}: {scale.traces} traces x {scale.spans} spans over OTLP ({scale.batch} spans per request), "
        f"{scale.client_traces} traces through the mlflow SDK; search at scale over {scale.search_traces:,} traces"
    )
    print("ratio = lakeops / MLflow: above 1 is better for a rate (/s), below 1 for a time (ms)")
    header = f"{'figure':44} " + " ".join(f"{n:>12}" for n in names) + f" {'ratio':>8} {'target':>14} {'lakeops':>8}"
    print(header)
    print("-" * len(header))
    for key, label, unit in ROWS:
        values = " ".join(f"{results[n].get(key, float('nan')):>10,.1f}{unit[:2]:>2}" for n in names)
        ratio = "-"
        if "lakeops" in results and "mlflow" in results and results["mlflow"].get(key):
            ratio = f"{results['lakeops'][key] / results['mlflow'][key]:.2f}x"
        target = TARGETS.get(key)
        target_text = f"{target[1]} {target[0]:,.0f}{unit}" if target else "-"
        verdict = "-"
        if target and "lakeops" in results:
            value = results["lakeops"][key]
            verdict = "PASS" if (value >= target[0] if target[1] == ">=" else value <= target[0]) else "MISS"
        print(f"{label:44} {values} {ratio:>8} {target_text:>14} {verdict:>8}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer traces")
    parser.add_argument("--servers", default="lakeops,mlflow", help="comma-separated subset of lakeops,mlflow")
    parser.add_argument("--traces", type=int, default=None, help="traces ingested over OTLP (overrides the scale)")
    parser.add_argument(
        "--search-traces", type=int, default=None, help="traces searched at scale (overrides the scale)"
    )
    args = parser.parse_args(argv)
    scale = SMALL if args.quick else FULL
    if args.traces:
        scale = Scale(**{**scale.__dict__, "traces": args.traces})
    if args.search_traces:
        scale = Scale(**{**scale.__dict__, "search_traces": args.search_traces})
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="lakeops-bench-traces-") as tmp, contextlib.ExitStack() as stack:
        results: dict[str, dict[str, float]] = {}
        for name in names:  # one server at a time: the SDK's exporter is process-wide
            server = make_server(name, Path(tmp) / name, QUICK)
            if name == "lakeops":  # no great-expectations import (~10 s of CPU) running beside the first step
                server.argv.append("--no-preload")
            stack.callback(server.stop)
            progress(f"{name}: starting ...")
            server.start()
            workload = Workload(server, scale)
            for step in Workload.STEPS:
                try:
                    getattr(workload, step)()
                except BaseException:
                    progress(f"{name}: failed; log tail:\n{server.log_tail()}")
                    raise
            results[name] = workload.figures
            import mlflow

            mlflow.tracing.reset()
            server.stop()
    print_report(results, scale, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
