"""Direct transfers and content-addressed artifacts against a real ``lakeops serve`` on file and s3:
the stock mlflow client's multipart upload and presigned download, our client's parallel parts,
dedup by sha256, resuming an interrupted upload, and refusals."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from minio import Minio
from mlflow import MlflowClient

import lakeops

# One client for the module: httpx.get() & co. build a client, and its TLS context (~40 ms of CPU), per call.
_http = httpx.Client(timeout=60)

pytestmark = pytest.mark.api

MiB = 1024 * 1024


def _counters(server: Any) -> dict[str, int]:
    counts: dict[str, int] = _http.get(f"{server.url}/api/v1/artifact-transfers").json()
    return counts


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def _blob_count(server: Any) -> int:
    """Objects holding artifact bytes in the server's store (blobs, and in-flight staging)."""
    storage = server.settings.storage
    if storage.kind == "local":
        root = server.settings.home / "artifacts" / ".blobs"
        return sum(1 for p in root.glob("*/*") if p.is_file()) if root.is_dir() else 0
    host = storage.endpoint.split("://", 1)[1]
    s3 = Minio(host, storage.access_key_id, storage.secret_access_key.get_secret_value(), secure=False)
    return sum(1 for _ in s3.list_objects(storage.bucket, prefix=f"{storage.prefix}/blobs/", recursive=True))


def _filed(server: Any, path: str, deadline_s: float = 120.0) -> dict[str, Any]:
    """The newest version of ``path`` once hashed (the deadline only guards against a hang)."""
    end = time.monotonic() + deadline_s
    while True:
        answer = _http.get(f"{server.url}/api/v1/artifact-versions/{path}", timeout=60)
        version: dict[str, Any] = answer.json()["versions"][-1]
        if not version["is_pending"] or time.monotonic() > end:
            return version
        time.sleep(0.2)


def _random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_server_info_offers_direct_transfers_on_s3_only(server: Any) -> None:
    info = _http.get(f"{server.url}/api/3.0/mlflow/server-info", timeout=60).json()
    direct = server.settings.storage.kind == "s3"
    assert info["multipart_uploads_enabled"] is direct
    assert info["multipart_downloads_enabled"] is direct


@pytest.mark.parametrize("owner", ["run", "logged_model"])
def test_the_stock_mlflow_client_sends_and_fetches_bytes_around_the_server(
    server: Any, owner: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow's thresholds are 500 MB and 100 MB; smaller ones make a 13 MB file go in 3 parts.
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * MiB))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * MiB))
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE", str(4 * MiB))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    client = MlflowClient(server.url)
    source = _random_file(tmp_path / "weights.bin", 13 * MiB)
    exp = client.create_experiment(f"direct-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp)

    before = _counters(server)
    if owner == "run":
        client.log_artifact(run.info.run_id, str(source), "model")
        uploaded = _delta(before, _counters(server))
        out = Path(client.download_artifacts(run.info.run_id, "model/weights.bin", str(tmp_path / "dl")))
        path = f"{exp}/{run.info.run_id}/artifacts/model/weights.bin"
    else:
        model = client.create_logged_model(exp, name="big", source_run_id=run.info.run_id)
        client.log_model_artifact(model.model_id, str(source), "model")
        uploaded = _delta(before, _counters(server))
        uri = f"{model.artifact_location}/model/weights.bin"
        out = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "dl")))
        path = f"{exp}/models/{model.model_id}/artifacts/model/weights.bin"
    downloaded = _delta(before, _counters(server))

    assert out.read_bytes() == source.read_bytes()
    version = _filed(server, path)  # the sha256 of a multipart upload is filled in after the acknowledgement
    assert version["sha256"] == _sha(source) and version["size_bytes"] == 13 * MiB
    if server.settings.storage.kind == "s3":
        # Not one artifact byte crossed lakeops' HTTP interface, either way.
        assert uploaded["proxied_upload_bytes"] == 0 and uploaded["direct_uploads"] == 1
        assert downloaded["proxied_download_bytes"] == 0 and downloaded["direct_downloads"] >= 1
        assert _delta(before, _counters(server))["verified_bytes"] == 13 * MiB  # one read inside the store
    else:
        assert uploaded["proxied_upload_bytes"] == 13 * MiB and uploaded["direct_uploads"] == 0
        assert downloaded["proxied_download_bytes"] == 13 * MiB


def test_our_client_uploads_in_parallel_parts_and_relogging_the_same_bytes_is_a_reference(
    server: Any, tmp_path: Path
) -> None:
    source = _random_file(tmp_path / "base-model.bin", 20 * MiB)
    with lakeops.connect(server.url) as client:
        experiment = f"dedup-{uuid.uuid4().hex[:8]}"
        blobs_before = _blob_count(server)
        before = _counters(server)
        with client.start_run(experiment) as first:
            first_path = first.log_artifact(source)
        sent = _delta(before, _counters(server))
        assert _blob_count(server) == blobs_before + 1
        with client.start_run(experiment) as second:
            second_path = second.log_artifact(source, "copy")
        again = _delta(before, _counters(server))

        assert _blob_count(server) == blobs_before + 1  # the same 20 MB logged twice: one object
        assert again["deduplicated_uploads"] - sent["deduplicated_uploads"] == 1
        if server.settings.storage.kind == "s3":
            assert sent["direct_uploads"] == 1 and sent["proxied_upload_bytes"] == 0
            assert again["direct_upload_bytes"] == sent["direct_upload_bytes"] == 20 * MiB  # nothing sent again
        else:
            assert sent["proxied_upload_bytes"] == 20 * MiB
            assert again["proxied_upload_bytes"] == 20 * MiB  # the second upload asked first: no bytes
        for path in (first_path, second_path):
            assert client.read_artifact(path) == source.read_bytes()
            dest = tmp_path / f"dl-{uuid.uuid4().hex[:6]}"
            version = client.transport.download_artifact(path, dest, version_id=None)
            assert dest.read_bytes() == source.read_bytes() and version["sha256"] == _sha(source)


def test_an_interrupted_upload_resumes_with_the_parts_it_holds(server: Any, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "ckpt.bin", 20 * MiB)
    sha256, api = _sha(source), f"{server.url}/api/v1"
    path = f"resume-{uuid.uuid4().hex[:8]}/ckpt.bin"
    plan = _http.post(f"{api}/artifact-uploads", json={"path": path, "size_bytes": 20 * MiB, "sha256": sha256}).json()
    if server.settings.storage.kind == "local":
        assert plan == {**plan, "status": "proxy", "upload_id": None}  # file:// takes bytes through lakeops
        with lakeops.connect(server.url) as client:
            assert client.transport.upload_artifact(path, source, progress=None)["sha256"] == sha256
        return
    assert plan["status"] == "upload" and [p["part_number"] for p in plan["parts"]] == [1, 2, 3]
    part_size = plan["part_size"]
    # The first part goes out, then the uploader dies.
    first = _http.put(plan["parts"][0]["url"], content=source.read_bytes()[:part_size])
    assert first.status_code == 200

    resumed = _http.post(
        f"{api}/artifact-uploads", json={"path": path, "size_bytes": 20 * MiB, "sha256": sha256}
    ).json()
    assert resumed["upload_id"] == plan["upload_id"]
    assert [p["part_number"] for p in resumed["done_parts"]] == [1]
    assert [p["part_number"] for p in resumed["parts"]] == [2, 3]

    with lakeops.connect(server.url) as client:
        before = _counters(server)
        version = client.transport.upload_artifact(path, source, progress=None)
        assert version["sha256"] == sha256 and version["size_bytes"] == 20 * MiB
        assert _delta(before, _counters(server))["direct_uploads"] == 1
        assert client.read_artifact(path) == source.read_bytes()


def test_bad_transfer_requests_are_refused_with_4xx(server: Any, tmp_path: Path) -> None:
    api = f"{server.url}/api/v1"
    mpu = f"{server.url}/api/2.0/mlflow-artifacts/mpu"
    sha = "0" * 64
    direct = server.settings.storage.kind == "s3"
    refused = [
        _http.post(f"{api}/artifact-uploads", json={"path": "../x", "size_bytes": 1, "sha256": sha}),
        _http.post(f"{api}/artifact-uploads", json={"path": "a/b", "size_bytes": 1, "sha256": "nothex"}),
        _http.post(f"{api}/artifact-uploads", json={"path": "a/b", "size_bytes": -1, "sha256": sha}),
        _http.post(
            f"{api}/artifact-uploads/nope/complete", json={"path": "a/b", "size_bytes": 1, "sha256": sha, "parts": []}
        ),
        _http.post(f"{mpu}/create/a/b", json={"path": "/tmp/x.bin", "num_parts": 0}),
        _http.post(f"{mpu}/create/a/../../b", json={"path": "/tmp/x.bin", "num_parts": 1}),
        _http.post(f"{mpu}/complete/a/b", json={"path": "/tmp/x.bin", "upload_id": "garbage", "parts": []}),
        _http.get(f"{server.url}/api/2.0/mlflow-artifacts/presigned/no/such/file"),
    ]
    for response in refused:
        assert 400 <= response.status_code < 500, (response.request.url, response.status_code, response.text)
    if not direct:
        create = _http.post(f"{mpu}/create/a/b", json={"path": "/tmp/x.bin", "num_parts": 1})
        assert create.status_code == 400 and "through lakeops only" in create.text
        return
    # Parts the store does not hold cannot complete an upload, and nothing is recorded.
    source = _random_file(tmp_path / "x.bin", 9 * MiB)
    body = {"path": f"bad-{uuid.uuid4().hex[:6]}/x.bin", "size_bytes": 9 * MiB, "sha256": _sha(source)}
    plan = _http.post(f"{api}/artifact-uploads", json=body).json()
    complete = _http.post(
        f"{api}/artifact-uploads/{plan['upload_id']}/complete",
        json={**body, "parts": [{"part_number": 1, "etag": "0" * 32}, {"part_number": 2, "etag": "1" * 32}]},
    )
    assert complete.status_code == 400, complete.text
    assert _http.get(f"{api}/artifacts/{body['path']}").status_code == 404
    assert (
        _http.delete(f"{api}/artifact-uploads/{plan['upload_id']}", params={"sha256": body["sha256"]}).status_code
        == 204
    )
