"""The stock mlflow client's multipart upload is acknowledged before its sha256 is known, against a
real ``lakeops serve`` on file and s3: the artifact reads at once (from the staged object), its
sha256 is filled in afterwards by the background finisher, a server killed while the work is
pending finishes it after a restart, and gc run meanwhile deletes nothing the artifact needs."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from lakes import make_settings
from minio import Minio
from mlflow import MlflowClient
from serve_process import ServeProcess

import lakeops
from lakeops.errors import LakeopsError
from lakeops.lake import Lake
from lakeops.services.gc import GarbageCollector

pytestmark = pytest.mark.api

# The box these run on is shared and loaded: a server hashing 13 MiB may answer a GET slowly.
# One client without pooled connections (they would not survive the server's restart): httpx.get() & co. build a
# client, and its TLS context (~40 ms of CPU), per call, and these tests poll every 0.2 s.
_http = httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0))
http_get = _http.get
http_post = _http.post

MiB = 1024 * 1024
# Hashing switched off: versions stay pending until a server that hashes starts on the same lake.
PAUSED = {"LAKEOPS_STORAGE__HASH_STAGED_UPLOADS": "false"}
BACKENDS = [pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)]


@pytest.fixture(params=BACKENDS)
def paused(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServeProcess]:
    """``lakeops serve`` that records stock-client multipart uploads but leaves them unhashed."""
    s3 = request.getfixturevalue("s3_server") if request.param == "s3" else None
    home = tmp_path / "serve"
    home.mkdir()
    env = dict(PAUSED) if request.param == "s3" else {}  # file:// stores have no multipart uploads to hash
    srv = ServeProcess(make_settings(request.param, home, s3), home / "serve.log", extra_env=env)
    yield srv
    srv.stop()


@pytest.fixture
def multipart(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's thresholds are 500 MB and 100 MB; smaller ones make a 13 MB file go in 3 parts."""
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * MiB))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * MiB))
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE", str(5 * MiB))
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE", str(4 * MiB))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def _log(server: ServeProcess, source: Path) -> tuple[MlflowClient, str, str]:
    """Log ``source`` with the stock client; returns (client, run id, artifact path)."""
    mlflow.set_tracking_uri(server.url)
    client = MlflowClient(server.url)
    exp = client.create_experiment(f"staged-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(exp).info.run_id
    client.log_artifact(run_id, str(source), "model")
    return client, run_id, f"{exp}/{run_id}/artifacts/model/{source.name}"


def _version(server: ServeProcess, path: str) -> dict[str, Any]:
    [version] = http_get(f"{server.url}/api/v1/artifact-versions/{path}").json()["versions"]
    return dict(version)


def _filed(server: ServeProcess, path: str, deadline_s: float = 120.0) -> dict[str, Any]:
    """The version once the finisher has filed it (not a timing assertion: the deadline is a hang guard)."""
    end = time.monotonic() + deadline_s
    while True:
        version = _version(server, path)
        if not version["is_pending"] or time.monotonic() > end:
            return version
        time.sleep(0.2)


def _staged_objects(server: ServeProcess) -> list[str]:
    storage = server.settings.storage
    host = storage.endpoint.split("://", 1)[1]
    s3 = Minio(host, storage.access_key_id, storage.secret_access_key.get_secret_value(), secure=False)
    prefix = f"{storage.prefix}/blobs/staging/"
    return [o.object_name or "" for o in s3.list_objects(storage.bucket, prefix=prefix, recursive=True)]


def _kill(server: ServeProcess) -> None:
    """kill -9: nothing is flushed, committed or finished."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()
    server.proc = None


@pytest.mark.usefixtures("multipart")
def test_a_stock_client_upload_reads_at_once_and_is_hashed_after_a_restart_gc_keeping_it(
    paused: ServeProcess, tmp_path: Path
) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(13 * MiB))
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    client, run_id, path = _log(paused, source)

    version = _version(paused, path)
    if paused.settings.storage.kind == "local":  # no multipart on file://: hashed on the way through
        assert version["sha256"] == sha256 and version["is_pending"] is False
        return
    # Acknowledged before its sha256 is known: recorded, sized, and pending.
    assert version["is_pending"] is True and version["sha256"] == "" and version["size_bytes"] == 13 * MiB
    # Readable at once, by the stock client (ranges of a presigned URL) and through lakeops.
    out = Path(client.download_artifacts(run_id, "model/weights.bin", str(tmp_path / "dl")))
    assert out.read_bytes() == source.read_bytes()
    assert http_get(f"{paused.url}/api/v1/artifacts/{path}").content == source.read_bytes()
    [listed] = client.list_artifacts(run_id, "model")
    assert listed.file_size == 13 * MiB
    [staged] = _staged_objects(paused)

    _kill(paused)
    # gc while the work is pending, three days later: the staged object is what the version reads.
    with Lake(paused.settings, start_committer=False) as lake:
        collector = GarbageCollector(lake.store, lake.objects, clock=lambda: time.time() + 3 * 86400)
        report = collector.collect(grace_s=0, dry_run=False, settle_s=0)
        assert report.kept_in_flight >= 1
        assert staged not in {item.key for item in report.freed}
    assert _staged_objects(paused) == [staged]

    paused.extra_env = {}  # a server that hashes: it finds the pending version in the lake and files it
    paused.start()
    filed = _filed(paused, path)
    assert filed["is_pending"] is False and filed["sha256"] == sha256 and filed["size_bytes"] == 13 * MiB
    assert filed["version_id"] == version["version_id"]  # the same version, filed in place
    out = Path(client.download_artifacts(run_id, "model/weights.bin", str(tmp_path / "dl-after")))
    assert out.read_bytes() == source.read_bytes()
    end = time.monotonic() + 60
    while _staged_objects(paused) and time.monotonic() < end:  # removed once filed
        time.sleep(0.2)
    assert _staged_objects(paused) == []

    # The same bytes again: the new version is filed under the blob already there.
    _client, _run, path2 = _log(paused, source)
    again = _filed(paused, path2)
    assert again["sha256"] == sha256
    blobs = http_get(f"{paused.url}/api/v1/artifact-transfers").json()
    assert blobs["deduplicated_uploads"] >= 1


@pytest.mark.usefixtures("multipart")
def test_gc_during_pending_deletes_nothing_referenced_while_the_server_runs(
    paused: ServeProcess, tmp_path: Path
) -> None:
    source = tmp_path / "ckpt.bin"
    source.write_bytes(os.urandom(6 * MiB))
    client, run_id, path = _log(paused, source)
    assert _version(paused, path)["is_pending"] is (paused.settings.storage.kind == "s3")
    # gc as an operator runs it beside the server (its settle time lets the server's commit land).
    with Lake(paused.settings, start_committer=False) as lake:
        collector = GarbageCollector(lake.store, lake.objects, clock=lambda: time.time() + 3 * 86400)
        assert collector.collect(grace_s=0, dry_run=False).freed_count == 0
        assert collector.collect(grace_s=0, dry_run=True).freed_count == 0
    out = Path(client.download_artifacts(run_id, f"model/{source.name}", str(tmp_path / "dl")))
    assert out.read_bytes() == source.read_bytes()


@pytest.mark.usefixtures("multipart")
def test_a_checkpoint_over_a_pending_upload_gets_its_sha256_once_hashed(paused: ServeProcess, tmp_path: Path) -> None:
    source = tmp_path / "w.bin"
    source.write_bytes(os.urandom(6 * MiB))
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    mlflow.set_tracking_uri(paused.url)
    client = MlflowClient(paused.url)
    run_id = client.create_run(client.create_experiment(f"ckpt-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_artifact(run_id, str(source), "checkpoints/step-0000000003")
    api = f"{paused.url}/api/v1/runs/{run_id}/checkpoints"
    created = http_post(api, json={"step": 3, "metrics": {"val_loss": 0.5}, "files": ["w.bin"]})
    assert created.status_code == 201, created.text
    pending = paused.settings.storage.kind == "s3"
    [pinned] = http_get(f"{api}/3").json()["files"]
    assert pinned["sha256"] == ("" if pending else sha256)
    if pending:
        with lakeops.connect(paused.url) as ours, pytest.raises(LakeopsError, match="still being hashed"):
            ours.load_checkpoint(run_id, 3, dest=tmp_path / "early")
        paused.stop()
        paused.extra_env = {}
        paused.start()
        end = time.monotonic() + 120
        while not http_get(f"{api}/3").json()["files"][0]["sha256"] and time.monotonic() < end:
            time.sleep(0.2)
    [pinned] = http_get(f"{api}/3").json()["files"]
    assert pinned["sha256"] == sha256
    with lakeops.connect(paused.url) as ours:
        loaded = ours.load_checkpoint(run_id, 3, dest=tmp_path / "loaded")
    assert (loaded / "w.bin").read_bytes() == source.read_bytes()
