"""``/health`` and ``/metrics``: what load balancers and Prometheus ask a serving process.

Metrics use the standard ``prometheus_client`` library with one registry per app (no global
state, so several apps in one process, as in tests, do not share counters). Store figures are
read at scrape time by a collector; request latency is a histogram labelled by the route's
*path template* (``/api/v1/runs/{run_id}``), never the raw path, so label cardinality stays
bounded whatever clients send.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

import pyarrow as pa
from fastapi import APIRouter, Request, Response
from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import HealthDep
from api.encoding import JSONBody
from lakeops.health import HealthMonitor

router = APIRouter()

UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@router.get("/health", tags=["service"], responses={503: {"description": "Unhealthy; `reasons` says why."}})
def health(monitor: HealthDep) -> JSONBody:
    """200 while commits land and the lake answers; 503 with the reasons otherwise."""
    status = monitor.status()
    return JSONBody(status.to_json(), status_code=200 if status.healthy else 503)


@router.get("/metrics", tags=["service"], response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text exposition of this process's metrics."""
    registry: ServiceMetrics = request.app.state.metrics
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)


class _StoreCollector(Collector):
    """Store figures, read when Prometheus scrapes (the lake probe is left to ``/health``)."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterable[Metric]:
        status = self.monitor.status(probe=False)
        c = status.commit
        yield GaugeMetricFamily(
            "lakeops_commit_lag_seconds",
            "Seconds the oldest acknowledged row not yet in an Iceberg commit has waited (0 when none waits).",
            value=status.commit_lag_s,
        )
        since = status.seconds_since_last_commit
        if since is not None:
            yield GaugeMetricFamily(
                "lakeops_seconds_since_last_commit", "Seconds since the last commit that landed rows.", value=since
            )
        failing = c.at - c.first_failure_at if c.first_failure_at is not None else 0.0
        yield GaugeMetricFamily(
            "lakeops_commit_failing_seconds",
            "Seconds commits have been failing without one landing (0 while they land).",
            value=failing,
        )
        yield GaugeMetricFamily("lakeops_queued_rows", "Acknowledged rows not yet committed.", value=status.queued_rows)
        yield GaugeMetricFamily("lakeops_wal_bytes", "Bytes of the write-ahead log on disk.", value=status.wal_bytes)
        yield CounterMetricFamily("lakeops_commits", "Commit rounds that landed rows.", value=c.commits_total)
        pool = pa.default_memory_pool()
        arrow = GaugeMetricFamily(
            "lakeops_arrow_allocated_bytes", "Bytes Arrow's memory pool holds for live buffers.", labels=["pool"]
        )
        arrow.add_metric([pool.backend_name], pool.bytes_allocated())
        yield arrow
        yield CounterMetricFamily(
            "lakeops_commit_failures",
            "Commit rounds that failed (their rows are retried).",
            value=c.commit_failures_total,
        )


class ServiceMetrics:
    """The app's Prometheus registry: request latency, process figures and (once watched) the store's."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.request_seconds = Histogram(
            "lakeops_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._store: _StoreCollector | None = None

    def watch(self, monitor: HealthMonitor) -> None:
        """Report the store behind ``monitor`` (called once the lifespan opened it)."""
        self.unwatch()
        self._store = _StoreCollector(monitor)
        self.registry.register(self._store)

    def unwatch(self) -> None:
        """Stop reporting the store (the lifespan closes it)."""
        if self._store is not None:
            self.registry.unregister(self._store)
            self._store = None


class _RouteTemplates:
    """The full path template of the route that answered a request.

    The router leaves the matched route in ``scope["route"]``, but a router included under two
    prefixes (MLflow's ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``) shares one route object
    whose ``path`` lacks the prefix. FastAPI's ``iter_route_contexts`` lists every route with its
    effective, prefixed template; indexed by route object, one or two regexes decide which prefix
    the request came through.
    """

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._by_route: dict[int, list[tuple[re.Pattern[str], str]]] = {}
        for context in iter_route_contexts(list(routes)):
            template = context.path_format or context.path
            if template:
                regex, _format, _convertors = compile_path(template)
                self._by_route.setdefault(id(context.original_route), []).append((regex, template))

    def template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED_ROUTE
        candidates = self._by_route.get(id(route), [])
        if len(candidates) == 1:
            return candidates[0][1]
        path = scope["path"]
        for regex, template in candidates:
            if regex.match(path):
                return template
        return str(getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED_ROUTE)


class RequestMetricsMiddleware:
    """Times every HTTP request into ``ServiceMetrics.request_seconds``.

    A plain ASGI middleware (not ``BaseHTTPMiddleware``) so streamed bodies pass through
    untouched. The route label is the matched route's path template; requests that match no
    route share one label, and unusual methods another, so the label set stays bounded.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: _RouteTemplates | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        app = scope.get("app")  # read before routing: a mounted sub-application may replace it

        async def send_timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            if self._templates is None:  # built on first use: every route is registered by then
                self._templates = _RouteTemplates(getattr(app, "routes", []))
            route = self._templates.template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.request_seconds.labels(method, route, str(status)).observe(time.perf_counter() - started)
