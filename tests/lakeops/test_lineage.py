"""Datasets as versioned objects, lineage edges and queries, OpenLineage in and out — on file, s3 and rest."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
import polars as pl
import pytest
from lakes import reopen
from openlineage_events import ol_event

from catalog.tables import LINEAGE_EDGES, OPENLINEAGE_EVENTS
from lakeops.datasets import DatasetService
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.lineage import LineageService
from lakeops.lineage.edges import LineageEdge, NodeKind, Relation, lineage_edge_rows
from lakeops.services.artifacts import ArtifactService
from lakeops.services.openlineage import OpenLineageService, validate_run_event
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService


class Clock:
    """A settable clock in microseconds."""

    def __init__(self, start: int = 1_760_000_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def services(store: IcebergStore, tracking: TrackingService) -> dict[str, Any]:
    objects = store.settings.storage.open_objects(store.settings.home)
    artifacts = ArtifactService(store, objects, actor="tester")
    clock = Clock()
    return {
        "artifacts": artifacts,
        "datasets": DatasetService(store, artifacts),
        "lineage": LineageService(store, clock_us=clock),
        "openlineage": OpenLineageService(store, actor="tester", clock_us=clock),
        "clock": clock,
    }


def _run(tracking: TrackingService, **kwargs: Any) -> str:
    return tracking.create_run(**kwargs).info.run_id


def _ids(result: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(n["kind"], n["id"]): n["distance"] for n in result["nodes"]}


# -- datasets --------------------------------------------------------------------------------------


def test_dataframe_same_content_is_one_version(store: IcebergStore, tracking: TrackingService, services: dict) -> None:
    datasets: DatasetService = services["datasets"]
    run_id = _run(tracking)
    frame = pl.DataFrame({"x": [1, 2, 3], "label": ["a", "b", "a"]})
    first = datasets.log_dataframe("train", frame, run_id=run_id)
    again = datasets.log_dataframe("train", frame.clone(), run_id=run_id)
    assert again["dataset_version_id"] == first["dataset_version_id"]
    assert first["digest_kind"] == "sha256" and len(first["digest"]) == 64
    assert first["row_count"] == 3
    assert [c["name"] for c in first["schema"]] == ["x", "label"]
    assert first["profile"]["columns"]["x"] == {"null_count": 0, "min": 1, "max": 3, "mean": 2.0}
    assert first["profile"]["columns"]["label"]["distinct_count"] == 2
    other = datasets.log_dataframe("train", pd.DataFrame({"x": [1, 2, 4], "label": ["a", "b", "a"]}))
    assert other["dataset_version_id"] != first["dataset_version_id"]
    assert [v["dataset_version_id"] for v in datasets.list_versions("train")] == [
        first["dataset_version_id"],
        other["dataset_version_id"],
    ]
    # the stored Parquet reads back as the same table
    assert datasets.read_table(first["dataset_version_id"]).to_pydict() == frame.to_arrow().to_pydict()
    # linked once as the run's input, visible to MLflow clients in run.inputs
    run = tracking.get_run(run_id)
    dataset_inputs = [i for i in run.inputs if i["kind"] == "dataset"]
    assert [(i["dataset_name"], i["dataset_digest"]) for i in dataset_inputs] == [("train", first["digest"])]
    upstream = services["lineage"].query("run", run_id, depth=1)
    assert _ids(upstream) == {("run", run_id): 0, ("dataset_version", first["dataset_version_id"]): 1}
    # it all survives a restart
    fresh, _tracking = reopen(store)
    try:
        assert fresh.state.lineage.versions_by_name["train"] == [
            first["dataset_version_id"],
            other["dataset_version_id"],
        ]
        assert _ids(LineageService(fresh).query("run", run_id, depth=1)) == _ids(upstream)
    finally:
        fresh.close()


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_versions_committed_apart_list_oldest_first_after_a_restart(store: IcebergStore, services: dict) -> None:
    datasets: DatasetService = services["datasets"]
    ids = []
    for i in range(3):  # one commit each: a scan lists the newest commit's file first
        ids.append(datasets.log_dataframe("apart", pl.DataFrame({"x": [i]}))["dataset_version_id"])
        store.commit()
    fresh, _tracking = reopen(store)
    try:
        assert [
            v["dataset_version_id"] for v in DatasetService(fresh, services["artifacts"]).list_versions("apart")
        ] == ids
    finally:
        fresh.close()


def test_artifact_file_and_folder_versions(tracking: TrackingService, services: dict) -> None:
    artifacts: ArtifactService = services["artifacts"]
    datasets: DatasetService = services["datasets"]
    artifacts.upload_bytes("raw/iris/part-1.csv", b"sepal,species\n5.1,setosa\n4.9,setosa\n")
    artifacts.upload_bytes("raw/iris/part-2.csv", b"sepal,species\n6.3,virginica\n")
    one = datasets.log_artifact("iris-part-1", "raw/iris/part-1.csv")
    assert one["source_type"] == "file" and one["row_count"] == 2
    assert [c["name"] for c in one["schema"]] == ["sepal", "species"]
    folder = datasets.log_artifact("iris", "raw/iris")
    assert folder["source_type"] == "folder" and folder["profile"]["file_count"] == 2
    assert datasets.log_artifact("iris", "raw/iris/")["dataset_version_id"] == folder["dataset_version_id"]
    artifacts.upload_bytes("raw/iris/part-2.csv", b"sepal,species\n6.3,virginica\n7.0,versicolor\n")
    changed = datasets.log_artifact("iris", "raw/iris")
    assert changed["digest"] != folder["digest"]
    assert len(datasets.list_versions("iris")) == 2
    with pytest.raises(NotFoundError, match="No artifact file or folder"):
        datasets.log_artifact("iris", "raw/nothing-here")


def test_iceberg_table_at_snapshot(store: IcebergStore, tracking: TrackingService, services: dict) -> None:
    datasets: DatasetService = services["datasets"]
    run_id = _run(tracking)
    tracking.log_batch(run_id, params=[("lr", "0.1"), ("depth", "3")])
    store.commit()
    identifier = f"{store.settings.namespace}.params"
    snapshot = store.table("params").metadata.current_snapshot()
    assert snapshot is not None
    version = datasets.log_iceberg_table("params-table", identifier, run_id=run_id)
    assert version["digest"] == f"snapshot:{snapshot.snapshot_id}"
    assert version["digest_kind"] == "iceberg_snapshot" and version["row_count"] == 2
    assert "run_id" in [c["name"] for c in version["schema"]]
    assert datasets.log_iceberg_table("params-table", identifier)["dataset_version_id"] == version["dataset_version_id"]
    assert datasets.read_table(version["dataset_version_id"]).num_rows == 2
    with pytest.raises(NotFoundError, match="No Iceberg table"):
        datasets.log_iceberg_table("x", f"{store.settings.namespace}.no_such_table")
    with pytest.raises(NotFoundError, match="no snapshot"):
        datasets.log_iceberg_table("x", identifier, snapshot_id=12345)


def test_mlflow_log_inputs_lands_in_dataset_tables(tracking: TrackingService, services: dict) -> None:
    run_id = _run(tracking)
    dataset = {
        "name": "wine",
        "digest": "8ab2f1c0",
        "source_type": "local",
        "source": '{"uri": "/data/wine.csv"}',
        "schema": '{"mlflow_colspec": [{"type": "double", "name": "alcohol"}]}',
        "profile": '{"num_rows": 178, "num_elements": 2314}',
        "tags": {"mlflow.data.context": "training"},
    }
    tracking.log_inputs(run_id, datasets=[dataset])
    tracking.log_inputs(run_id, datasets=[dataset])  # the same input twice is one link and one version
    versions = services["datasets"].list_versions("wine")
    assert len(versions) == 1
    assert versions[0]["digest"] == "8ab2f1c0" and versions[0]["digest_kind"] == "mlflow"
    assert versions[0]["row_count"] == 178
    up = services["lineage"].query("run", run_id, depth=3)
    assert [e["relation"] for e in up["edges"]] == ["input"]
    assert up["edges"][0]["origin"] == "mlflow"


def test_bad_dataset_input(tracking: TrackingService, services: dict) -> None:
    datasets: DatasetService = services["datasets"]
    with pytest.raises(InvalidArgumentError, match="Invalid dataset name"):
        datasets.log_dataframe(" ", pl.DataFrame({"x": [1]}))
    with pytest.raises(InvalidArgumentError, match="polars or pandas"):
        datasets.log_dataframe("d", [1, 2, 3])
    with pytest.raises(NotFoundError, match="Run with id=nope not found"):
        datasets.log_dataframe("d", pl.DataFrame({"x": [1]}), run_id="nope")
    assert "d" not in datasets.store.state.lineage.versions_by_name  # a refused write stores nothing
    with pytest.raises(InvalidArgumentError, match="input or output"):
        datasets.log_dataframe("d", pl.DataFrame({"x": [1]}), direction="sideways")


# -- lineage queries -------------------------------------------------------------------------------


@pytest.fixture
def chain(tracking: TrackingService, services: dict) -> dict[str, Any]:
    """dataset v1 -> run A -> dataset v2 -> run B -> model version -> deployment, one hop per clock tick."""
    datasets: DatasetService = services["datasets"]
    lineage: LineageService = services["lineage"]
    clock: Clock = services["clock"]
    run_a, run_b = _run(tracking), _run(tracking)
    v1 = datasets.log_dataframe("raw", pl.DataFrame({"x": [1, 2]}))["dataset_version_id"]
    v2 = datasets.log_dataframe("features", pl.DataFrame({"x": [2, 4]}))["dataset_version_id"]
    steps = [
        LineageEdge("dataset_version", v1, "run", run_a, Relation.INPUT),
        LineageEdge("run", run_a, "dataset_version", v2, Relation.OUTPUT),
        LineageEdge("dataset_version", v2, "run", run_b, Relation.INPUT),
        LineageEdge("run", run_b, "model_version", "churn/1", Relation.PRODUCED),
        LineageEdge("model_version", "churn/1", "deployment", "prod-eu", Relation.DEPLOYED),
    ]
    times = []
    for edge in steps:
        clock.now += 60_000_000
        times.append(clock.now)
        assert lineage.add_edges([edge], actor="tester") == 1
    return {"v1": v1, "v2": v2, "run_a": run_a, "run_b": run_b, "times": times}


def test_n_hop_upstream_and_downstream(services: dict, chain: dict) -> None:
    lineage: LineageService = services["lineage"]
    up = lineage.query("deployment", "prod-eu", direction="upstream", depth=5)
    assert _ids(up) == {
        ("deployment", "prod-eu"): 0,
        ("model_version", "churn/1"): 1,
        ("run", chain["run_b"]): 2,
        ("dataset_version", chain["v2"]): 3,
        ("run", chain["run_a"]): 4,
        ("dataset_version", chain["v1"]): 5,
    }
    assert len(up["edges"]) == 5
    assert up["edges"][0] == {
        "source": {"kind": "model_version", "id": "churn/1"},
        "target": {"kind": "deployment", "id": "prod-eu"},
        "relation": "deployed",
        "origin": "lakeops",
        "created_at": up["edges"][0]["created_at"],
    }
    assert set(_ids(lineage.query("deployment", "prod-eu", depth=2))) == {
        ("deployment", "prod-eu"),
        ("model_version", "churn/1"),
        ("run", chain["run_b"]),
    }
    down = lineage.query("dataset_version", chain["v1"], direction="downstream", depth=5)
    assert _ids(down)[("deployment", "prod-eu")] == 5
    assert lineage.add_edges([LineageEdge("run", chain["run_b"], "model_version", "churn/1", "produced")]) == 0


def test_as_of_time_travel(services: dict, chain: dict) -> None:
    lineage: LineageService = services["lineage"]
    times = chain["times"]
    # before the model version was deployed, the deployment had no lineage; before run B, v2 had no consumer
    assert _ids(lineage.query("deployment", "prod-eu", as_of=(times[4] - 1) // 1000)) == {("deployment", "prod-eu"): 0}
    down = lineage.query("dataset_version", chain["v1"], direction="downstream", depth=5, as_of=times[1] // 1000)
    assert set(_ids(down)) == {
        ("dataset_version", chain["v1"]),
        ("run", chain["run_a"]),
        ("dataset_version", chain["v2"]),
    }
    iso = lineage.query("dataset_version", chain["v1"], direction="downstream", as_of=down["as_of"])
    assert _ids(iso) == _ids(down)
    assert len(lineage.query("dataset_version", chain["v1"], direction="downstream")["nodes"]) == 6


def test_lineage_query_errors(tracking: TrackingService, services: dict) -> None:
    lineage: LineageService = services["lineage"]
    run_id = _run(tracking)
    assert _ids(lineage.query("run", run_id)) == {("run", run_id): 0}
    with pytest.raises(NotFoundError, match="No run 'nope'"):
        lineage.query("run", "nope")
    with pytest.raises(InvalidArgumentError, match="Invalid node kind"):
        lineage.query("table", run_id)
    with pytest.raises(InvalidArgumentError, match="Invalid depth"):
        lineage.query("run", run_id, depth=0)
    with pytest.raises(InvalidArgumentError, match="Invalid direction"):
        lineage.query("run", run_id, direction="sideways")
    with pytest.raises(InvalidArgumentError, match="Invalid as_of"):
        lineage.query("run", run_id, as_of="last tuesday")


def test_edges_commit_with_other_rows_in_one_write(
    store: IcebergStore, tracking: TrackingService, services: dict
) -> None:
    """A service (the registry, say) adds its edges in the same atomic write as its own change rows."""
    run_id = _run(tracking)

    def build(_state: Any) -> dict[str, Any]:
        edge = LineageEdge(NodeKind.RUN, run_id, NodeKind.MODEL_VERSION, "m/1", Relation.PRODUCED, "registry")
        return {LINEAGE_EDGES.name: lineage_edge_rows([edge], actor="registry")}

    store.write(build)
    store.commit()
    assert _ids(services["lineage"].query("model_version", "m/1", depth=1)) == {
        ("model_version", "m/1"): 0,
        ("run", run_id): 1,
    }
    assert store.table(LINEAGE_EDGES.name).scan().to_arrow().num_rows == 1


# -- OpenLineage -----------------------------------------------------------------------------------


def test_openlineage_events_become_lineage(services: dict) -> None:
    ol: OpenLineageService = services["openlineage"]
    lineage: LineageService = services["lineage"]
    run_id, parent_id = str(uuid.uuid4()), str(uuid.uuid4())
    src = [("postgres://db:5432", "shop.orders", "v42")]
    out = [("s3://lake", "features/orders", "snap-7")]
    ol.ingest(ol_event("START", run_id, parent_run_id=parent_id, inputs=src))
    ol.ingest(ol_event("COMPLETE", run_id, parent_run_id=parent_id, inputs=src, outputs=out))
    versions = services["datasets"].list_versions("s3://lake/features/orders")
    assert [(v["digest"], v["digest_kind"]) for v in versions] == [("snap-7", "openlineage")]
    assert versions[0]["schema"] == [{"name": "id", "type": "BIGINT"}]
    up = lineage.query("dataset_version", versions[0]["dataset_version_id"], depth=5)
    node_ids = _ids(up)
    run_node = uuid.UUID(run_id).hex
    orders = services["datasets"].list_versions("postgres://db:5432/shop.orders")[0]
    assert node_ids[("run", run_node)] == 1
    assert node_ids[("dataset_version", orders["dataset_version_id"])] == 2
    assert node_ids[("run", uuid.UUID(parent_id).hex)] == 2
    assert node_ids[("job", "airflow/nightly_dag.build_features")] == 2
    assert node_ids[("job", "airflow/nightly_dag")] == 3
    assert {e["origin"] for e in up["edges"]} == {"openlineage"}
    assert ol.store.state.lineage.openlineage_runs[run_id][0] == "COMPLETE"
    ol.store.commit()
    events = ol.store.table(OPENLINEAGE_EVENTS.name).scan().to_arrow()
    assert sorted(events.column("event_type").to_pylist()) == ["COMPLETE", "START"]
    assert json.loads(events.column("payload_json")[0].as_py())["run"]["runId"] == run_id


def test_every_run_state_is_accepted(services: dict) -> None:
    run_id = str(uuid.uuid4())
    for event_type in ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"):
        assert services["openlineage"].ingest(ol_event(event_type, run_id))["event_type"] == event_type


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    event = ol_event("START", str(uuid.uuid4()), parent_run_id=str(uuid.uuid4()), outputs=[("s3://b", "t", "1")])
    change(event)
    return event


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda e: e.pop("eventTime"), "'eventTime' is a required property", id="no-event-time"),
        pytest.param(lambda e: e.update(eventType="DONE"), "'DONE' is not one of", id="bad-event-type"),
        pytest.param(lambda e: e["run"].update(runId="run-1"), "is not a 'uuid'", id="run-id-not-uuid"),
        pytest.param(lambda e: e["job"].pop("name"), "'name' is a required property", id="job-without-name"),
        pytest.param(lambda e: e.update(eventTime="yesterday"), "is not a 'date-time'", id="bad-time"),
        pytest.param(lambda e: e.update(producer="no scheme"), "is not a 'uri'", id="producer-not-uri"),
        pytest.param(
            lambda e: e["run"]["facets"]["parent"].pop("run"), "'run' is a required property", id="parent-without-run"
        ),
        pytest.param(
            lambda e: e["outputs"][0]["facets"]["version"].pop("datasetVersion"),
            "'datasetVersion' is a required property",
            id="version-facet-without-version",
        ),
        pytest.param(
            lambda e: e["outputs"][0]["facets"]["schema"].pop("_producer"),
            "'_producer' is a required property",
            id="facet-without-producer",
        ),
        pytest.param(lambda e: e.update(inputs={"namespace": "x"}), "is not of type 'array'", id="inputs-not-list"),
    ],
)
def test_malformed_openlineage_event_is_refused(services: dict, change: Callable, message: str) -> None:
    ol: OpenLineageService = services["openlineage"]
    state = ol.store.state.lineage
    before = (state.edge_count, len(state.dataset_versions), len(state.openlineage_runs), ol.store.queued_rows())
    with pytest.raises(InvalidArgumentError, match=message):
        ol.ingest(_broken(change))
    assert (
        state.edge_count,
        len(state.dataset_versions),
        len(state.openlineage_runs),
        ol.store.queued_rows(),
    ) == before


def test_lakeops_runs_emit_openlineage(tracking: TrackingService, services: dict) -> None:
    parent = _run(tracking, run_name="sweep")
    child = _run(tracking, run_name="trial", parent_run_id=parent)
    train = services["datasets"].log_dataframe("train", pl.DataFrame({"x": [1.0, 2.0]}), run_id=child)
    scored = services["datasets"].log_dataframe("scored", pl.DataFrame({"y": [0.5]}), run_id=child, direction="output")
    ol: OpenLineageService = services["openlineage"]
    assert [e["eventType"] for e in ol.run_events(child)] == ["START"]
    tracking.update_run(child, status="FINISHED", end_time=tracking.get_run(child).info.start_time + 1000)
    start, complete = ol.run_events(child)
    assert complete["eventType"] == "COMPLETE"
    for event in (start, complete):
        validate_run_event(event)
    assert uuid.UUID(complete["run"]["runId"]).hex == child
    assert uuid.UUID(complete["run"]["facets"]["parent"]["run"]["runId"]).hex == parent
    assert [(d["name"], d["facets"]["version"]["datasetVersion"]) for d in complete["inputs"]] == [
        ("train", train["digest"])
    ]
    assert [d["name"] for d in complete["outputs"]] == ["scored"]
    # fed back in (as another lakeops would), they land on the same nodes: no duplicate datasets
    edges_before = ol.store.state.lineage.edge_count
    ol.ingest(complete)
    assert len(services["datasets"].list_versions("train")) == 1
    assert (
        services["lineage"].query("dataset_version", scored["dataset_version_id"], depth=1)["nodes"][1]["id"] == child
    )
    assert ol.store.state.lineage.edge_count == edges_before + 3  # job -> run, parent job -> parent run, parent -> run
    with pytest.raises(NotFoundError, match="Run with id=nope not found"):
        ol.run_events("nope")


def test_mlflow_logged_models_join_the_graph(tracking: TrackingService, services: dict) -> None:
    train, evaluate = _run(tracking), _run(tracking)
    model = tracking.create_logged_model("0", name="clf", source_run_id=train)
    tracking.log_outputs(train, [(model.model_id, 3)])
    tracking.log_inputs(evaluate, model_ids=[model.model_id])
    up = services["lineage"].query("run", evaluate, depth=2)
    assert _ids(up) == {("run", evaluate): 0, ("logged_model", model.model_id): 1, ("run", train): 2}
    assert {e["relation"] for e in up["edges"]} == {"input", "produced"}
    assert up["nodes"][1]["name"] == "clf"
    with pytest.raises(NotFoundError, match="Logged model nope not found"):
        tracking.log_outputs(train, [("nope", 0)])
    assert ("logged_model", "nope") not in services["lineage"].store.state.lineage.upstream
