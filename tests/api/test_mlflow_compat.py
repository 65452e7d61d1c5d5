"""Smaller differences from an MLflow server, seen through the unmodified mlflow client."""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from mlflow.utils.rest_utils import MlflowHostCreds, http_request, verify_rest_response

pytestmark = pytest.mark.api


@pytest.fixture
def client(server, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


@pytest.mark.parametrize(
    "path", ["/api/2.0/mlflow/no-such-thing", "/api/3.0/mlflow/no/such/thing", "/ajax-api/2.0/mlflow/nothing"]
)
def test_unknown_route_is_endpoint_not_found(server, path: str) -> None:  # type: ignore[no-untyped-def]
    response = http_request(MlflowHostCreds(server.url), path, "GET", max_retries=0)
    with pytest.raises(RestException, match="ENDPOINT_NOT_FOUND") as caught:
        verify_rest_response(response, path)
    assert caught.value.error_code == "ENDPOINT_NOT_FOUND"
    assert response.status_code == 404


def test_version_answers_like_mlflow(server) -> None:  # type: ignore[no-untyped-def]
    answer = httpx.get(f"{server.url}/version")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "3.17.2"  # parsed by the client's span exporter as packaging's Version
    own = httpx.get(f"{server.url}/api/v1/version").json()
    assert own["mlflow_protocol"] == "3.17.2" and "lakeops" in own


def test_logged_model_differences(client: MlflowClient) -> None:
    exp_id = client.create_experiment(f"compat-{uuid.uuid4().hex[:8]}", artifact_location="relative/artifacts")
    location = client.get_experiment(exp_id).artifact_location
    assert PurePosixPath(location).is_absolute() and location.endswith("/relative/artifacts")

    run = client.create_run(exp_id)
    model = client.create_logged_model(exp_id, name="clf", source_run_id=run.info.run_id)
    client.log_metric(
        run.info.run_id, "acc", 0.75, step=3, model_id=model.model_id, dataset_name="val", dataset_digest="d1"
    )
    client.log_metric(run.info.run_id, "loss", 0.5)  # the run's alone
    shown = client.get_logged_model(model.model_id)
    assert [(m.key, m.value, m.step, m.run_id, m.model_id, m.dataset_name) for m in shown.metrics] == [
        ("acc", 0.75, 3, run.info.run_id, model.model_id, "val")
    ]
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.75, "loss": 0.5}
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.log_metric(run.info.run_id, "acc", 0.8, model_id="m-missing")

    client.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_logged_model(model.model_id)
    assert client.search_logged_models([exp_id]) == []


def test_model_version_from_unknown_run_is_accepted(client: MlflowClient) -> None:
    name = f"compat-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, "runs:/0123456789abcdef/model", run_id="0123456789abcdef")
    assert (version.version, version.run_id, version.source) == (
        "1",
        "0123456789abcdef",
        "runs:/0123456789abcdef/model",
    )
    assert client.get_model_version_download_uri(name, "1") == "runs:/0123456789abcdef/model"
