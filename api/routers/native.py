"""The native API under ``/api/v1``: resource-oriented JSON, Arrow IPC for bulk metrics."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AuthDep, TrackingDep
from api.encoding import JSONBody, RawJSONRoute, history_json, json_float, native_run
from api.permissions import readable_only, require_level, resources_of
from lakeops.entities import RunStatus, ViewType, to_dict
from lakeops.errors import InvalidArgumentError

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
NDJSON = "application/x-ndjson"
MAX_INGEST_BYTES = 256 * 1024 * 1024
# Like MLflow's log-batch: more metric points go through /metrics/ingest (Arrow or NDJSON).
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 1000
MAX_BATCH_TAGS = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentCreate(_Body):
    name: str
    artifact_location: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ExperimentUpdate(_Body):
    name: str


class TagValue(_Body):
    value: str


class RunCreate(_Body):
    run_name: str | None = None
    user_id: str | None = None
    start_time: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    parent_run_id: str | None = None


class RunUpdate(_Body):
    status: RunStatus | None = None
    end_time: int | None = None
    run_name: str | None = None


class MetricPoint(_Body):
    key: str
    value: float
    timestamp: int | None = None
    step: int = 0


class RunBatch(_Body):
    metrics: list[MetricPoint] = Field(default_factory=list)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class RunSearch(_Body):
    experiment_ids: list[str]
    filter: str | None = None
    view_type: ViewType = ViewType.ACTIVE_ONLY
    max_results: int = 1000
    order_by: list[str] = Field(default_factory=list)
    page_token: str | None = None
    as_of: datetime | None = Field(default=None, description="ISO-8601 time: the runs as they stood then.")


class RunGroups(_Body):
    experiment_ids: list[str]
    group_by: str
    filter: str | None = None
    view_type: ViewType = ViewType.ACTIVE_ONLY
    metrics: list[str] = Field(default_factory=list, max_length=100)
    max_groups: int = Field(default=1000, ge=1, le=100_000)
    as_of: datetime | None = Field(default=None, description="ISO-8601 time: the runs as they stood then.")


# -- experiments ---------------------------------------------------------------------------------


@router.post("/experiments", status_code=201)
def create_experiment(body: ExperimentCreate, tracking: TrackingDep, auth: AuthDep) -> dict[str, Any]:
    experiment_id = tracking.create_experiment(body.name, artifact_location=body.artifact_location, tags=body.tags)
    auth.grant_creator("experiment", experiment_id)
    return to_dict(tracking.get_experiment(experiment_id))


@router.get("/experiments")
def list_experiments(
    request: Request,
    tracking: TrackingDep,
    filter: str | None = None,
    view_type: ViewType = ViewType.ACTIVE_ONLY,
    max_results: int = 1000,
    order_by: list[str] = Query(default_factory=list),
    page_token: str | None = None,
) -> dict[str, Any]:
    page = tracking.search_experiments(
        view_type=view_type, max_results=max_results, filter_string=filter, order_by=order_by, page_token=page_token
    )
    return readable_only(request, to_dict(page), "experiments", "experiment", "experiment_id")


@router.get("/experiments/by-name/{name}")
def get_experiment_by_name(name: str, tracking: TrackingDep) -> dict[str, Any]:
    return to_dict(tracking.get_experiment_by_name(name))


@router.get("/experiments/{experiment_id}")
def get_experiment(experiment_id: str, tracking: TrackingDep) -> dict[str, Any]:
    return to_dict(tracking.get_experiment(experiment_id))


@router.patch("/experiments/{experiment_id}")
def rename_experiment(experiment_id: str, body: ExperimentUpdate, tracking: TrackingDep) -> dict[str, Any]:
    tracking.rename_experiment(experiment_id, body.name)
    return to_dict(tracking.get_experiment(experiment_id))


@router.delete("/experiments/{experiment_id}", status_code=204)
def delete_experiment(experiment_id: str, tracking: TrackingDep) -> Response:
    tracking.delete_experiment(experiment_id)
    return Response(status_code=204)


@router.post("/experiments/{experiment_id}/restore")
def restore_experiment(experiment_id: str, tracking: TrackingDep) -> dict[str, Any]:
    tracking.restore_experiment(experiment_id)
    return to_dict(tracking.get_experiment(experiment_id))


@router.put("/experiments/{experiment_id}/tags/{key:path}")
def set_experiment_tag(experiment_id: str, key: str, body: TagValue, tracking: TrackingDep) -> dict[str, Any]:
    tracking.set_experiment_tag(experiment_id, key, body.value)
    return to_dict(tracking.get_experiment(experiment_id))


@router.delete("/experiments/{experiment_id}/tags/{key:path}", status_code=204)
def delete_experiment_tag(experiment_id: str, key: str, tracking: TrackingDep) -> Response:
    tracking.delete_experiment_tag(experiment_id, key)
    return Response(status_code=204)


# -- runs ------------------------------------------------------------------------------------


@router.post("/experiments/{experiment_id}/runs", status_code=201)
def create_run(experiment_id: str, body: RunCreate, tracking: TrackingDep) -> dict[str, Any]:
    run = tracking.create_run(
        experiment_id,
        run_name=body.run_name,
        user_id=body.user_id,
        start_time=body.start_time,
        tags=body.tags,
        parent_run_id=body.parent_run_id,
    )
    return native_run(run)


@router.post("/runs/search")
def search_runs(body: RunSearch, tracking: TrackingDep) -> dict[str, Any]:
    page = tracking.search_runs(
        body.experiment_ids,
        filter_string=body.filter,
        run_view_type=body.view_type,
        max_results=body.max_results,
        order_by=body.order_by,
        page_token=body.page_token,
        as_of=body.as_of,
    )
    return {"runs": [native_run(r) for r in page.runs], "next_page_token": page.next_page_token}


@router.post("/runs/groups")
def group_runs(body: RunGroups, tracking: TrackingDep) -> dict[str, Any]:
    """The runs a search finds, grouped by a param, tag or attribute: counts and metric summaries."""
    groups = tracking.group_runs(
        body.experiment_ids,
        group_by=body.group_by,
        filter_string=body.filter,
        run_view_type=body.view_type,
        metrics=body.metrics,
        as_of=body.as_of,
    )
    return {
        "groups": [
            {
                "value": g.value,
                "count": g.count,
                "metrics": {
                    k: {
                        "count": m.count,
                        "min": json_float(m.min),
                        "mean": json_float(m.mean),
                        "max": json_float(m.max),
                    }
                    for k, m in g.metrics.items()
                },
            }
            for g in groups[: body.max_groups]
        ],
        "total_groups": len(groups),
    }


@router.get("/runs/{run_id}")
def get_run(run_id: str, tracking: TrackingDep) -> dict[str, Any]:
    return native_run(tracking.get_run(run_id))


@router.patch("/runs/{run_id}")
def update_run(run_id: str, body: RunUpdate, tracking: TrackingDep) -> dict[str, Any]:
    tracking.update_run(run_id, status=body.status, end_time=body.end_time, run_name=body.run_name)
    return native_run(tracking.get_run(run_id))


@router.delete("/runs/{run_id}", status_code=204)
def delete_run(run_id: str, tracking: TrackingDep) -> Response:
    tracking.delete_run(run_id)
    return Response(status_code=204)


@router.post("/runs/{run_id}/restore")
def restore_run(run_id: str, tracking: TrackingDep) -> dict[str, Any]:
    tracking.restore_run(run_id)
    return native_run(tracking.get_run(run_id))


@router.post("/runs/{run_id}/batch")
def log_run_batch(run_id: str, body: RunBatch, tracking: TrackingDep) -> dict[str, Any]:
    for name, count, limit in (
        ("metric points", len(body.metrics), MAX_BATCH_METRICS),
        ("params", len(body.params), MAX_BATCH_PARAMS),
        ("tags", len(body.tags), MAX_BATCH_TAGS),
    ):
        if count > limit:
            raise InvalidArgumentError(
                f"A batch holds at most {limit} {name}, got {count}; send metric points in bulk to "
                "POST /api/v1/metrics/ingest (Arrow IPC or NDJSON)"
            )
    now = int(time.time() * 1000)
    points = [(m.key, m.value, now if m.timestamp is None else m.timestamp, m.step) for m in body.metrics]
    tracking.log_batch(run_id, metrics=points, params=body.params, tags=body.tags)
    return {"metrics": len(points), "params": len(body.params), "tags": len(body.tags)}


@router.put("/runs/{run_id}/tags/{key:path}")
def set_run_tag(run_id: str, key: str, body: TagValue, tracking: TrackingDep) -> dict[str, Any]:
    tracking.set_tag(run_id, key, body.value)
    return native_run(tracking.get_run(run_id))


@router.delete("/runs/{run_id}/tags/{key:path}", status_code=204)
def delete_run_tag(run_id: str, key: str, tracking: TrackingDep) -> Response:
    tracking.delete_tag(run_id, key)
    return Response(status_code=204)


@router.get("/runs/{run_id}/metrics/{key:path}/history", response_model=None)
def metric_history(
    run_id: str,
    key: str,
    request: Request,
    tracking: TrackingDep,
    max_results: int | None = None,
    page_token: str | None = None,
) -> Response | dict[str, Any]:
    if ARROW_STREAM in request.headers.get("accept", ""):
        table = tracking.metric_history_table(run_id, key)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM)
    page, token = tracking.metric_history_page(run_id, key, max_results=max_results, page_token=page_token)
    return {"metrics": history_json(key, page), "next_page_token": token}


# -- bulk ingest -------------------------------------------------------------------------------


@router.post("/metrics/ingest")
async def ingest_metrics(request: Request, tracking: TrackingDep) -> dict[str, Any]:
    """Metric points of any runs as Arrow IPC (stream) or NDJSON: run_id, key, value, timestamp[, step]."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_INGEST_BYTES:
            raise InvalidArgumentError(f"Ingest body larger than {MAX_INGEST_BYTES} bytes; split it")
    table = _parse_ingest(bytes(body), content_type)
    if "run_id" in table.column_names:  # EDIT on every run the points belong to
        for run_id in pa.compute.unique(table.column("run_id")).to_pylist():
            for kind, experiment_id in resources_of(request, "run", str(run_id)):
                require_level(request, kind, experiment_id, "EDIT")
    from starlette.concurrency import run_in_threadpool

    count = await run_in_threadpool(tracking.log_metrics_table, table)
    return {"ingested": count}


def _parse_ingest(body: bytes, content_type: str) -> pa.Table:
    if not body:
        raise InvalidArgumentError("Empty ingest body")
    if content_type == ARROW_STREAM:
        try:
            return pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidArgumentError(f"Body is not an Arrow IPC stream: {exc}") from exc
    if content_type in (NDJSON, "application/jsonl", "application/json"):
        try:
            rows = [json.loads(line) for line in io.BytesIO(body).read().decode().splitlines() if line.strip()]
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"Body is not NDJSON: {exc}") from exc
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise InvalidArgumentError("NDJSON body must hold one JSON object per line")
        try:
            return pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError, OverflowError) as exc:
            raise InvalidArgumentError(f"NDJSON rows do not form a table: {exc}") from exc
    raise InvalidArgumentError(f"Unsupported content type {content_type!r}; send {ARROW_STREAM} or {NDJSON}")
