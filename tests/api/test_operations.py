"""``/health`` and ``/metrics`` of a real ``lakeops serve``: an object-store outage, and a Prometheus scrape."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from lakes import make_settings
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from pyiceberg.expressions import EqualTo
from s3server import SeaweedServer
from serve_process import ServeProcess

from catalog.connection import open_catalog
from catalog.tables import METRICS

# One client for the module: httpx.get() & co. build a client, and its TLS context (~40 ms of CPU), per call.
_http = httpx.Client(timeout=60)

UNHEALTHY_AFTER_S = 3.0


def _scrape(url: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """``/metrics`` parsed by prometheus_client: family name -> samples (name, labels, value)."""
    r = _http.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(r.text)
    }


def _value(families: dict[str, list[tuple[str, dict[str, str], float]]], name: str) -> float:
    for family in families.values():
        for sample, _labels, value in family:
            if sample == name:
                return value
    raise AssertionError(f"{name} not in /metrics")


def _health(url: str) -> tuple[int, dict[str, Any]]:
    r = _http.get(f"{url}/health", timeout=15)
    return r.status_code, r.json()


def _wait_health(url: str, status: int, timeout: float) -> tuple[float, dict[str, Any]]:
    """Poll /health until it answers ``status``; returns the seconds it took and the body."""
    started = time.monotonic()
    body: dict[str, Any] = {}
    while time.monotonic() - started < timeout:
        code, body = _health(url)
        if code == status:
            return time.monotonic() - started, body
        time.sleep(0.25)
    raise AssertionError(f"/health did not answer {status} within {timeout} s; last body: {body}")


@pytest.mark.s3
def test_health_turns_503_while_the_object_store_is_down_and_back_to_200(tmp_path: Path) -> None:
    with SeaweedServer(tmp_path / "s3") as s3:
        settings = make_settings("s3", tmp_path / "home", s3, unhealthy_after_s=UNHEALTHY_AFTER_S)
        serve = ServeProcess(settings, tmp_path / "serve.log")
        try:
            client = MlflowClient(serve.url)
            run_id = client.create_run(client.create_experiment("outage")).info.run_id
            for step in range(10):
                client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
            _wait_health(serve.url, 200, 30)

            s3.kill()
            killed = time.monotonic()
            for step in range(10, 20):  # acknowledged: durable in the write-ahead log
                client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
            _took, body = _wait_health(serve.url, 503, UNHEALTHY_AFTER_S + 30)
            assert body["status"] == "unhealthy"
            checks = {reason["check"]: reason["message"] for reason in body["reasons"]}
            # the lake probe fails at once; the commits' reason appears once they failed for long enough
            while "commits" not in checks and time.monotonic() - killed < UNHEALTHY_AFTER_S + 30:
                time.sleep(0.25)
                code, body = _health(serve.url)
                assert code == 503
                checks = {reason["check"]: reason["message"] for reason in body["reasons"]}
            assert "commits have failed" in checks["commits"], body
            assert "cannot be reached" in checks["lake"]
            assert body["queued_rows"] >= 10 and body["commit_failures_total"] >= 1
            assert s3.secret_key not in _http.get(f"{serve.url}/health", timeout=15).text
            during = _scrape(serve.url)
            assert _value(during, "lakeops_commit_failures_total") >= 1
            assert _value(during, "lakeops_queued_rows") >= 10
            assert _value(during, "lakeops_commit_lag_seconds") > 0
            assert _value(during, "lakeops_commit_failing_seconds") > 0
            assert _value(during, "lakeops_wal_bytes") > 0

            s3.start(same_ports=True)
            _wait_health(serve.url, 200, 90)
            code, body = _health(serve.url)
            assert (code, body["reasons"], body["failing_since"]) == (200, [], None)
            assert body["queued_rows"] == 0
            after = _scrape(serve.url)
            assert _value(after, "lakeops_commit_lag_seconds") == 0
            assert _value(after, "lakeops_commit_failing_seconds") == 0

            s3.pause()  # a store that hangs instead of refusing: /health still answers, and says so
            try:
                client.log_metric(run_id, "loss", 0.01, step=20)
                _took, body = _wait_health(serve.url, 503, UNHEALTHY_AFTER_S + 30)
                checks = {reason["check"]: reason["message"] for reason in body["reasons"]}
                paused = time.monotonic()
                while "commits" not in checks and time.monotonic() - paused < UNHEALTHY_AFTER_S + 30:
                    time.sleep(0.25)
                    code, body = _health(serve.url)
                    assert code == 503
                    checks = {reason["check"]: reason["message"] for reason in body["reasons"]}
                assert (
                    "a commit has been running for" in checks["commits"] or "commits have failed" in checks["commits"]
                )
            finally:
                s3.resume()
            _wait_health(serve.url, 200, 90)
        finally:
            serve.stop()
        # nothing acknowledged is lost: every point is in the Iceberg table itself, not only in the log
        table = open_catalog("lakeops", settings.catalog_properties()).load_table((settings.namespace, METRICS.name))
        stored = table.scan(row_filter=EqualTo("run_id", run_id)).to_arrow()
        assert sorted(stored["step"].to_pylist()) == list(range(21))


@pytest.fixture(scope="module")
def scraped(server: ServeProcess) -> tuple[ServeProcess, str]:
    """The shared server after some MLflow traffic, with the run id it logged to."""
    client = MlflowClient(server.url)
    experiment_id = client.create_experiment(f"metrics-{server.settings.storage.kind}-{time.time_ns()}")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "loss", 0.5, step=1)
    client.get_run(run_id)
    _http.get(f"{server.url}/api/v1/runs/{run_id}", timeout=10)
    _http.get(f"{server.url}/no/such/{run_id}", timeout=10)
    return server, run_id


def test_metrics_expose_store_figures_and_latency_by_route_template(scraped: tuple[ServeProcess, str]) -> None:
    server, run_id = scraped
    families = _scrape(server.url)
    for name in (
        "lakeops_commit_lag_seconds",
        "lakeops_queued_rows",
        "lakeops_wal_bytes",
        "lakeops_commits_total",
        "lakeops_commit_failures_total",
        "process_cpu_seconds_total",
        "lakeops_arrow_allocated_bytes",
    ):
        assert _value(families, name) >= 0
    # `lakeops serve` allocates Arrow buffers from jemalloc (lakeops/cli.py), not pyarrow's default
    assert [labels["pool"] for _n, labels, _v in families["lakeops_arrow_allocated_bytes"]] == ["jemalloc"]
    latency = families["lakeops_http_request_duration_seconds"]
    routes = {(labels["method"], labels["route"], labels["status"]) for _n, labels, _v in latency if "route" in labels}
    assert ("POST", "/api/2.0/mlflow/runs/log-metric", "200") in routes
    assert ("GET", "/api/2.0/mlflow/runs/get", "200") in routes
    assert ("GET", "/api/v1/runs/{run_id}", "200") in routes
    assert ("GET", "<unmatched>", "404") in routes
    assert not any(run_id in route for _m, route, _s in routes)  # templates, never raw paths
    counts = {
        labels["route"]: value
        for name, labels, value in latency
        if name.endswith("_count") and labels["method"] == "POST"
    }
    assert counts["/api/2.0/mlflow/runs/log-metric"] >= 1


def test_health_is_200_with_its_figures_while_commits_land(scraped: tuple[ServeProcess, str]) -> None:
    server, _run_id = scraped
    code, body = _health(server.url)
    assert code == 200 and body["status"] == "ok" and body["reasons"] == []
    assert body["commit_failures_total"] == 0 and body["failing_since"] is None
