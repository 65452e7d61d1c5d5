"""MLflow's tracking REST protocol (``/api/2.0/mlflow/...``), as the stock client calls it.

Request fields follow MLflow's protos (snake_case; int64 may arrive as strings); responses
use MLflow's JSON shapes and error codes. Handlers translate and call one service method.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AuthDep, TrackingDep
from api.encoding import (
    JSONBody,
    RawJSONRoute,
    history_json,
    metric_json,
    mlflow_experiment,
    mlflow_logged_model,
    mlflow_run,
    mlflow_run_info,
)
from api.routers.workspaces import RequestWorkspace, require_create_in, require_in_workspace, scoped
from lakeops.entities import Experiment, Metric, ViewType
from lakeops.errors import InvalidArgumentError
from lakeops.services.auth import AuthService

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)

MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_TOTAL = 1000


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Req):
    key: str
    value: str | None = None


class MetricIn(_Req):
    key: str
    value: float
    timestamp: int
    step: int = 0
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None

    def model_link(self) -> tuple[str | None, str | None, str | None]:
        return (self.model_id or None, self.dataset_name, self.dataset_digest)


class CreateExperiment(_Req):
    name: str
    artifact_location: str | None = None
    tags: list[KeyValue] = Field(default_factory=list)


class ExperimentRef(_Req):
    experiment_id: str


class UpdateExperiment(ExperimentRef):
    new_name: str


class ExperimentTag(ExperimentRef):
    key: str
    value: str | None = None


class SearchExperiments(_Req):
    max_results: int = 1000
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] = Field(default_factory=list)
    view_type: str | int = "ACTIVE_ONLY"


class RunRef(_Req):
    run_id: str | None = None
    run_uuid: str | None = None

    def id(self) -> str:
        rid = self.run_id or self.run_uuid
        if not rid:
            raise InvalidArgumentError("Missing value for required parameter 'run_id'")
        return rid


class CreateRun(_Req):
    experiment_id: str = "0"
    user_id: str | None = None
    run_name: str | None = None
    start_time: int | None = None
    tags: list[KeyValue] = Field(default_factory=list)


class UpdateRun(RunRef):
    status: str | None = None
    end_time: int | None = None
    run_name: str | None = None


class LogMetric(RunRef, MetricIn):
    pass


class LogParam(RunRef):
    key: str
    value: str | None = None


class SetTag(RunRef):
    key: str
    value: str | None = None


class DeleteTag(RunRef):
    key: str


class LogBatch(RunRef):
    metrics: list[MetricIn] = Field(default_factory=list)
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


class SearchRuns(_Req):
    experiment_ids: list[str] = Field(default_factory=list)
    filter: str | None = None
    run_view_type: str | int = "ACTIVE_ONLY"
    max_results: int = 1000
    order_by: list[str] = Field(default_factory=list)
    page_token: str | None = None


_VIEW_BY_NUMBER = {1: ViewType.ACTIVE_ONLY, 2: ViewType.DELETED_ONLY, 3: ViewType.ALL}


def view_type(value: str | int) -> ViewType:
    """MLflow's ViewType, by name or proto number."""
    if isinstance(value, int) or value.isdigit():
        found = _VIEW_BY_NUMBER.get(int(value))
        if found is None:
            raise InvalidArgumentError(f"Invalid view type {value!r}")
        return found
    try:
        return ViewType(value.upper())
    except ValueError as exc:
        raise InvalidArgumentError(f"Invalid view type {value!r}; use ACTIVE_ONLY, DELETED_ONLY or ALL") from exc


def _paged(name: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    """A page in MLflow's shape: no ``next_page_token`` at all on the last page."""
    return {name: items, "next_page_token": token} if token else {name: items}


def _tags(items: list[KeyValue]) -> dict[str, str]:
    return {t.key: t.value or "" for t in items}


# -- experiments -------------------------------------------------------------------------------


@router.post("/experiments/create")
def create_experiment(
    body: CreateExperiment, request: Request, tracking: TrackingDep, auth: AuthDep, workspace: RequestWorkspace
) -> dict[str, Any]:
    require_create_in(request, auth, workspace)
    experiment_id = tracking.create_experiment(
        body.name, artifact_location=body.artifact_location, tags=_tags(body.tags)
    )
    auth.grant_creator("experiment", experiment_id, workspace=workspace)
    return {"experiment_id": experiment_id}


def _experiment(experiment: Experiment, auth: AuthService) -> dict[str, Any]:
    """MLflow's experiment JSON, with the workspace it belongs to."""
    return {**mlflow_experiment(experiment), "workspace": auth.workspace_of("experiment", experiment.experiment_id)}


@router.get("/experiments/get")
def get_experiment(tracking: TrackingDep, auth: AuthDep, experiment_id: str = Query(...)) -> dict[str, Any]:
    return {"experiment": _experiment(tracking.get_experiment(experiment_id), auth)}


@router.get("/experiments/get-by-name")
def get_experiment_by_name(
    request: Request, tracking: TrackingDep, experiment_name: str = Query(...)
) -> dict[str, Any]:
    experiment = tracking.get_experiment_by_name(experiment_name)
    require_in_workspace(request, "experiment", experiment.experiment_id)
    return {"experiment": mlflow_experiment(experiment)}


def _search_experiments(body: SearchExperiments, tracking: TrackingDep, auth: AuthService) -> dict[str, Any]:
    page = tracking.search_experiments(
        view_type=view_type(body.view_type),
        max_results=body.max_results,
        filter_string=body.filter,
        order_by=body.order_by,
        page_token=body.page_token,
    )
    return _paged("experiments", [_experiment(e, auth) for e in page.experiments], page.next_page_token)


@router.post("/experiments/search")
def search_experiments_post(
    body: SearchExperiments, request: Request, tracking: TrackingDep, auth: AuthDep
) -> dict[str, Any]:
    return scoped(request, _search_experiments(body, tracking, auth), "experiments", "experiment", "experiment_id")


@router.get("/experiments/search")
def search_experiments_get(
    request: Request,
    tracking: TrackingDep,
    auth: AuthDep,
    max_results: int = 1000,
    page_token: str | None = None,
    filter: str | None = None,
    order_by: list[str] = Query(default_factory=list),
    view_type: str = "ACTIVE_ONLY",
) -> dict[str, Any]:
    body = SearchExperiments(
        max_results=max_results, page_token=page_token, filter=filter, order_by=order_by, view_type=view_type
    )
    return scoped(request, _search_experiments(body, tracking, auth), "experiments", "experiment", "experiment_id")


@router.post("/experiments/update")
def update_experiment(body: UpdateExperiment, tracking: TrackingDep) -> dict[str, Any]:
    tracking.rename_experiment(body.experiment_id, body.new_name)
    return {}


@router.post("/experiments/delete")
def delete_experiment(body: ExperimentRef, tracking: TrackingDep) -> dict[str, Any]:
    tracking.delete_experiment(body.experiment_id)
    return {}


@router.post("/experiments/restore")
def restore_experiment(body: ExperimentRef, tracking: TrackingDep) -> dict[str, Any]:
    tracking.restore_experiment(body.experiment_id)
    return {}


@router.post("/experiments/set-experiment-tag")
def set_experiment_tag(body: ExperimentTag, tracking: TrackingDep) -> dict[str, Any]:
    tracking.set_experiment_tag(body.experiment_id, body.key, body.value or "")
    return {}


@router.post("/experiments/delete-experiment-tag")
def delete_experiment_tag(body: ExperimentTag, tracking: TrackingDep) -> dict[str, Any]:
    tracking.delete_experiment_tag(body.experiment_id, body.key)
    return {}


# -- runs ------------------------------------------------------------------------------------


@router.post("/runs/create")
def create_run(body: CreateRun, tracking: TrackingDep) -> dict[str, Any]:
    run = tracking.create_run(
        body.experiment_id or "0",
        run_name=body.run_name,
        user_id=body.user_id,
        start_time=body.start_time,
        tags=_tags(body.tags),
    )
    return {"run": mlflow_run(run)}


@router.post("/runs/update")
def update_run(body: UpdateRun, tracking: TrackingDep) -> dict[str, Any]:
    run_id = body.id()
    info = tracking.update_run(run_id, status=body.status, end_time=body.end_time, run_name=body.run_name)
    return {"run_info": mlflow_run_info(tracking.get_run(info.run_id))}


@router.post("/runs/delete")
def delete_run(body: RunRef, tracking: TrackingDep) -> dict[str, Any]:
    tracking.delete_run(body.id())
    return {}


@router.post("/runs/restore")
def restore_run(body: RunRef, tracking: TrackingDep) -> dict[str, Any]:
    tracking.restore_run(body.id())
    return {}


@router.get("/runs/get")
def get_run(tracking: TrackingDep, run_id: str | None = None, run_uuid: str | None = None) -> dict[str, Any]:
    return {"run": mlflow_run(tracking.get_run(RunRef(run_id=run_id, run_uuid=run_uuid).id()))}


@router.post("/runs/log-metric")
def log_metric(body: LogMetric, tracking: TrackingDep) -> dict[str, Any]:
    tracking.log_batch(
        body.id(), metrics=[(body.key, body.value, body.timestamp, body.step)], metric_models=[body.model_link()]
    )
    return {}


@router.post("/runs/log-parameter")
def log_param(body: LogParam, tracking: TrackingDep) -> dict[str, Any]:
    tracking.log_param(body.id(), body.key, body.value or "")
    return {}


@router.post("/runs/set-tag")
def set_tag(body: SetTag, tracking: TrackingDep) -> dict[str, Any]:
    tracking.set_tag(body.id(), body.key, body.value or "")
    return {}


@router.post("/runs/delete-tag")
def delete_tag(body: DeleteTag, tracking: TrackingDep) -> dict[str, Any]:
    tracking.delete_tag(body.id(), body.key)
    return {}


@router.post("/runs/log-batch")
def log_batch(body: LogBatch, tracking: TrackingDep) -> dict[str, Any]:
    for name, items, limit in (
        ("metrics", body.metrics, MAX_BATCH_METRICS),
        ("params", body.params, MAX_BATCH_PARAMS),
        ("tags", body.tags, MAX_BATCH_TAGS),
    ):
        if len(items) > limit:
            raise InvalidArgumentError(
                f"A batch logging request can contain at most {limit} {name}. Got {len(items)} {name}."
            )
    total = len(body.metrics) + len(body.params) + len(body.tags)
    if total > MAX_BATCH_TOTAL:
        raise InvalidArgumentError(
            f"A batch logging request can contain at most {MAX_BATCH_TOTAL} entities. Got {total}."
        )
    tracking.log_batch(
        body.id(),
        metrics=[(m.key, m.value, m.timestamp, m.step) for m in body.metrics],
        params=[(p.key, p.value or "") for p in body.params],
        tags=[(t.key, t.value or "") for t in body.tags],
        metric_models=[m.model_link() for m in body.metrics],
    )
    return {}


def _search_runs(body: SearchRuns, tracking: TrackingDep) -> dict[str, Any]:
    page = tracking.search_runs(
        body.experiment_ids,
        filter_string=body.filter,
        run_view_type=view_type(body.run_view_type),
        max_results=body.max_results,
        order_by=body.order_by,
        page_token=body.page_token,
    )
    return _paged("runs", [mlflow_run(r) for r in page.runs], page.next_page_token)


@router.post("/runs/search")
def search_runs(body: SearchRuns, tracking: TrackingDep) -> dict[str, Any]:
    return _search_runs(body, tracking)


@router.get("/metrics/get-history")
def get_metric_history(
    tracking: TrackingDep,
    metric_key: str,
    run_id: str | None = None,
    run_uuid: str | None = None,
    max_results: int | None = None,
    page_token: str | None = None,
) -> dict[str, Any]:
    rid = RunRef(run_id=run_id, run_uuid=run_uuid).id()
    page, token = tracking.metric_history_page(rid, metric_key, max_results=max_results, page_token=page_token)
    return _paged("metrics", history_json(metric_key, page), token)


@router.get("/metrics/get-history-bulk-interval")
def get_metric_history_bulk_interval(
    tracking: TrackingDep,
    metric_key: str,
    run_ids: list[str] = Query(...),
    start_step: int | None = None,
    end_step: int | None = None,
    max_results: int = 320,
) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for rid in run_ids:
        points: list[Metric] = tracking.get_metric_history(rid, metric_key).metrics
        points = [
            p
            for p in points
            if (start_step is None or p.step >= start_step) and (end_step is None or p.step <= end_step)
        ]
        if len(points) > max_results:  # evenly sampled, keeping the first and the last point, as MLflow does
            stride = (len(points) - 1) / (max_results - 1)
            points = [points[round(i * stride)] for i in range(max_results)]
        out.extend({**metric_json(p), "run_id": rid} for p in points)
    return {"metrics": out}


# -- inputs, outputs and logged models (MLflow 3) -----------------------------------------------


class DatasetIn(_Req):
    name: str
    digest: str
    source_type: str | None = None
    source: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    profile: str | None = None


class DatasetInputIn(_Req):
    tags: list[KeyValue] = Field(default_factory=list)
    dataset: DatasetIn


class ModelRef(_Req):
    model_id: str
    step: int = 0


class LogInputs(RunRef):
    datasets: list[DatasetInputIn] = Field(default_factory=list)
    models: list[ModelRef] = Field(default_factory=list)


class LogOutputs(RunRef):
    models: list[ModelRef] = Field(default_factory=list)


class CreateLoggedModel(_Req):
    experiment_id: str
    name: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


class FinalizeLoggedModel(_Req):
    status: str | int


class LoggedModelTags(_Req):
    tags: list[KeyValue] = Field(default_factory=list)


class LoggedModelParams(_Req):
    params: list[KeyValue] = Field(default_factory=list)


class SearchLoggedModels(_Req):
    experiment_ids: list[str] = Field(default_factory=list)
    filter: str | None = None
    max_results: int | None = None
    page_token: str | None = None


_STATUS_IN = {
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
    "1": "PENDING",
    "2": "READY",
    "3": "FAILED",
}


@router.post("/runs/log-inputs")
def log_inputs(body: LogInputs, tracking: TrackingDep) -> dict[str, Any]:
    datasets = [
        {
            "name": d.dataset.name,
            "digest": d.dataset.digest,
            "source_type": d.dataset.source_type,
            "source": d.dataset.source,
            "schema": d.dataset.schema_,
            "profile": d.dataset.profile,
            "tags": _tags(d.tags),
        }
        for d in body.datasets
    ]
    tracking.log_inputs(body.id(), datasets=datasets, model_ids=[m.model_id for m in body.models])
    return {}


@router.post("/runs/outputs")
def log_outputs(body: LogOutputs, tracking: TrackingDep) -> dict[str, Any]:
    tracking.log_outputs(body.id(), [(m.model_id, m.step) for m in body.models])
    return {}


@router.post("/logged-models")
def create_logged_model(body: CreateLoggedModel, tracking: TrackingDep) -> dict[str, Any]:
    model = tracking.create_logged_model(
        body.experiment_id,
        name=body.name,
        source_run_id=body.source_run_id or None,
        model_type=body.model_type,
        params={p.key: p.value or "" for p in body.params},
        tags=_tags(body.tags),
    )
    return {"model": mlflow_logged_model(model)}


@router.post("/logged-models/search")
def search_logged_models(body: SearchLoggedModels, tracking: TrackingDep) -> dict[str, Any]:
    models, token = tracking.search_logged_models(
        body.experiment_ids, filter_string=body.filter, max_results=body.max_results or 100, page_token=body.page_token
    )
    return _paged("models", [mlflow_logged_model(m) for m in models], token)


@router.get("/logged-models/{model_id}")
def get_logged_model(model_id: str, tracking: TrackingDep) -> dict[str, Any]:
    return {"model": mlflow_logged_model(tracking.get_logged_model(model_id))}


@router.patch("/logged-models/{model_id}")
def finalize_logged_model(model_id: str, body: FinalizeLoggedModel, tracking: TrackingDep) -> dict[str, Any]:
    status = _STATUS_IN.get(str(body.status))
    if status is None:
        raise InvalidArgumentError(f"Invalid logged model status {body.status!r}")
    return {"model": mlflow_logged_model(tracking.finalize_logged_model(model_id, status))}


@router.delete("/logged-models/{model_id}")
def delete_logged_model(model_id: str, tracking: TrackingDep) -> dict[str, Any]:
    tracking.delete_logged_model(model_id)
    return {}


@router.patch("/logged-models/{model_id}/tags")
def set_logged_model_tags(model_id: str, body: LoggedModelTags, tracking: TrackingDep) -> dict[str, Any]:
    tracking.set_logged_model_tags(model_id, _tags(body.tags))
    return {}


@router.delete("/logged-models/{model_id}/tags/{tag_key:path}")
def delete_logged_model_tag(model_id: str, tag_key: str, tracking: TrackingDep) -> dict[str, Any]:
    tracking.delete_logged_model_tag(model_id, tag_key)
    return {}


@router.post("/logged-models/{model_id}/params")
def log_logged_model_params(model_id: str, body: LoggedModelParams, tracking: TrackingDep) -> dict[str, Any]:
    tracking.log_logged_model_params(model_id, {p.key: p.value or "" for p in body.params})
    return {}
