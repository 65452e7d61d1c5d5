"""MLflow 3's evaluation datasets through the stock client (``mlflow.genai.datasets``) against a
running ``lakeops serve``: create, merge records (same inputs merge), read back, tags, experiments,
search, delete records and datasets."""

from __future__ import annotations

import json
import uuid

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.genai import datasets

pytestmark = pytest.mark.api


@pytest.fixture
def client(server, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


def test_evaluation_datasets(client: MlflowClient, server) -> None:  # type: ignore[no-untyped-def]
    exp_id = client.create_experiment(f"eval-{uuid.uuid4().hex[:8]}")
    other = client.create_experiment(f"eval-other-{uuid.uuid4().hex[:8]}")
    name = f"qa-{uuid.uuid4().hex[:6]}"
    ds = datasets.create_dataset(name=name, experiment_id=[exp_id], tags={"team": "search"})
    assert ds.name == name and ds.tags["team"] == "search" and ds.experiment_ids == [exp_id]

    ds.merge_records(
        [
            {"inputs": {"question": "What is MLflow?"}, "expectations": {"answer": "A platform"}},
            {"inputs": {"question": "What is Iceberg?"}, "expectations": {"answer": "A table format"}},
        ]
    )
    # the same inputs again: merged into the stored record, not added
    ds.merge_records([{"inputs": {"question": "What is MLflow?"}, "expectations": {"source": "docs"}}])
    got = datasets.get_dataset(dataset_id=ds.dataset_id)
    frame = got.to_df()
    assert len(frame) == 2
    by_question = {row["inputs"]["question"]: row for _i, row in frame.iterrows()}
    assert by_question["What is MLflow?"]["expectations"] == {"answer": "A platform", "source": "docs"}
    stored = httpx.get(f"{server.url}/api/3.0/mlflow/datasets/{ds.dataset_id}/records").json()
    record_id = next(
        r["dataset_record_id"] for r in json.loads(stored["records"]) if r["inputs"]["question"] == "What is MLflow?"
    )

    datasets.set_dataset_tags(dataset_id=ds.dataset_id, tags={"stage": "draft"})
    datasets.delete_dataset_tag(dataset_id=ds.dataset_id, key="team")
    tags = datasets.get_dataset(dataset_id=ds.dataset_id).tags
    assert tags["stage"] == "draft" and "team" not in tags
    datasets.add_dataset_to_experiments(dataset_id=ds.dataset_id, experiment_ids=[other])
    assert sorted(datasets.get_dataset(dataset_id=ds.dataset_id).experiment_ids) == sorted([exp_id, other])
    assert [d.dataset_id for d in datasets.search_datasets(experiment_ids=[other])] == [ds.dataset_id]
    assert [d.name for d in datasets.search_datasets(filter_string=f"name = '{name}'")] == [name]

    assert got.delete_records([record_id]) == 1
    assert len(datasets.get_dataset(dataset_id=ds.dataset_id).to_df()) == 1

    datasets.delete_dataset(dataset_id=ds.dataset_id)
    with pytest.raises(MlflowException, match="not found"):
        datasets.get_dataset(dataset_id=ds.dataset_id)
    bad = httpx.post(f"{server.url}/api/3.0/mlflow/datasets/create", json={"name": "x", "experiment_ids": ["nope"]})
    assert bad.status_code == 404
