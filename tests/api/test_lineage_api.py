"""Datasets, lineage, OpenLineage and quality over real HTTP (``lakeops serve`` on file and s3)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import mlflow
import pandas as pd
import pyarrow as pa
import pytest
from mlflow import MlflowClient
from openlineage_events import ol_event

pytestmark = pytest.mark.api

ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture
def http(server) -> httpx.Client:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _run(http: httpx.Client, **body: Any) -> str:
    r = http.post("/api/v1/experiments/0/runs", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["info"]["run_id"])


def _nodes(result: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(n["kind"], n["id"]): n["distance"] for n in result["nodes"]}


def test_openlineage_events_posted_then_queried(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    run_id, parent_id = str(uuid.uuid4()), str(uuid.uuid4())
    src = [("postgres://db", f"orders_{tag}", "v1")]
    out = [("s3://lake", f"features_{tag}", "v9")]
    r = http.post("/api/v1/lineage", json=ol_event("START", run_id, parent_run_id=parent_id, inputs=src))
    assert r.status_code == 201, r.text
    r = http.post(
        "/api/v1/lineage", json=ol_event("COMPLETE", run_id, parent_run_id=parent_id, inputs=src, outputs=out)
    )
    assert r.status_code == 201, r.text
    versions = http.get(f"/api/v1/datasets/s3:%2F%2Flake%2Ffeatures_{tag}/versions")
    assert versions.status_code == 200, versions.text
    [version] = versions.json()["versions"]
    assert version["digest"] == "v9"
    r = http.get(f"/api/v1/lineage/dataset_version/{version['dataset_version_id']}", params={"depth": 5})
    assert r.status_code == 200, r.text
    nodes = _nodes(r.json())
    assert nodes[("run", uuid.UUID(run_id).hex)] == 1
    assert nodes[("run", uuid.UUID(parent_id).hex)] == 2
    inputs = http.get(f"/api/v1/datasets/postgres:%2F%2Fdb%2Forders_{tag}/versions").json()["versions"]
    assert nodes[("dataset_version", inputs[0]["dataset_version_id"])] == 2
    down = http.get(
        f"/api/v1/lineage/dataset_version/{inputs[0]['dataset_version_id']}", params={"direction": "downstream"}
    ).json()
    assert _nodes(down)[("dataset_version", version["dataset_version_id"])] == 2
    # as_of before anything was recorded: the root alone
    past = http.get(
        f"/api/v1/lineage/dataset_version/{version['dataset_version_id']}", params={"as_of": "2020-01-01T00:00:00Z"}
    ).json()
    assert [n["id"] for n in past["nodes"]] == [version["dataset_version_id"]]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda e: e["run"].update(runId="not-a-uuid"), id="bad-run-id"),
        pytest.param(lambda e: e.update(eventType="FINISHED"), id="bad-event-type"),
        pytest.param(lambda e: e["outputs"][0]["facets"]["version"].pop("datasetVersion"), id="bad-version-facet"),
        pytest.param(lambda e: e["run"]["facets"]["parent"]["job"].pop("namespace"), id="bad-parent-facet"),
    ],
)
def test_malformed_openlineage_event_gets_400_and_stores_nothing(http: httpx.Client, mutate: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    event = ol_event(
        "COMPLETE", str(uuid.uuid4()), parent_run_id=str(uuid.uuid4()), outputs=[("s3://lake", f"bad_{tag}", "1")]
    )
    broken = copy.deepcopy(event)
    mutate(broken)
    r = http.post("/api/v1/lineage", json=broken)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_argument"
    assert "Invalid OpenLineage RunEvent at" in r.json()["error"]["message"]
    assert http.get(f"/api/v1/datasets/s3:%2F%2Flake%2Fbad_{tag}/versions").status_code == 404
    assert http.post("/api/v1/lineage", content=b"{not json").status_code == 400


def test_dataframe_dataset_run_emits_openlineage(http: httpx.Client) -> None:
    parent = _run(http, run_name="sweep")
    run_id = _run(http, run_name="trial", parent_run_id=parent)
    table = pa.table({"age": [31, 45, 27], "city": ["a", "b", "a"]})
    name = f"customers-{uuid.uuid4().hex[:8]}"
    r = http.post(
        f"/api/v1/datasets/{name}/dataframe",
        params={"run_id": run_id},
        content=_arrow(table),
        headers={"content-type": ARROW},
    )
    assert r.status_code == 201, r.text
    version = r.json()
    again = http.post(f"/api/v1/datasets/{name}/dataframe", content=_arrow(table), headers={"content-type": ARROW})
    assert again.json()["dataset_version_id"] == version["dataset_version_id"]
    assert len(http.get(f"/api/v1/datasets/{name}/versions").json()["versions"]) == 1
    assert http.patch(f"/api/v1/runs/{run_id}", json={"status": "FINISHED"}).status_code == 200
    events = http.get(f"/api/v1/runs/{run_id}/openlineage").json()["events"]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[1]["inputs"][0]["facets"]["version"]["datasetVersion"] == version["digest"]
    assert uuid.UUID(events[1]["run"]["facets"]["parent"]["run"]["runId"]).hex == parent
    for event in events:  # our own events pass our own validation
        assert http.post("/api/v1/lineage", json=event).status_code == 201
    assert http.get("/api/v1/runs/nope/openlineage").status_code == 404

    # quality: attach a suite, validate, ask the gate
    gate = http.get("/api/v1/quality/gate", params={"run_id": run_id}).json()
    assert gate["allowed"] is False and "never validated" in gate["reasons"][0]
    suite = [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0, "max_value": 40}}
    ]
    r = http.put(f"/api/v1/datasets/{name}/suites/basic", json={"expectations": suite})
    assert r.status_code == 200, r.text
    bad = http.put(f"/api/v1/datasets/{name}/suites/other", json={"expectations": [{"type": "expect_magic"}]})
    assert bad.status_code == 400 and "expect_magic" in bad.json()["error"]["message"]
    r = http.post(f"/api/v1/dataset-versions/{version['dataset_version_id']}/validations", json={})
    assert r.status_code == 201, r.text
    [result] = r.json()["validations"]
    assert result["success"] is False and result["results"][0]["result"]["unexpected_count"] == 1
    gate = http.get("/api/v1/quality/gate", params={"run_id": run_id}).json()
    assert gate["allowed"] is False and "failed its latest validation" in gate["reasons"][0]
    suite[0]["kwargs"]["max_value"] = 120
    assert http.put(f"/api/v1/datasets/{name}/suites/basic", json={"expectations": suite}).status_code == 200
    r = http.post(f"/api/v1/dataset-versions/{version['dataset_version_id']}/validations", json={"suite_name": "basic"})
    assert r.json()["validations"][0]["success"] is True
    assert http.get("/api/v1/quality/gate", params={"run_id": run_id}).json() == {
        "allowed": True,
        "reasons": [],
        "training_datasets": [version["dataset_version_id"]],
    }
    history = http.get(f"/api/v1/dataset-versions/{version['dataset_version_id']}/validations").json()
    assert [v["success"] for v in history["validations"]] == [False, True]


def test_mlflow_log_input_lands_in_datasets(server, monkeypatch: pytest.MonkeyPatch, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    name = f"wine-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(f"lineage-{name}")  # this server's experiment, not one another test left active
    dataset = mlflow.data.from_pandas(pd.DataFrame({"alcohol": [13.2, 12.1], "label": [1, 0]}), name=name)
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    [version] = http.get(f"/api/v1/datasets/{name}/versions").json()["versions"]
    assert version["digest"] == dataset.digest and version["row_count"] == 2
    up = http.get(f"/api/v1/lineage/run/{run.info.run_id}", params={"depth": 1}).json()
    assert _nodes(up)[("dataset_version", version["dataset_version_id"])] == 1
    assert MlflowClient(server.url).get_run(run.info.run_id).inputs.dataset_inputs[0].dataset.digest == dataset.digest


def test_bad_lineage_queries(http: httpx.Client) -> None:
    r = http.get("/api/v1/lineage/run/does-not-exist")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert http.get("/api/v1/lineage/table/x").status_code == 400
    assert http.get("/api/v1/lineage/deployment/x", params={"depth": 0}).status_code == 400
    assert http.get("/api/v1/lineage/deployment/x", params={"as_of": "soon"}).status_code == 400
    assert http.post("/api/v1/datasets", json={"name": "x"}).status_code == 400
    assert http.post("/api/v1/datasets", json={"name": "x", "artifact_path": "no/such"}).status_code == 404


def test_official_openlineage_client_emits_to_lakeops(http: httpx.Client, server) -> None:  # type: ignore[no-untyped-def]
    """The openlineage-python client, pointed at lakeops as at Marquez, with no code change."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import dataset_version_dataset, parent_run
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    client = OpenLineageClient(transport=HttpTransport(HttpConfig(url=server.url, retry={"total": 0})))
    tag = uuid.uuid4().hex[:8]
    run_id, parent_id = str(uuid.uuid4()), str(uuid.uuid4())
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=parent_id), job=parent_run.Job(namespace="airflow", name=f"dag_{tag}")
    )

    def version(v: str) -> dict[str, Any]:
        return {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=v)}

    for state in (RunState.START, RunState.COMPLETE):
        client.emit(
            RunEvent(
                eventType=state,
                eventTime="2026-03-01T02:00:00.000Z",
                run=Run(runId=run_id, facets={"parent": parent}),
                job=Job(namespace="airflow", name=f"dag_{tag}.task"),
                inputs=[InputDataset(namespace="warehouse", name=f"raw_{tag}", facets=version("7"))],
                outputs=[OutputDataset(namespace="warehouse", name=f"clean_{tag}", facets=version("8"))],
            )
        )
    [out] = http.get(f"/api/v1/datasets/warehouse%2Fclean_{tag}/versions").json()["versions"]
    assert out["digest"] == "8"
    nodes = _nodes(http.get(f"/api/v1/lineage/dataset_version/{out['dataset_version_id']}").json())
    assert nodes[("run", uuid.UUID(parent_id).hex)] == 2
    assert nodes[("job", f"airflow/dag_{tag}")] == 3
    [raw] = http.get(f"/api/v1/datasets/warehouse%2Fraw_{tag}/versions").json()["versions"]
    assert nodes[("dataset_version", raw["dataset_version_id"])] == 2


def test_validated_dataframe_upload(http: httpx.Client) -> None:
    name = f"patients-{uuid.uuid4().hex[:8]}"
    suite = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}]
    assert http.put(f"/api/v1/datasets/{name}/suites/basic", json={"expectations": suite}).status_code == 200
    bad = pa.table({"age": pa.array([1, None], pa.int64())})
    r = http.post(
        f"/api/v1/datasets/{name}/dataframe",
        params={"validate": "true"},
        content=_arrow(bad),
        headers={"content-type": ARROW},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "data_quality"
    assert r.json()["error"]["details"]["failed"][0]["type"] == "expect_column_values_to_not_be_null"
    assert http.get(f"/api/v1/datasets/{name}/versions").status_code == 404
    good = pa.table({"age": [1, 2]})
    r = http.post(
        f"/api/v1/datasets/{name}/dataframe",
        params={"validate": "true"},
        content=_arrow(good),
        headers={"content-type": ARROW},
    )
    assert r.status_code == 201, r.text
    history = http.get(f"/api/v1/dataset-versions/{r.json()['dataset_version_id']}/validations").json()
    assert [v["success"] for v in history["validations"]] == [True]
