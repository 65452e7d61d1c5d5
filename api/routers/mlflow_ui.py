"""The REST paths MLflow's web UI calls besides the protocol the client uses: run artifact listing and
download, model version artifacts, dataset summaries, and bulk metric history.

``router`` is mounted under ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``; ``root_router`` holds
MLflow's root paths (``/get-artifact``, ``/model-versions/get-artifact``). Reads check the caller's
permission on the experiment when authentication is on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ArtifactsDep, RegistryDep, TrackingDep
from api.encoding import JSONBody, RawJSONRoute, metric_json
from api.permissions import require_level
from api.routers.artifacts import _download
from api.routers.graphql import _artifact_prefix, list_run_artifacts, search_dataset_summaries
from lakeops.errors import InvalidArgumentError
from lakeops.services.artifacts import validate_artifact_path

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)
root_router = APIRouter()
# MLflow's UI asks its server's AI assistant (a local coding-agent CLI) for its set-up; lakeops has none.
assistant_router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


class SearchDatasets(BaseModel):
    model_config = ConfigDict(extra="ignore")
    experiment_ids: list[str] = Field(default_factory=list)


def _run_for_read(request: Request, tracking: TrackingDep, run_id: str | None) -> Any:
    if not run_id:
        raise InvalidArgumentError("Missing value for required parameter 'run_id'")
    run = tracking.get_run(run_id)
    require_level(request, "experiment", run.info.experiment_id, "READ")
    return run


@router.get("/artifacts/list")
def list_artifacts(
    request: Request,
    tracking: TrackingDep,
    artifacts: ArtifactsDep,
    run_id: str | None = None,
    run_uuid: str | None = None,
    path: str = "",
) -> dict[str, Any]:
    run = _run_for_read(request, tracking, run_id or run_uuid)
    return list_run_artifacts(artifacts, run.info.artifact_uri, path)


@router.post("/experiments/search-datasets")
def search_datasets(body: SearchDatasets, request: Request, tracking: TrackingDep) -> dict[str, Any]:
    for experiment_id in body.experiment_ids:
        require_level(request, "experiment", experiment_id, "READ")
    return {"dataset_summaries": search_dataset_summaries(tracking, body.experiment_ids)}


@router.get("/metrics/get-history-bulk")
def get_metric_history_bulk(
    request: Request,
    tracking: TrackingDep,
    metric_key: str,
    run_id: list[str] = Query(...),
    max_results: int = 25_000,
) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for rid in run_id:
        _run_for_read(request, tracking, rid)
        points = tracking.get_metric_history(rid, metric_key).metrics[:max_results]
        out.extend({**metric_json(p), "run_id": rid} for p in points)
    return {"metrics": out}


@root_router.get("/get-artifact")
def get_artifact(
    request: Request,
    tracking: TrackingDep,
    artifacts: ArtifactsDep,
    path: str,
    run_id: str | None = None,
    run_uuid: str | None = None,
) -> StreamingResponse:
    """One file of a run's artifacts (what the UI's artifact viewer shows)."""
    run = _run_for_read(request, tracking, run_id or run_uuid)
    root = _artifact_prefix(run.info.artifact_uri)
    return _download(artifacts, validate_artifact_path(f"{root}/{path.strip('/')}"), None)


@root_router.get("/model-versions/get-artifact")
def get_model_version_artifact(
    request: Request, registry: RegistryDep, artifacts: ArtifactsDep, name: str, version: str, path: str
) -> StreamingResponse:
    """One file of a model version's artifacts."""
    require_level(request, "registered_model", name, "READ")
    root = _artifact_prefix(registry.get_model_version_download_uri(name, version))
    return _download(artifacts, validate_artifact_path(f"{root}/{path.strip('/')}"), None)


@assistant_router.get("/assistant/config")
def assistant_config() -> dict[str, Any]:
    """No assistant providers: lakeops runs no coding agent (the UI then hides its assistant)."""
    return {"providers": {}, "projects": {}, "remote_access_allowed": False}


@assistant_router.get("/assistant/providers")
def assistant_providers() -> dict[str, Any]:
    """No assistant providers are available on a lakeops server."""
    return {"providers": [], "resolved": None, "gateway_vendor_options": []}
