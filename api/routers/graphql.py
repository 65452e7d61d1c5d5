"""``POST /graphql``: the GraphQL queries MLflow's web UI sends (experiment page, run page, run
search, metric charts, artifacts), answered from lakeops' services.

The schema (``api/schemas/mlflow.graphql``) carries MLflow's type names and the fields its UI asks
for; it is executed by ``graphql-core``. Resolvers reuse the REST encoders (MLflow's JSON shapes,
snake_case) and turn keys into the schema's camelCase. A domain error becomes the response's
``apiError`` ({code, message}), as on an MLflow server, and reads check the caller's permission
when authentication is on.
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.encoding import JSONBody, mlflow_experiment, mlflow_run, mlflow_run_inputs
from api.errors import ERROR_TABLE
from api.permissions import require_level
from api.routers.mlflow_registry import mlflow_model_version
from api.routers.mlflow_tracking import get_metric_history_bulk_interval, view_type
from lakeops.datasets import DatasetService
from lakeops.errors import InvalidArgumentError, LakeopsError
from lakeops.registry import RegistryService
from lakeops.services.artifacts import ArtifactService, validate_artifact_path
from lakeops.tracking import TrackingService

if TYPE_CHECKING:
    # graphql-core is imported when the first GraphQL request is served (``_execute``), not with the app:
    # only MLflow's web UI asks, and its import costs ~0.3 CPU-s of every server's start-up.
    from graphql import ExecutionResult, GraphQLSchema
    from graphql.type import GraphQLResolveInfo

router = APIRouter()

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "mlflow.graphql"
_CAMEL = re.compile(r"_([a-z0-9])")
ARTIFACT_SCHEME = "mlflow-artifacts:/"


class GraphQLRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = Field(default=None, alias="operationName")


@cache
def schema() -> GraphQLSchema:
    """The schema, built once from its SDL file."""
    from graphql import build_schema  # deferred: see the imports at the top

    built = build_schema(SCHEMA_FILE.read_text())
    long_string = built.type_map["LongString"]
    long_string.serialize = lambda value: str(value)  # type: ignore[attr-defined]
    long_string.parse_value = lambda value: int(value)  # type: ignore[attr-defined]
    return built


def camel(value: Any) -> Any:
    """snake_case keys to camelCase, all the way down; NaN and infinite floats (strings in MLflow's
    JSON) become null, which is what MLflow's GraphQL answers for them."""
    if isinstance(value, dict):
        return {_CAMEL.sub(lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def camel_dict(value: dict[str, Any]) -> dict[str, Any]:
    """``camel`` of a dict."""
    return cast(dict[str, Any], camel(value))


def _api_error(exc: LakeopsError) -> dict[str, Any]:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return {"apiError": {"code": ERROR_TABLE[cls][3], "message": exc.message}}
    return {"apiError": {"code": "INTERNAL_ERROR", "message": exc.message}}


def _artifact_prefix(artifact_uri: str | None) -> str:
    """The artifact store path of a run's or model's ``mlflow-artifacts:/...`` URI."""
    if not artifact_uri or not artifact_uri.startswith(ARTIFACT_SCHEME):
        raise InvalidArgumentError(f"Artifacts at {artifact_uri!r} are not served by lakeops")
    return artifact_uri[len(ARTIFACT_SCHEME) :].strip("/")


class Root:
    """Resolvers of the schema's root fields, bound to one request."""

    def __init__(self, request: Request) -> None:
        self.request = request
        state = request.app.state
        self.tracking: TrackingService = state.tracking
        self.registry: RegistryService = state.registry
        self.artifacts: ArtifactService = state.artifacts
        self.datasets: DatasetService = state.datasets

    def _read(self, experiment_id: str) -> None:
        require_level(self.request, "experiment", experiment_id, "READ")

    def _run(self, run: Any) -> dict[str, Any]:
        out = mlflow_run(run)
        for metric in out["data"]["metrics"]:  # NaN and infinities: null in MLflow's GraphQL
            metric["value"] = _number(metric["value"])
        out["experiment"] = mlflow_experiment(self.tracking.get_experiment(run.info.experiment_id))
        page = self.registry.search_model_versions(f"run_id = '{run.info.run_id}'", max_results=1000)
        out["model_versions"] = [mlflow_model_version(v) for v in page.model_versions]
        return out

    def mlflowGetExperiment(self, _info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            experiment_id = str(input.get("experimentId") or "")
            self._read(experiment_id)
            return camel_dict({"experiment": mlflow_experiment(self.tracking.get_experiment(experiment_id))})
        except LakeopsError as exc:
            return _api_error(exc)

    def mlflowGetRun(self, _info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            run = self.tracking.get_run(str(input.get("runId") or input.get("runUuid") or ""))
            self._read(run.info.experiment_id)
            return camel_dict({"run": self._run(run)})
        except LakeopsError as exc:
            return _api_error(exc)

    def mlflowSearchRuns(self, _info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            experiment_ids = [str(e) for e in input.get("experimentIds") or []]
            for experiment_id in experiment_ids:
                self._read(experiment_id)
            page = self.tracking.search_runs(
                experiment_ids,
                filter_string=input.get("filter"),
                run_view_type=view_type(input.get("runViewType") or "ACTIVE_ONLY"),
                max_results=int(input.get("maxResults") or 1000),
                order_by=input.get("orderBy") or [],
                page_token=input.get("pageToken"),
            )
            out: dict[str, Any] = {"runs": [self._run(r) for r in page.runs]}
            if page.next_page_token:
                out["next_page_token"] = page.next_page_token
            return camel_dict(out)
        except LakeopsError as exc:
            return _api_error(exc)

    def mlflowGetMetricHistoryBulkInterval(
        self,
        _info: GraphQLResolveInfo,
        input: dict[str, Any],
    ) -> dict[str, Any]:
        try:
            run_ids = [str(r) for r in input.get("runIds") or []]
            for run_id in run_ids:
                self._read(self.tracking.get_run(run_id).info.experiment_id)
            answer = get_metric_history_bulk_interval(
                self.tracking,
                metric_key=str(input.get("metricKey") or ""),
                run_ids=run_ids,
                start_step=input.get("startStep"),
                end_step=input.get("endStep"),
                max_results=int(input.get("maxResults") or 320),
            )
            return camel_dict({"metrics": [{**m, "value": _number(m["value"])} for m in answer["metrics"]]})
        except LakeopsError as exc:
            return _api_error(exc)

    def mlflowListArtifacts(self, _info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            run = self.tracking.get_run(str(input.get("runId") or input.get("runUuid") or ""))
            self._read(run.info.experiment_id)
            return camel_dict(list_run_artifacts(self.artifacts, run.info.artifact_uri, input.get("path") or ""))
        except LakeopsError as exc:
            return _api_error(exc)

    def mlflowSearchModelVersions(self, _info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            page = self.registry.search_model_versions(
                input.get("filter"),
                max_results=int(input.get("maxResults") or 10_000),
                order_by=input.get("orderBy") or [],
                page_token=input.get("pageToken"),
            )
            versions = [v for v in page.model_versions if self._may_read_model(v.name)]
            out: dict[str, Any] = {"model_versions": [mlflow_model_version(v) for v in versions]}
            if page.next_page_token:
                out["next_page_token"] = page.next_page_token
            return camel_dict(out)
        except LakeopsError as exc:
            return _api_error(exc)

    def _may_read_model(self, name: str) -> bool:
        try:
            require_level(self.request, "registered_model", name, "READ")
        except LakeopsError:
            return False
        return True

    def mlflowSearchDatasets(self, _info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            experiment_ids = [str(e) for e in input.get("experimentIds") or []]
            for experiment_id in experiment_ids:
                self._read(experiment_id)
            return camel_dict({"dataset_summaries": search_dataset_summaries(self.tracking, experiment_ids)})
        except LakeopsError as exc:
            return _api_error(exc)


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def list_run_artifacts(artifacts: ArtifactService, artifact_uri: str | None, path: str) -> dict[str, Any]:
    """MLflow's ``ListArtifacts`` answer for a run: paths relative to the run's artifact root."""
    root = _artifact_prefix(artifact_uri)
    relative = validate_artifact_path(path, allow_empty=True).strip("/")
    files = []
    for entry in artifacts.list(f"{root}/{relative}" if relative else root):
        name = entry.path.rstrip("/").rsplit("/", 1)[-1]
        info: dict[str, Any] = {"path": f"{relative}/{name}" if relative else name, "is_dir": entry.is_dir}
        if entry.file_size is not None:
            info["file_size"] = entry.file_size
        files.append(info)
    return {"root_uri": artifact_uri, "files": files}


def search_dataset_summaries(tracking: TrackingService, experiment_ids: list[str]) -> list[dict[str, Any]]:
    """The datasets the experiments' runs logged as inputs: one summary per (experiment, name, digest, context)."""
    seen: dict[tuple[str, str, str, str | None], None] = {}
    for experiment_id in experiment_ids:
        token = None
        while True:
            page = tracking.search_runs([experiment_id], max_results=50_000, page_token=token)
            for run in page.runs:
                for item in mlflow_run_inputs(run.inputs)["dataset_inputs"]:
                    dataset = item["dataset"]
                    tags = {t["key"]: t["value"] for t in item["tags"]}
                    key = (experiment_id, dataset["name"], dataset["digest"], tags.get("mlflow.data.context"))
                    seen.setdefault(key)
            token = page.next_page_token
            if not token:
                break
    return [{"experiment_id": e, "name": n, "digest": d, **({"context": c} if c else {})} for e, n, d, c in seen]


def _execute(
    request: Request, query: str, variables: dict[str, Any] | None, operation_name: str | None
) -> ExecutionResult:
    """Run one operation (in the thread pool: the first also imports graphql-core and builds the schema)."""
    from graphql import graphql_sync  # deferred: see the imports at the top

    return graphql_sync(
        schema(), query, root_value=Root(request), variable_values=variables, operation_name=operation_name
    )


@router.post("/graphql")
async def graphql_post(body: GraphQLRequest, request: Request) -> JSONBody:
    """Run one GraphQL operation (MLflow's UI sends one per request)."""
    result = await run_in_threadpool(_execute, request, body.query, body.variables, body.operation_name)
    return JSONBody(result.formatted)


@router.get("/graphql")
async def graphql_get(request: Request, query: str, operationName: str | None = None) -> JSONBody:
    """The same, with the query in the URL (no variables)."""
    result = await run_in_threadpool(_execute, request, query, None, operationName)
    return JSONBody(result.formatted)
