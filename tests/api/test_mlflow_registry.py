"""The unmodified mlflow client's registry calls against a running ``lakeops serve`` (file and s3)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import mlflow
import mlflow.tracking._model_registry.utils as registry_utils
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

pytestmark = pytest.mark.api


class AddN(PythonModel):
    """A tiny pyfunc model: adds ``n`` to every value."""

    def __init__(self, n: int) -> None:
        self.n = n

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return model_input + self.n


@pytest.fixture
def client(server, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    # Not mlflow.set_registry_uri: it sets a process global and MLFLOW_REGISTRY_URI for good, and a
    # later test in this worker whose client names only a tracking URI would then reach this
    # (by then stopped) server for registry calls. Both are restored after the test.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", server.url)
    monkeypatch.setattr(registry_utils, "_registry_uri", server.url)
    return MlflowClient(server.url, registry_uri=server.url)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_register_from_run_artifacts_and_load_by_alias(client: MlflowClient, tmp_path: Path) -> None:
    mlflow.set_experiment(_name("reg-run"))
    local = tmp_path / "add3"
    mlflow.pyfunc.save_model(str(local), python_model=AddN(3), pip_requirements=[])
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(local), "model")
    name = _name("adder")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    assert (version.version, version.run_id) == ("1", run.info.run_id)
    assert client.get_model_version_download_uri(name, "1").endswith(f"{run.info.run_id}/artifacts/model")

    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    frame = pd.DataFrame({"x": [1, 2]})
    by_alias = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert by_alias.predict(frame)["x"].tolist() == [4, 5]
    by_version = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert by_version.predict(frame)["x"].tolist() == [4, 5]


def test_register_logged_model_and_move_alias(client: MlflowClient, server) -> None:  # type: ignore[no-untyped-def]
    mlflow.set_experiment(_name("reg-logged"))
    name = _name("logged")
    infos = []
    for n in (10, 20):
        with mlflow.start_run() as run:
            infos.append((mlflow.pyfunc.log_model(name="model", python_model=AddN(n), pip_requirements=[]), run))
    v1 = mlflow.register_model(infos[0][0].model_uri, name)
    v2 = mlflow.register_model(infos[1][0].model_uri, name)
    assert (v1.version, v2.version) == ("1", "2")
    assert client.get_model_version(name, "2").run_id == infos[1][1].info.run_id
    assert client.get_logged_model(infos[0][0].model_id).model_id == infos[0][0].model_id

    client.set_registered_model_alias(name, "prod", "1")
    first = mlflow.pyfunc.load_model(f"models:/{name}@prod")
    assert first.predict(pd.DataFrame({"x": [1]}))["x"].tolist() == [11]
    client.set_registered_model_alias(name, "prod", "2")  # moving the alias is a new change row
    assert mlflow.pyfunc.load_model(f"models:/{name}@prod").predict(pd.DataFrame({"x": [1]}))["x"].tolist() == [21]
    assert client.get_registered_model(name).aliases == {"prod": "2"}
    client.delete_registered_model_alias(name, "prod")
    with pytest.raises(MlflowException, match="alias prod not found"):
        client.get_model_version_by_alias(name, "prod")

    # the native API answers "which version held the alias then" from the recorded moves
    history = httpx.get(f"{server.url}/api/v1/registered-models/{name}/aliases/prod/history").json()["changes"]
    assert [(c["operation"], c["version"]) for c in history] == [
        ("set_alias", 1),
        ("set_alias", 2),
        ("delete_alias", None),
    ]
    for change, expected in zip(history[:2], (1, 2), strict=True):
        as_of = datetime.fromtimestamp(change["changed_at"] / 1000, tz=UTC).isoformat()
        got = httpx.get(f"{server.url}/api/v1/registered-models/{name}/aliases/prod", params={"as_of": as_of}).json()
        assert got["version"] == expected
    at = datetime.fromtimestamp(history[0]["changed_at"] / 1000, tz=UTC).isoformat()
    old = httpx.get(
        f"{server.url}/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": "prod", "as_of": at}
    )
    assert old.json()["model_version"]["version"] == "1"


def test_registry_crud_search_and_stages(client: MlflowClient) -> None:
    prefix = _name("crud")
    names = [f"{prefix}-{i}" for i in range(5)]
    for i, name in enumerate(names):
        client.create_registered_model(name, tags={"team": "a" if i % 2 else "b"}, description=f"model {i}")
        for j in range(3):
            client.create_model_version(name, f"s3://bucket/{name}/{j}", tags={"j": str(j)})
    with pytest.raises(MlflowException, match="already exists") as exc:
        client.create_registered_model(names[0])
    assert exc.value.error_code == "RESOURCE_ALREADY_EXISTS"

    found = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", max_results=2)
    assert [m.name for m in found] == names[:2] and found.token
    everything = []
    token = None
    while True:
        page = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2, page_token=token)
        everything += [m.name for m in page]
        token = page.token
        if not token:
            break
    assert everything == names
    tagged = client.search_registered_models(f"name LIKE '{prefix}-%' AND tags.team = 'a'")
    assert [m.name for m in tagged] == [names[1], names[3]]

    versions = client.search_model_versions(f"name = '{names[0]}'")
    assert [v.version for v in versions] == ["3", "2", "1"]
    assert [v.version for v in client.search_model_versions(f"name = '{names[0]}' AND tags.j = '1'")] == ["2"]

    # stages are legacy in MLflow too: its client warns on every stage call
    with pytest.warns(FutureWarning, match="deprecated since 2.9.0"):
        client.transition_model_version_stage(names[0], "1", "Production")
    with pytest.warns(FutureWarning, match="deprecated since 2.9.0"):
        moved = client.transition_model_version_stage(names[0], "2", "Production", archive_existing_versions=True)
    with pytest.warns(FutureWarning, match="deprecated since 2.9.0"):
        latest = client.get_latest_versions(names[0], stages=["Production"])
    assert moved.current_stage == "Production"
    assert client.get_model_version(names[0], "1").current_stage == "Archived"
    assert [v.version for v in latest] == ["2"]

    client.update_registered_model(names[0], description="updated")
    client.update_model_version(names[0], "1", description="v1 notes")
    client.set_registered_model_tag(names[0], "owner", "ana")
    client.delete_registered_model_tag(names[0], "team")
    client.set_model_version_tag(names[0], "1", "approved", "yes")
    client.delete_model_version_tag(names[0], "1", "j")
    model = client.get_registered_model(names[0])
    assert (model.description, model.tags) == ("updated", {"owner": "ana"})
    v1 = client.get_model_version(names[0], "1")
    assert (v1.description, v1.tags) == ("v1 notes", {"approved": "yes"})

    client.rename_registered_model(names[0], f"{prefix}-renamed")
    assert client.get_registered_model(f"{prefix}-renamed").description == "updated"
    assert client.get_model_version(f"{prefix}-renamed", "3").source == f"s3://bucket/{names[0]}/2"
    client.delete_model_version(f"{prefix}-renamed", "3")
    assert [v.version for v in client.search_model_versions(f"name = '{prefix}-renamed'")] == ["2", "1"]
    client.delete_registered_model(f"{prefix}-renamed")
    with pytest.raises(MlflowException, match="not found") as missing:
        client.get_registered_model(f"{prefix}-renamed")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_bad_input_gets_mlflow_errors(client: MlflowClient, server) -> None:  # type: ignore[no-untyped-def]
    name = _name("bad")
    client.create_registered_model(name)
    client.create_model_version(name, "s3://bucket/bad/1")
    api = f"{server.url}/api/2.0/mlflow"
    for alias in ("v1", "latest", "a b"):
        r = httpx.post(f"{api}/registered-models/alias", json={"name": name, "alias": alias, "version": "1"})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
        assert "Invalid alias" in r.json()["message"]
    assert client.get_registered_model(name).aliases == {}  # nothing stored
    with pytest.raises(MlflowException, match="not found") as exc:
        client.get_model_version(name, "7")
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException, match="alias nope not found"):
        client.get_model_version_by_alias(name, "nope")
    with pytest.raises(MlflowException, match="name=ghost-model not found"):
        client.create_model_version("ghost-model", "s3://bucket/x")
    r = httpx.get(f"{api}/model-versions/search", params={"filter": "colour = 'red'"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = httpx.post(f"{api}/model-versions/transition-stage", json={"name": name, "version": "1", "stage": "Gold"})
    assert r.status_code == 400 and "Invalid model version stage" in r.json()["message"]
    assert client.get_model_version(name, "1").current_stage == "None"
