"""Datasets, data quality, lineage and the model registry through the client, embedded and over HTTP."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from lakeops.client import Client
from lakeops.client.transport import artifact_path
from lakeops.errors import DataQualityError, InvalidArgumentError, NotFoundError

SUITE = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0, "max_value": 120}},
]
GOOD = pl.DataFrame({"age": [31, 45, 27], "plan": ["pro", "free", "pro"]})
BAD = pl.DataFrame({"age": [31, None, 250], "plan": ["pro", "free", "pro"]})


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_log_dataset_frames_and_files(client: Client, experiment: str, tmp_path: Path) -> None:
    name = _name("customers")
    with client.start_run(experiment, "prep") as run:
        first = run.log_dataset(GOOD, name=name)
        again = run.log_dataset(GOOD.to_pandas(), name=name)  # same content, same version
        scored = run.log_dataset(GOOD.with_columns(score=pl.lit(0.5)), name=f"{name}-scored", direction="output")
        csv = tmp_path / "raw.csv"
        csv.write_text("age,plan\n31,pro\n45,free\n")
        from_file = run.log_dataset(csv, name=f"{name}-raw")
        folder = tmp_path / "shards"
        (folder / "part").mkdir(parents=True)
        (folder / "a.csv").write_text("age\n1\n")
        (folder / "part" / "b.csv").write_text("age\n2\n")
        from_folder = run.log_dataset(folder, name=f"{name}-shards")

    assert first.id == again.id
    assert first.name == name and first.row_count == 3 and first.source_type == "dataframe"
    assert [c["name"] for c in first.schema] == ["age", "plan"]
    assert "Dataset " + name in first._repr_html_()
    assert from_file.source_type == "file" and from_file.row_count == 2
    assert from_file.source is not None and from_file.source.endswith(f"{run.run_id}/artifacts/datasets/raw.csv")
    assert from_folder.source_type == "folder" and from_folder.profile["file_count"] == 2
    assert client.read_artifact(artifact_path(run.artifact_uri, "datasets/raw.csv")) == csv.read_bytes()
    assert client.read_artifact(artifact_path(run.artifact_uri, "datasets/shards/part/b.csv")) == b"age\n2\n"

    versions = client.dataset_versions(name)
    assert versions["dataset_version_id"].to_list() == [first.id]
    assert versions["row_count"].to_list() == [3]
    assert client.dataset_version(first.id).digest == first.digest

    upstream = client.lineage("run", run.run_id, direction="upstream", depth=1)
    assert sorted(upstream.ids("dataset_version")) == sorted([first.id, from_file.id, from_folder.id])
    downstream = client.lineage("run", run.run_id, direction="downstream", depth=1)
    assert downstream.ids("dataset_version") == [scored.id]
    assert upstream.nodes_frame().filter(pl.col("kind") == "run")["distance"].to_list() == [0]


def test_bad_dataset_input_is_refused(client: Client, experiment: str, tmp_path: Path) -> None:
    with client.start_run(experiment) as run:
        with pytest.raises(InvalidArgumentError, match="Cannot log a int as a dataset"):
            run.log_dataset(42, name="x")
        with pytest.raises(InvalidArgumentError, match="Invalid direction 'sideways'"):
            run.log_dataset(GOOD, name="x", direction="sideways")
        with pytest.raises(InvalidArgumentError, match="No such file or folder"):
            run.log_dataset(tmp_path / "missing.csv", name="x")
        with pytest.raises(InvalidArgumentError, match="validate=True checks a DataFrame"):
            run.log_dataset(tmp_path, name="x", validate=True)
        with pytest.raises(InvalidArgumentError, match="Invalid dataset name"):
            run.log_dataset(GOOD, name="  ")
        (tmp_path / "data.csv").write_text("a\n1\n")
        with pytest.raises(InvalidArgumentError, match="Invalid dataset name"):
            run.log_dataset(tmp_path / "data.csv", name="bad\nname")
    with pytest.raises(NotFoundError, match="No artifact"):  # the refused file was not uploaded
        client.read_artifact(artifact_path(run.artifact_uri, "datasets/data.csv"))
    with pytest.raises(InvalidArgumentError, match="Log a local file as a dataset of a run"):
        client.log_dataset(tmp_path, name="x")
    with pytest.raises(NotFoundError, match="No dataset version"):
        client.dataset_version("0" * 32)
    with pytest.raises(NotFoundError, match="No dataset named"):
        client.dataset_versions(_name("never-logged"))
    with pytest.raises(InvalidArgumentError, match="Invalid node kind 'table'"):
        client.lineage("table", "x")
    with pytest.raises(NotFoundError, match="not found"):
        client.quality_gate("f" * 32)


def test_suites_validation_and_the_alias_gate(client: Client, experiment: str, tmp_path: Path) -> None:
    dataset, model = _name("customers"), _name("churn")
    client.attach_suite(dataset, "basic", SUITE)
    (tmp_path / "model.txt").write_text("weights")

    # Refused at the door: a failing DataFrame with validate=True stores nothing.
    with (
        client.start_run(experiment, "strict") as strict,
        pytest.raises(DataQualityError, match="failed 2 expectation"),
    ):
        strict.log_dataset(BAD, name=dataset, validate=True)
    with pytest.raises(NotFoundError, match="No dataset named"):
        client.dataset_versions(dataset)

    with client.start_run(experiment, "on-bad-data") as bad_run:
        bad = bad_run.log_dataset(BAD, name=dataset)
        bad_run.log_artifact(tmp_path / "model.txt")
    with client.start_run(experiment, "on-good-data") as good_run:
        good = good_run.log_dataset(GOOD, name=dataset, validate=True)  # validated on the way in
        good_run.log_artifact(tmp_path / "model.txt")

    unvalidated = client.quality_gate(bad_run)
    assert unvalidated["allowed"] is False
    assert unvalidated["training_datasets"] == [bad.id]
    assert "was never validated against suite 'basic'" in unvalidated["reasons"][0]

    report = client.validate(bad)
    assert report.select("suite_name", "success", "evaluated").rows() == [("basic", False, 2)]
    assert report["failed"].item() == (
        "expect_column_values_to_not_be_null(age), expect_column_values_to_be_between(age)"
    )
    assert client.validations(good)["success"].to_list() == [True]
    assert client.validations(bad.id)["validation_id"].to_list() == report["validation_id"].to_list()

    v1 = client.register_model(bad_run, model, artifact_path="model.txt", alias="champion")  # unprotected
    assert (v1.version, v1.aliases, v1.run_id) == (1, ["champion"], bad_run.run_id)
    with pytest.raises(DataQualityError, match="failed its latest validation against suite 'basic'") as refused:
        client.set_alias(model, "production", v1.version)
    assert refused.value.details["reasons"] == client.quality_gate(bad_run.run_id)["reasons"]
    with pytest.raises(NotFoundError, match="alias production not found"):
        client.model_version(model, alias="production")

    v2 = client.register_model(good_run, model, artifact_path="model.txt", alias="production")
    assert v2.version == 2 and v2.aliases == ["production"]
    assert client.model_version(model, alias="production").version == 2
    assert client.model_version(model, alias="champion").run_id == bad_run.run_id
    card = client.model_version(model, 2)._repr_html_()
    assert f"Model {model} v2" in card and "production" in card and good_run.run_id in card

    forced = client.set_alias(model, "production", 1, force=True, reason="hotfix rollback")
    assert forced.aliases == ["champion", "production"]
    with pytest.raises(InvalidArgumentError, match="needs a reason"):
        client.set_alias(model, "production", 1, force=True)
    with pytest.raises(InvalidArgumentError, match="not both"):
        client.model_version(model, 1, alias="production")
    with pytest.raises(NotFoundError, match="not found"):
        client.model_version(_name("no-such-model"), 1)


def test_lineage_from_a_deployment_to_the_training_data(client: Client, experiment: str, tmp_path: Path) -> None:
    dataset, model = _name("wine"), _name("wine-model")
    frame = pd.DataFrame({"alcohol": [12.1, 13.4], "quality": [5, 7]})
    (tmp_path / "model.txt").write_text("weights")
    with client.start_run(experiment, "train") as run:
        train = run.log_dataset(frame, name=dataset)
        run.log_artifact(tmp_path / "model.txt")
    version = client.register_model(run.run_id, model, artifact_path="model.txt")
    deployment = client.record_deployment(model, version.version, "prod-eu", application_version="2.4.1")

    graph = client.lineage("deployment", deployment["deployment_id"], direction="upstream", depth=5)
    assert graph.ids("model_version") == [f"{model}/1"]
    assert graph.ids("run") == [run.run_id]
    assert graph.ids("dataset_version") == [train.id]
    relations = {(e["source"]["kind"], e["relation"], e["target"]["kind"]) for e in graph.edges}
    assert relations == {
        ("dataset_version", "input", "run"),
        ("run", "produced", "model_version"),
        ("model_version", "deployed", "deployment"),
    }
    html = graph._repr_html_()
    assert "Lineage of deployment" in html and train.id in html and "deployed" in html
    nodes = graph.nodes_frame()
    assert nodes.select("kind", "distance").rows() == [
        ("deployment", 0),
        ("model_version", 1),
        ("run", 2),
        ("dataset_version", 3),
    ]
