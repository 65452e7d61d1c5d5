"""Artifacts, datasets and logged models through the unmodified mlflow client."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.api


class AddN(mlflow.pyfunc.PythonModel):
    """A tiny pyfunc model: adds n to every value."""

    def __init__(self, n: int) -> None:
        self.n = n

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        return model_input + self.n


@pytest.fixture
def client(server, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


def test_artifacts_round_trip(client: MlflowClient, tmp_path: Path) -> None:
    mlflow.set_experiment(f"art-{uuid.uuid4().hex[:8]}")
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("alpha")
    (tmp_path / "src" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "src" / "a.txt"))
        mlflow.log_artifacts(str(tmp_path / "src"), artifact_path="dir")
        mlflow.log_text("hello", "notes/hello.txt")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    top = {f.path: f.is_dir for f in client.list_artifacts(run.info.run_id)}
    assert top == {"a.txt": False, "dir": True, "notes": True}
    inner = {f.path: f.file_size for f in client.list_artifacts(run.info.run_id, "dir/sub")}
    assert inner == {"dir/sub/b.bin": 25600}
    out = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "dl")))
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "dir" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    assert (out / "notes" / "hello.txt").read_text() == "hello"


def test_overwritten_artifact_stays_retrievable_by_version(server, client: MlflowClient, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    exp = client.create_experiment(f"ver-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp)
    ckpt = tmp_path / "ckpt.pt"
    for epoch in range(3):
        ckpt.write_bytes(f"weights-{epoch}".encode() * 1000)
        client.log_artifact(run.info.run_id, str(ckpt), "checkpoints")
    path = f"{exp}/{run.info.run_id}/artifacts/checkpoints/ckpt.pt"
    with httpx.Client(base_url=server.url) as http:
        versions = http.get(f"/api/v1/artifact-versions/{path}").json()["versions"]
        assert len(versions) == 3 and [v["is_current"] for v in versions] == [False, False, True]
        for epoch, version in enumerate(versions):
            body = http.get(f"/api/v1/artifacts/{path}", params={"version_id": version["version_id"]}).content
            assert body == f"weights-{epoch}".encode() * 1000
            assert version["sha256"] == hashlib.sha256(body).hexdigest() and version["size_bytes"] == len(body)
        assert http.get(f"/api/v1/artifacts/{path}").content == b"weights-2" * 1000


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../../b", "%2e%2e/secret", "a/%2e%2e/%2e%2e/b", "/abs"])
def test_path_traversal_is_refused(server, bad: str) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url) as http:
        for prefix in ("/api/2.0/mlflow-artifacts/artifacts/", "/api/v1/artifacts/"):
            r = http.put(prefix + bad, content=b"x")
            assert r.status_code in (400, 404), (prefix, bad, r.status_code, r.text)
            r = http.get(prefix + bad)
            assert r.status_code in (400, 404)
        r = http.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": "../.."})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_log_input_and_pyfunc_model_round_trip(client: MlflowClient, tmp_path: Path) -> None:
    mlflow.set_experiment(f"model-{uuid.uuid4().hex[:8]}")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with mlflow.start_run() as run:
        mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
        info = mlflow.pyfunc.log_model(name="adder", python_model=AddN(5))
    fetched = client.get_run(run.info.run_id)
    assert [d.dataset.name for d in fetched.inputs.dataset_inputs] == ["train"]
    assert fetched.inputs.dataset_inputs[0].tags[0].value == "training"
    assert [o.model_id for o in fetched.outputs.model_outputs] == [info.model_id]
    model = client.get_logged_model(info.model_id)
    assert model.status.name == "READY" and model.source_run_id == run.info.run_id
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.predict(frame)["x"].tolist() == [6.0, 7.0, 8.0]
    # The model's files are versioned artifacts like any other.
    listed = {f.path.rsplit("/", 1)[-1] for f in mlflow.artifacts.list_artifacts(artifact_uri=model.artifact_location)}
    assert "MLmodel" in listed and "python_model.pkl" in listed
