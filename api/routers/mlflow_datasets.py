"""MLflow 3's evaluation dataset routes (``/api/3.0/mlflow/datasets/...``), as ``mlflow.genai.datasets``
calls them. Tags and records travel as JSON text inside the JSON body, as in MLflow's protos.
With authentication on, a dataset is read with READ and changed with EDIT on each of its experiments.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import EvaluationDatasetsDep
from api.encoding import JSONBody, RawJSONRoute
from api.permissions import require_level
from lakeops.errors import InvalidArgumentError
from lakeops.services.evaluation_datasets import EvaluationDataset, EvaluationDatasetService

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateDataset(_Req):
    name: str
    experiment_ids: list[str] = Field(default_factory=list)
    tags: str | None = None
    created_by: str | None = None


class SearchDatasets(_Req):
    experiment_ids: list[str] = Field(default_factory=list)
    filter_string: str | None = None
    max_results: int = 1000
    order_by: list[str] = Field(default_factory=list)
    page_token: str | None = None


class UpsertRecords(_Req):
    records: str
    updated_by: str | None = None


class DeleteRecords(_Req):
    dataset_record_ids: list[str] = Field(default_factory=list)


class SetTags(_Req):
    tags: str


class Experiments(_Req):
    experiment_ids: list[str] = Field(default_factory=list)


def dataset_json(d: EvaluationDataset) -> dict[str, Any]:
    """A dataset in MLflow's JSON shape (tags as JSON text)."""
    out: dict[str, Any] = {
        "dataset_id": d.dataset_id,
        "name": d.name,
        "tags": json.dumps(d.tags),
        "digest": d.digest,
        "created_time": d.created_time,
        "last_update_time": d.last_update_time,
        "experiment_ids": d.experiment_ids,
    }
    for key in ("schema", "profile", "created_by", "last_updated_by"):
        value = getattr(d, key)
        if value is not None:
            out[key] = value
    return out


def _json_object(text: str | None, name: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"Invalid {name}: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"Invalid {name}: expected a JSON object")
    return value


def _allowed(request: Request, datasets: EvaluationDatasetService, dataset_id: str, level: str) -> EvaluationDataset:
    dataset = datasets.get(dataset_id)
    for experiment_id in dataset.experiment_ids:
        require_level(request, "experiment", experiment_id, level)
    return dataset


@router.post("/datasets/create")
def create_dataset(body: CreateDataset, request: Request, datasets: EvaluationDatasetsDep) -> dict[str, Any]:
    for experiment_id in body.experiment_ids:
        require_level(request, "experiment", experiment_id, "EDIT")
    made = datasets.create(
        body.name, experiment_ids=body.experiment_ids, tags=_json_object(body.tags, "tags"), created_by=body.created_by
    )
    return {"dataset": dataset_json(made)}


@router.post("/datasets/search")
def search_datasets(body: SearchDatasets, request: Request, datasets: EvaluationDatasetsDep) -> dict[str, Any]:
    for experiment_id in body.experiment_ids:
        require_level(request, "experiment", experiment_id, "READ")
    found, token = datasets.search(
        experiment_ids=body.experiment_ids,
        filter_string=body.filter_string,
        max_results=body.max_results,
        order_by=body.order_by,
        page_token=body.page_token,
    )
    out: dict[str, Any] = {"datasets": [dataset_json(d) for d in found]}
    if token:
        out["next_page_token"] = token
    return out


@router.get("/datasets/{dataset_id}")
def get_dataset(dataset_id: str, request: Request, datasets: EvaluationDatasetsDep) -> dict[str, Any]:
    return {"dataset": dataset_json(_allowed(request, datasets, dataset_id, "READ"))}


@router.delete("/datasets/{dataset_id}")
def delete_dataset(dataset_id: str, request: Request, datasets: EvaluationDatasetsDep) -> dict[str, Any]:
    _allowed(request, datasets, dataset_id, "EDIT")
    datasets.delete(dataset_id)
    return {}


@router.post("/datasets/{dataset_id}/records")
def upsert_records(
    dataset_id: str, body: UpsertRecords, request: Request, datasets: EvaluationDatasetsDep
) -> dict[str, Any]:
    _allowed(request, datasets, dataset_id, "EDIT")
    try:
        records = json.loads(body.records)
    except ValueError as exc:
        raise InvalidArgumentError(f"Invalid records: not JSON ({exc})") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidArgumentError("Invalid records: expected a JSON list of objects")
    inserted, updated = datasets.upsert_records(dataset_id, records, updated_by=body.updated_by)
    return {"inserted_count": inserted, "updated_count": updated}


@router.get("/datasets/{dataset_id}/records")
def get_records(
    dataset_id: str,
    request: Request,
    datasets: EvaluationDatasetsDep,
    max_results: int = 1000,
    page_token: str | None = None,
) -> dict[str, Any]:
    _allowed(request, datasets, dataset_id, "READ")
    records, token = datasets.records(dataset_id, max_results=max_results, page_token=page_token)
    out: dict[str, Any] = {"records": json.dumps([r.to_dict() for r in records])}
    if token:
        out["next_page_token"] = token
    return out


@router.delete("/datasets/{dataset_id}/records")
def delete_records(
    dataset_id: str, body: DeleteRecords, request: Request, datasets: EvaluationDatasetsDep
) -> dict[str, Any]:
    _allowed(request, datasets, dataset_id, "EDIT")
    return {"deleted_count": datasets.delete_records(dataset_id, body.dataset_record_ids)}


@router.patch("/datasets/{dataset_id}/tags")
def set_tags(dataset_id: str, body: SetTags, request: Request, datasets: EvaluationDatasetsDep) -> dict[str, Any]:
    _allowed(request, datasets, dataset_id, "EDIT")
    datasets.set_tags(dataset_id, _json_object(body.tags, "tags"))
    return {}


@router.delete("/datasets/{dataset_id}/tags/{key:path}")
def delete_tag(dataset_id: str, key: str, request: Request, datasets: EvaluationDatasetsDep) -> dict[str, Any]:
    _allowed(request, datasets, dataset_id, "EDIT")
    datasets.delete_tag(dataset_id, key)
    return {}


@router.get("/datasets/{dataset_id}/experiment-ids")
def get_experiment_ids(dataset_id: str, request: Request, datasets: EvaluationDatasetsDep) -> dict[str, Any]:
    return {"experiment_ids": _allowed(request, datasets, dataset_id, "READ").experiment_ids}


@router.post("/datasets/{dataset_id}/add-experiments")
def add_experiments(
    dataset_id: str, body: Experiments, request: Request, datasets: EvaluationDatasetsDep
) -> dict[str, Any]:
    _allowed(request, datasets, dataset_id, "EDIT")
    for experiment_id in body.experiment_ids:
        require_level(request, "experiment", experiment_id, "EDIT")
    return {"dataset": dataset_json(datasets.add_experiments(dataset_id, body.experiment_ids))}


@router.post("/datasets/{dataset_id}/remove-experiments")
def remove_experiments(
    dataset_id: str, body: Experiments, request: Request, datasets: EvaluationDatasetsDep
) -> dict[str, Any]:
    _allowed(request, datasets, dataset_id, "EDIT")
    return {"dataset": dataset_json(datasets.remove_experiments(dataset_id, body.experiment_ids))}
