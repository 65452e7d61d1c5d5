"""MLflow 3's trace and assessment routes (``/api/{2,3}.0/mlflow/traces...``) and OTLP span ingest.

Mounted under ``/api/2.0/mlflow`` and ``/api/3.0/mlflow`` (and their ``/ajax-api`` mirrors), since
MLflow registers its ``since 3.0`` RPCs at both. ``otlp_router`` serves ``POST /v1/traces``, where
the tracing SDK exports spans. Bodies and answers follow MLflow's protos in their JSON mapping:
``TraceInfoV3`` (times as RFC 3339 text, durations as ``"1.500s"``) and ``Assessment``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import TracesDep
from api.encoding import JSONBody, RawJSONRoute
from api.otlp import decode_export_request
from api.permissions import require_level
from lakeops.errors import InvalidArgumentError
from lakeops.services.traces import Assessment, TraceInfo, TraceService, query_trace_metrics

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)
otlp_router = APIRouter()

EXPERIMENT_ID_HEADER = "x-mlflow-experiment-id"
LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"
_DURATION = re.compile(r"^(-?\d+)(?:\.(\d{1,9}))?s$")


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StartTraceV3(_Req):
    trace: dict[str, Any] = Field(default_factory=dict)


class TraceIds(_Req):
    trace_ids: list[str] = Field(default_factory=list)


class SearchTracesV3(_Req):
    locations: list[dict[str, Any]] = Field(default_factory=list)
    filter: str | None = None
    max_results: int = 100
    order_by: list[str] = Field(default_factory=list)
    page_token: str | None = None


class DeleteTraces(_Req):
    experiment_id: str
    max_timestamp_millis: int | None = None
    max_traces: int | None = None
    request_ids: list[str] = Field(default_factory=list)


class LinkToRun(_Req):
    trace_ids: list[str] = Field(default_factory=list)
    run_id: str


class LinkPrompts(_Req):
    trace_id: str
    prompt_versions: list[dict[str, Any]] = Field(default_factory=list)


class TraceTag(_Req):
    key: str
    value: str | None = None


class CreateAssessment(_Req):
    assessment: dict[str, Any]


class UpdateAssessment(_Req):
    assessment: dict[str, Any] = Field(default_factory=dict)
    update_mask: str | dict[str, Any] | None = None


# -- encoding --------------------------------------------------------------------------------------


def _utc(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    from time import gmtime, strftime

    return strftime("%Y-%m-%dT%H:%M:%S", gmtime(seconds)) + f".{millis:03d}Z"


def trace_info_v3(info: TraceInfo) -> dict[str, Any]:
    """A trace's info in the JSON mapping of MLflow's ``TraceInfoV3``."""
    out: dict[str, Any] = {
        "trace_id": info.trace_id,
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": info.experiment_id}},
        "request_time": _utc(info.request_time),
        "state": info.state,
        "trace_metadata": dict(info.metadata),
        "tags": dict(info.tags),
        "assessments": [a.content for a in info.assessments],
    }
    if info.execution_duration is not None:
        out["execution_duration"] = f"{info.execution_duration / 1000:.3f}s"
    for key in ("client_request_id", "request_preview", "response_preview"):
        value = getattr(info, key)
        if value is not None:
            out[key] = value
    return out


def trace_info_v2(info: TraceInfo) -> dict[str, Any]:
    """A trace's info in MLflow's older ``TraceInfo`` shape (``request_id``, ``timestamp_ms``, lists of pairs)."""
    status = {"STATE_UNSPECIFIED": "TRACE_STATUS_UNSPECIFIED"}.get(info.state, info.state)
    out: dict[str, Any] = {
        "request_id": info.trace_id,
        "experiment_id": info.experiment_id,
        "timestamp_ms": info.request_time,
        "status": status,
        "request_metadata": [{"key": k, "value": v} for k, v in info.metadata.items()],
        "tags": [{"key": k, "value": v} for k, v in info.tags.items()],
    }
    if info.execution_duration is not None:
        out["execution_time_ms"] = info.execution_duration
    return out


def _assessment(a: Assessment) -> dict[str, Any]:
    return {"assessment": a.content}


# -- decoding --------------------------------------------------------------------------------------


def _time_ms(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    raise InvalidArgumentError(f"Invalid {name} {value!r}: expected an RFC 3339 time such as 2024-01-02T03:04:05.678Z")


def _duration_ms(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and (m := _DURATION.match(value)):
        seconds, fraction = int(m.group(1)), (m.group(2) or "0").ljust(9, "0")
        return seconds * 1000 + int(fraction) // 1_000_000
    raise InvalidArgumentError(f'Invalid execution_duration {value!r}: expected seconds such as "1.500s"')


def _experiment_of(location: object) -> str:
    if isinstance(location, dict):
        experiment = location.get("mlflow_experiment") or location.get("mlflowExperiment") or {}
        found = experiment.get("experiment_id") or experiment.get("experimentId")
        if found:
            return str(found)
    raise InvalidArgumentError("A trace needs trace_location.mlflow_experiment.experiment_id")


def _string_map(value: object, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"Invalid {name}: expected an object of strings")
    return {str(k): str(v) for k, v in value.items()}


def parse_trace_info(body: dict[str, Any]) -> tuple[TraceInfo, list[dict[str, Any]]]:
    """A ``TraceInfoV3`` (JSON mapping) as the service's ``TraceInfo``, and its assessments."""
    trace_id = body.get("trace_id") or body.get("traceId")
    if not isinstance(trace_id, str) or not trace_id:
        raise InvalidArgumentError("A trace needs a trace_id")
    info = TraceInfo(
        trace_id=trace_id,
        experiment_id=_experiment_of(body.get("trace_location") or body.get("traceLocation")),
        request_time=_time_ms(body.get("request_time") or body.get("requestTime"), "request_time"),
        execution_duration=_duration_ms(body.get("execution_duration") or body.get("executionDuration")),
        state=str(body.get("state") or "STATE_UNSPECIFIED"),
        client_request_id=body.get("client_request_id"),
        request_preview=body.get("request_preview"),
        response_preview=body.get("response_preview"),
        metadata=_string_map(body.get("trace_metadata"), "trace_metadata"),
        tags=_string_map(body.get("tags"), "tags"),
    )
    assessments = body.get("assessments") or []
    if not isinstance(assessments, list):
        raise InvalidArgumentError("Invalid assessments: expected a list")
    return info, assessments


def _experiment_ids(locations: list[dict[str, Any]]) -> list[str]:
    if not locations:
        raise InvalidArgumentError("Search traces in at least one location (an experiment)")
    return [_experiment_of(loc) for loc in locations]


def _mask_paths(mask: str | dict[str, Any] | None, assessment: dict[str, Any]) -> list[str]:
    if mask is None:
        return [k for k in ("assessment_name", "feedback", "expectation", "rationale", "metadata") if k in assessment]
    paths = mask.get("paths", []) if isinstance(mask, dict) else [p for p in mask.split(",") if p]
    return [re.sub(r"(?<!^)(?=[A-Z])", "_", p).lower() for p in paths]


# -- routes ----------------------------------------------------------------------------------------


def _allow(request: Request, experiment_id: str, level: str) -> None:
    require_level(request, "experiment", experiment_id, level)


def _trace_for(request: Request, traces: TraceService, trace_id: str, level: str) -> TraceInfo:
    """The trace, once the caller is seen to hold ``level`` on its experiment."""
    info = traces.get_trace_info(trace_id)
    _allow(request, info.experiment_id, level)
    return info


@router.post("/traces")
def start_trace(body: StartTraceV3, request: Request, traces: TracesDep) -> dict[str, Any]:
    info = body.trace.get("trace_info") or body.trace.get("traceInfo")
    if not isinstance(info, dict):
        raise InvalidArgumentError(
            "StartTraceV3 takes {trace: {trace_info: ...}}; the older StartTrace (v2) is not served, "
            "use an mlflow client >= 3.0"
        )
    parsed, assessments = parse_trace_info(info)
    _allow(request, parsed.experiment_id, "EDIT")
    return {"trace": {"trace_info": trace_info_v3(traces.start_trace(parsed, assessments))}}


@router.get("/traces/get")
def get_trace(request: Request, traces: TracesDep, trace_id: str) -> dict[str, Any]:
    # allow_partial (a trace whose spans are still arriving) needs nothing: whatever has arrived is returned.
    info = _trace_for(request, traces, trace_id, "READ")
    return {"trace": {"trace_info": trace_info_v3(info), "spans": traces.get_spans(trace_id)}}


def _full_traces(request: Request, traces: TraceService, trace_ids: list[str]) -> dict[str, Any]:
    infos = traces.batch_get_trace_infos(trace_ids)
    for info in infos:
        _allow(request, info.experiment_id, "READ")
    return {"traces": [{"trace_info": trace_info_v3(i), "spans": traces.get_spans(i.trace_id)} for i in infos]}


@router.get("/traces/batchGet")
def batch_get_traces(request: Request, traces: TracesDep, trace_ids: list[str] = Query(default=[])) -> dict[str, Any]:
    return _full_traces(request, traces, trace_ids)


@router.post("/traces/batchGet")
def batch_get_traces_post(body: TraceIds, request: Request, traces: TracesDep) -> dict[str, Any]:
    return _full_traces(request, traces, body.trace_ids)


@router.post("/traces/batchGetInfos")
def batch_get_trace_infos(body: TraceIds, request: Request, traces: TracesDep) -> dict[str, Any]:
    infos = traces.batch_get_trace_infos(body.trace_ids)
    for info in infos:
        _allow(request, info.experiment_id, "READ")
    return {"trace_infos": [trace_info_v3(i) for i in infos]}


@router.post("/traces/search")
def search_traces_v3(body: SearchTracesV3, request: Request, traces: TracesDep) -> dict[str, Any]:
    experiment_ids = _experiment_ids(body.locations)
    for experiment_id in experiment_ids:
        _allow(request, experiment_id, "READ")
    found, token = traces.search_traces(
        experiment_ids,
        filter_string=body.filter,
        max_results=body.max_results,
        order_by=body.order_by,
        page_token=body.page_token,
    )
    out: dict[str, Any] = {"traces": [trace_info_v3(i) for i in found]}
    if token:
        out["next_page_token"] = token
    return out


@router.get("/traces")
def search_traces_v2(
    request: Request,
    traces: TracesDep,
    experiment_ids: list[str] = Query(default=[]),
    filter: str | None = None,
    max_results: int = 100,
    order_by: list[str] = Query(default=[]),
    page_token: str | None = None,
) -> dict[str, Any]:
    if not experiment_ids:
        raise InvalidArgumentError("Search traces in at least one experiment (experiment_ids)")
    for experiment_id in experiment_ids:
        _allow(request, experiment_id, "READ")
    found, token = traces.search_traces(
        experiment_ids, filter_string=filter, max_results=max_results, order_by=order_by, page_token=page_token
    )
    out: dict[str, Any] = {"traces": [trace_info_v2(i) for i in found]}
    if token:
        out["next_page_token"] = token
    return out


@router.post("/traces/delete-traces")
def delete_traces(body: DeleteTraces, request: Request, traces: TracesDep) -> dict[str, Any]:
    _allow(request, body.experiment_id, "EDIT")
    deleted = traces.delete_traces(
        body.experiment_id,
        max_timestamp_millis=body.max_timestamp_millis,
        max_traces=body.max_traces,
        trace_ids=body.request_ids or None,
    )
    return {"traces_deleted": deleted}


@router.post("/traces/link-to-run")
def link_traces_to_run(body: LinkToRun, request: Request, traces: TracesDep) -> dict[str, Any]:
    for trace_id in body.trace_ids:
        _trace_for(request, traces, trace_id, "EDIT")
    traces.link_traces_to_run(body.trace_ids, body.run_id)
    return {}


@router.post("/traces/link-prompts")
def link_prompts_to_trace(body: LinkPrompts, request: Request, traces: TracesDep) -> dict[str, Any]:
    info = _trace_for(request, traces, body.trace_id, "EDIT")
    linked = json.loads(info.tags.get(LINKED_PROMPTS_TAG, "[]"))
    for ref in body.prompt_versions:
        entry = {"name": str(ref.get("name", "")), "version": str(ref.get("version", ""))}
        if entry not in linked:
            linked.append(entry)
    traces.set_trace_tag(body.trace_id, LINKED_PROMPTS_TAG, json.dumps(linked))
    return {}


@router.get("/traces/{trace_id}/info")
def get_trace_info_v2(trace_id: str, request: Request, traces: TracesDep) -> dict[str, Any]:
    return {"trace_info": trace_info_v2(_trace_for(request, traces, trace_id, "READ"))}


@router.get("/traces/{trace_id}")
def get_trace_info_v3(trace_id: str, request: Request, traces: TracesDep) -> dict[str, Any]:
    return {"trace": {"trace_info": trace_info_v3(_trace_for(request, traces, trace_id, "READ"))}}


@router.patch("/traces/{trace_id}/tags")
def set_trace_tag(trace_id: str, body: TraceTag, request: Request, traces: TracesDep) -> dict[str, Any]:
    _trace_for(request, traces, trace_id, "EDIT")
    traces.set_trace_tag(trace_id, body.key, body.value or "")
    return {}


@router.delete("/traces/{trace_id}/tags")
def delete_trace_tag(
    request: Request,
    trace_id: str,
    traces: TracesDep,
    key: str | None = None,
    body: dict[str, Any] | None = Body(default=None),
) -> dict[str, Any]:
    name = key or (body or {}).get("key")
    if not name:
        raise InvalidArgumentError("Missing value for required parameter 'key'")
    _trace_for(request, traces, trace_id, "EDIT")
    traces.delete_trace_tag(trace_id, str(name))
    return {}


@router.post("/traces/{trace_id}/assessments")
def create_assessment(trace_id: str, body: CreateAssessment, request: Request, traces: TracesDep) -> dict[str, Any]:
    _trace_for(request, traces, trace_id, "EDIT")
    return _assessment(traces.create_assessment(trace_id, body.assessment))


@router.get("/traces/{trace_id}/assessments/{assessment_id}")
def get_assessment(trace_id: str, assessment_id: str, request: Request, traces: TracesDep) -> dict[str, Any]:
    _trace_for(request, traces, trace_id, "READ")
    return _assessment(traces.get_assessment(trace_id, assessment_id))


@router.patch("/traces/{trace_id}/assessments/{assessment_id}")
def update_assessment(
    trace_id: str, assessment_id: str, body: UpdateAssessment, request: Request, traces: TracesDep
) -> dict[str, Any]:
    _trace_for(request, traces, trace_id, "EDIT")
    paths = _mask_paths(body.update_mask, body.assessment)
    changes = {p: body.assessment.get(p) for p in paths if p in body.assessment or p == "rationale"}
    return _assessment(traces.update_assessment(trace_id, assessment_id, changes))


@router.delete("/traces/{trace_id}/assessments/{assessment_id}")
def delete_assessment(trace_id: str, assessment_id: str, request: Request, traces: TracesDep) -> dict[str, Any]:
    _trace_for(request, traces, trace_id, "EDIT")
    traces.delete_assessment(trace_id, assessment_id)
    return {}


# -- OTLP ------------------------------------------------------------------------------------------


@otlp_router.post("/v1/traces")
async def export_spans(
    request: Request,
    traces: TracesDep,
    experiment_id: str | None = Header(default=None, alias=EXPERIMENT_ID_HEADER),
    content_type: str | None = Header(default=None),
    content_encoding: str | None = Header(default=None),
) -> Response:
    """OTLP/HTTP span export (protobuf or JSON); the experiment comes from ``x-mlflow-experiment-id``."""
    if not experiment_id:
        raise InvalidArgumentError(f"Spans need an experiment: set the {EXPERIMENT_ID_HEADER} header")
    _allow(request, experiment_id, "EDIT")
    body = await request.body()

    def ingest() -> None:  # decoding and logging in one trip to the thread pool
        traces.log_spans(
            experiment_id, decode_export_request(body, content_type=content_type, content_encoding=content_encoding)
        )

    await run_in_threadpool(ingest)
    # An empty ExportTraceServiceResponse, in the encoding asked for.
    if (content_type or "").startswith("application/json"):
        return Response(b"{}", media_type="application/json")
    return Response(b"", media_type="application/x-protobuf")


# -- trace metrics (MLflow UI charts) ----------------------------------------------------------------


class Aggregation(_Req):
    aggregation_type: str
    percentile_value: float | None = None


class QueryTraceMetrics(_Req):
    experiment_ids: list[str] = Field(default_factory=list)
    view_type: str = "TRACES"
    metric_name: str
    aggregations: list[Aggregation] = Field(default_factory=list)
    dimensions: list[str] = Field(default_factory=list)
    time_interval_seconds: int | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None


@router.post("/traces/metrics")
def query_metrics(body: QueryTraceMetrics, request: Request, traces: TracesDep) -> dict[str, Any]:
    for experiment_id in body.experiment_ids:
        _allow(request, experiment_id, "READ")
    points = query_trace_metrics(
        traces,
        body.experiment_ids,
        view_type=body.view_type,
        metric_name=body.metric_name,
        aggregations=[(a.aggregation_type.upper(), a.percentile_value) for a in body.aggregations],
        dimensions=body.dimensions,
        time_interval_seconds=body.time_interval_seconds,
        start_time_ms=body.start_time_ms,
        end_time_ms=body.end_time_ms,
    )
    return {
        "data_points": [{"metric_name": p.metric_name, "dimensions": p.dimensions, "values": p.values} for p in points]
    }
