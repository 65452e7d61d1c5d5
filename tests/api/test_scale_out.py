"""The scale-out topology from processes on this machine: an S3 server, two replicas, a real proxy.

Nothing but the object store holds state: both ``lakeops serve`` replicas use the object-store
catalog and keep their write-ahead logs in the bucket, each on its own home directory. HAProxy
(Debian's) sends the traffic to replica a and fails over to b when its health check fails (a
client then finds on b what a committed; a client bouncing between replicas would read another
replica's writes only after ``write.refresh_interval_s``). The stock mlflow client logs through
the proxy while replica a is killed with SIGKILL and later replaced by a process on an *empty*
home with the same log name, which takes the traffic back; every point the client saw
acknowledged is then readable through the proxy and from each replica.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lakes import make_settings
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from serve_process import ServeProcess, free_port

from lakeops.settings import LakeopsSettings

pytestmark = [pytest.mark.api, pytest.mark.s3, pytest.mark.slow]

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CONFIG = """
global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
frontend lake
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    option httpchk GET /health
    default-server inter 200ms fall 1 rise 1
    server a 127.0.0.1:{a} check
    server b 127.0.0.1:{b} check backup
"""


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A request cut by the kill is answered 502 by the proxy; the stock client retries it (quickly here).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6")


def _replica(settings: LakeopsSettings, home: Path, name: str) -> LakeopsSettings:
    return settings.model_copy(
        update={"home": home, "write": settings.write.model_copy(update={"log": "object", "log_name": name})}
    )


@pytest.fixture
def topology(s3_server, tmp_path: Path) -> Iterator[tuple[str, dict[str, ServeProcess], dict[str, LakeopsSettings]]]:  # type: ignore[no-untyped-def]
    lake = make_settings("s3-object", tmp_path / "unused", s3_server)  # one lake: one bucket prefix
    settings = {name: _replica(lake, tmp_path / f"home-{name}-1", f"replica-{name}") for name in ("a", "b")}
    servers: dict[str, ServeProcess] = {}
    proxy = None
    try:
        for name, replica in settings.items():
            servers[name] = ServeProcess(replica, tmp_path / f"serve-{name}.log")
        port = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(CONFIG.format(port=port, a=servers["a"].port, b=servers["b"].port))
        proxy = subprocess.Popen([HAPROXY, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        yield f"http://127.0.0.1:{port}", servers, settings
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=10)
        for server in servers.values():
            server.stop()


@pytest.mark.usefixtures("proxy_env")
def test_a_replica_killed_and_replaced_on_an_empty_disk_loses_nothing_behind_the_proxy(
    topology: tuple[str, dict[str, ServeProcess], dict[str, LakeopsSettings]], tmp_path: Path
) -> None:
    url, servers, settings = topology
    client = MlflowClient(tracking_uri=url)
    deadline = time.monotonic() + 30
    while True:  # the proxy's first health checks
        try:
            experiment_id = client.create_experiment("scale-out")
            break
        except MlflowException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    run_id = client.create_run(experiment_id).info.run_id
    standby = MlflowClient(tracking_uri=servers["b"].url)
    deadline = time.monotonic() + 30
    while True:  # set-up: the standby has picked up the run (it refreshes every 0.25 s)
        try:
            standby.get_run(run_id)
            break
        except MlflowException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

    acked: list[int] = []
    for step in range(90):
        if step == 30:  # replica a dies mid-stream: acknowledged points may be only in its log in the bucket
            assert servers["a"].proc is not None
            servers["a"].proc.send_signal(signal.SIGKILL)
            servers["a"].proc.wait()
            servers["a"].proc = None
        if step == 60:  # its replacement: same port and log name, an empty home directory
            replacement = settings["a"].model_copy(update={"home": tmp_path / "home-a-2"})
            servers["a"] = ServeProcess(replacement, tmp_path / "serve-a2.log", port=servers["a"].port)
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        acked.append(step)

    def stored_on(base: str) -> set[int]:
        return {m.step for m in MlflowClient(tracking_uri=base).get_metric_history(run_id, "loss")}

    bases = [url, servers["a"].url, servers["b"].url]
    deadline = time.monotonic() + 60  # a generous bound for replicas to pick up each other's commits
    while time.monotonic() < deadline and not all(set(acked) <= stored_on(base) for base in bases):
        time.sleep(0.2)
    for base in bases:
        missing = sorted(set(acked) - stored_on(base))
        assert not missing, f"acknowledged points missing on {base}: {missing[:10]}"
