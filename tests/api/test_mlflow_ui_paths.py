"""The paths MLflow's web UI calls, against a running ``lakeops serve`` seeded by the stock client:
``POST /graphql`` with the UI's own queries, artifact listing and download, dataset summaries,
``server-info`` under ``/ajax-api``, and prompts hidden from the registry's model search."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.api

# The UI's queries as its bundle (mlflow 3.17.2, mlflow/server/js/build) sends them, directive included.
GET_EXPERIMENT = """query MlflowGetExperimentQuery($input: MlflowGetExperimentInput!) @component(name: "MLflow.ExperimentRunTracking") {
    mlflowGetExperiment(input: $input) {
      apiError { code message }
      experiment { artifactLocation creationTime effectiveTraceArchivalRetention experimentId lastUpdateTime lifecycleStage name tags { key value } }
    }
  }"""
RUN_FIELDS = """
        info { runName status runUuid experimentId artifactUri endTime lifecycleStage startTime userId }
        experiment { experimentId name tags { key value } artifactLocation lifecycleStage lastUpdateTime }
        modelVersions { status version name source }
        data { metrics { key value step timestamp } params { key value } tags { key value } }
        inputs {
          datasetInputs { dataset { digest name profile schema source sourceType } tags { key value } }
          modelInputs { modelId }
        }
        outputs { modelOutputs { modelId step } }"""
GET_RUN = (
    """query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
    mlflowGetRun(input: $data) { apiError { helpUrl code message } run {"""
    + RUN_FIELDS
    + "} } }"
)
SEARCH_RUNS = (
    """query SearchRuns($data: MlflowSearchRunsInput!) {
    mlflowSearchRuns(input: $data) { apiError { helpUrl code message } runs {"""
    + RUN_FIELDS
    + "} } }"
)
METRIC_HISTORY = """query GetMetricHistoryBulkInterval($data: MlflowGetMetricHistoryBulkIntervalInput!)
  @component(name: "MLflow.ExperimentRunTracking") {
    mlflowGetMetricHistoryBulkInterval(input: $data) {
      __typename
      metrics { timestamp step runId key value }
      apiError { code message }
    }
  }"""


def _graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def seeded(server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    client = MlflowClient(server.url)
    exp = mlflow.set_experiment(f"ui-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(run_name="ui-run") as run:
        mlflow.log_param("lr", "0.1")
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("odd", math.nan)
        mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({"x": [1, 2]}), name="train"), context="training")
        note = tmp_path / "notes.txt"
        note.write_text("hello from the run")
        mlflow.log_artifact(str(note), artifact_path="docs")
    name = f"ui-model-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run.info.run_id}/docs", run_id=run.info.run_id)
    return {"experiment_id": exp.experiment_id, "run_id": run.info.run_id, "model": name}


def test_graphql_answers_the_ui_queries(server, seeded: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    exp_id, run_id = seeded["experiment_id"], seeded["run_id"]
    got = _graphql(server.url, GET_EXPERIMENT, {"input": {"experimentId": exp_id}})["mlflowGetExperiment"]
    assert got["apiError"] is None and got["experiment"]["experimentId"] == exp_id
    assert isinstance(got["experiment"]["creationTime"], str)  # LongString, as MLflow's schema has it

    run = _graphql(server.url, GET_RUN, {"data": {"runId": run_id}})["mlflowGetRun"]["run"]
    assert run["info"]["runName"] == "ui-run" and run["info"]["status"] == "FINISHED"
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"loss": 0.2, "odd": None}  # NaN is null
    assert run["data"]["params"] == [{"key": "lr", "value": "0.1"}]
    assert run["experiment"]["experimentId"] == exp_id
    assert [(v["name"], v["version"]) for v in run["modelVersions"]] == [(seeded["model"], "1")]
    (dataset,) = run["inputs"]["datasetInputs"]
    assert dataset["dataset"]["name"] == "train"
    assert {"key": "mlflow.data.context", "value": "training"} in dataset["tags"]

    missing = _graphql(server.url, GET_RUN, {"data": {"runId": "nope"}})["mlflowGetRun"]
    assert missing["run"] is None and missing["apiError"]["code"] == "RESOURCE_DOES_NOT_EXIST"

    runs = _graphql(
        server.url, SEARCH_RUNS, {"data": {"experimentIds": [exp_id], "filter": "params.lr = '0.1'", "maxResults": 10}}
    )["mlflowSearchRuns"]["runs"]
    assert [r["info"]["runUuid"] for r in runs] == [run_id]

    history = _graphql(
        server.url, METRIC_HISTORY, {"data": {"runIds": [run_id], "metricKey": "loss", "maxResults": 3}}
    )["mlflowGetMetricHistoryBulkInterval"]
    assert [(m["step"], m["runId"]) for m in history["metrics"]] == [("0", run_id), ("2", run_id), ("4", run_id)]

    bad = httpx.post(f"{server.url}/graphql", json={"query": "{ nothing }"}).json()
    assert bad["errors"] and "nothing" in bad["errors"][0]["message"]


def test_ui_rest_paths(server, seeded: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    run_id = seeded["run_id"]
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        top = httpx.get(f"{server.url}{prefix}/artifacts/list", params={"run_id": run_id}).json()
        assert top["files"] == [{"path": "docs", "is_dir": True}]
        inner = httpx.get(f"{server.url}{prefix}/artifacts/list", params={"run_id": run_id, "path": "docs"}).json()
        assert inner["files"] == [{"path": "docs/notes.txt", "is_dir": False, "file_size": 18}]
    escape = httpx.get(f"{server.url}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": "../.."})
    assert escape.status_code == 400

    body = httpx.get(f"{server.url}/get-artifact", params={"run_uuid": run_id, "path": "docs/notes.txt"})
    assert body.status_code == 200 and body.text == "hello from the run"
    assert httpx.get(f"{server.url}/get-artifact", params={"run_uuid": run_id, "path": "docs/none"}).status_code == 404
    version_file = httpx.get(
        f"{server.url}/model-versions/get-artifact",
        params={"name": seeded["model"], "version": "1", "path": "notes.txt"},
    )
    assert version_file.status_code == 200 and version_file.text == "hello from the run"

    summaries = httpx.post(
        f"{server.url}/ajax-api/2.0/mlflow/experiments/search-datasets",
        json={"experiment_ids": [seeded["experiment_id"]]},
    ).json()["dataset_summaries"]
    assert [(s["name"], s.get("context")) for s in summaries] == [("train", "training")]

    info = httpx.get(f"{server.url}/ajax-api/3.0/mlflow/server-info").json()
    assert info["store_type"] and "workspaces_enabled" in info


def test_prompts_are_hidden_from_model_search(server, seeded: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    prompt = f"greeting-{uuid.uuid4().hex[:6]}"
    mlflow.genai.register_prompt(name=prompt, template="Hello {{name}}!")
    client = MlflowClient(server.url)
    names = {m.name for m in client.search_registered_models(max_results=1000)}
    assert seeded["model"] in names and prompt not in names
    assert mlflow.genai.load_prompt(f"prompts:/{prompt}/1").template == "Hello {{name}}!"
    asked = client.search_registered_models(filter_string="tags.`mlflow.prompt.is_prompt` = 'true'")
    assert prompt in {m.name for m in asked}
