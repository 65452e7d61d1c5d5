"""Datasets, lineage (OpenLineage in and out) and data quality under ``/api/v1``."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import DatasetsDep, GateDep, LineageDep, OpenLineageDep, QualityDep
from api.encoding import JSONBody, RawJSONRoute
from lakeops.errors import InvalidArgumentError
from lakeops.services.openlineage import MAX_EVENT_BYTES

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_DATAFRAME_BYTES = 256 * 1024 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetLog(_Body):
    """Log a dataset version from the artifact store (``artifact_path``), an Iceberg table (``iceberg_table``)
    or data already in the object store, by reference (``location``: ``s3://bucket/prefix``)."""

    name: str
    artifact_path: str | None = None
    iceberg_table: str | None = None
    location: str | None = None
    snapshot_id: int | None = None
    run_id: str | None = None
    direction: str = "input"


class DatasetLink(_Body):
    run_id: str
    direction: str = "input"


class SuiteBody(_Body):
    expectations: list[dict[str, Any]] = Field(default_factory=list)


class ValidateBody(_Body):
    suite_name: str | None = None


# -- datasets ------------------------------------------------------------------------------------


@router.post("/datasets", status_code=201)
def log_dataset(body: DatasetLog, datasets: DatasetsDep) -> dict[str, Any]:
    if sum(x is not None for x in (body.artifact_path, body.iceberg_table, body.location)) != 1:
        raise InvalidArgumentError("Give exactly one of artifact_path, iceberg_table or location")
    if body.location is not None:
        return datasets.log_location(body.name, body.location, run_id=body.run_id, direction=body.direction)
    if body.artifact_path is not None:
        return datasets.log_artifact(body.name, body.artifact_path, run_id=body.run_id, direction=body.direction)
    assert body.iceberg_table is not None
    return datasets.log_iceberg_table(
        body.name, body.iceberg_table, snapshot_id=body.snapshot_id, run_id=body.run_id, direction=body.direction
    )


@router.post("/datasets/{name:path}/dataframe", status_code=201)
async def log_dataframe(
    name: str,
    request: Request,
    datasets: DatasetsDep,
    quality: QualityDep,
    run_id: str | None = None,
    direction: str = "input",
    validate: bool = False,
) -> dict[str, Any]:
    """Log a table sent as an Arrow IPC stream; lakeops stores it as Parquet.

    With ``validate=true`` the table must pass every suite attached to the name first (else 422).
    """
    if request.headers.get("content-type", "").split(";")[0] != ARROW_STREAM:
        raise InvalidArgumentError(f"Send the table as {ARROW_STREAM}")
    data = await request.body()
    if len(data) > MAX_DATAFRAME_BYTES:
        raise InvalidArgumentError(f"Table larger than {MAX_DATAFRAME_BYTES} bytes")
    try:
        table = pa.ipc.open_stream(io.BytesIO(data)).read_all()
    except pa.ArrowInvalid as exc:
        raise InvalidArgumentError(f"Body is not an Arrow IPC stream: {exc}") from exc
    log = quality.log_validated_dataframe if validate else datasets.log_dataframe
    result: dict[str, Any] = await run_in_threadpool(log, name, table, run_id=run_id, direction=direction)
    return result


@router.get("/datasets")
def list_datasets(datasets: DatasetsDep) -> dict[str, Any]:
    return {"datasets": datasets.list_names()}


@router.get("/datasets/{name:path}/versions")
def list_dataset_versions(name: str, datasets: DatasetsDep) -> dict[str, Any]:
    return {"versions": datasets.list_versions(name)}


@router.get("/dataset-versions/{version_id}")
def get_dataset_version(version_id: str, datasets: DatasetsDep) -> dict[str, Any]:
    return datasets.get_version(version_id)


@router.post("/dataset-versions/{version_id}/links", status_code=201)
def link_dataset_version(version_id: str, body: DatasetLink, datasets: DatasetsDep) -> dict[str, Any]:
    datasets.link(version_id, body.run_id, direction=body.direction)
    return {"dataset_version_id": version_id, "run_id": body.run_id, "direction": body.direction}


# -- quality ---------------------------------------------------------------------------------------


@router.put("/datasets/{name:path}/suites/{suite_name}")
def attach_suite(name: str, suite_name: str, body: SuiteBody, quality: QualityDep) -> dict[str, Any]:
    return quality.attach_suite(name, suite_name, body.expectations)


@router.get("/datasets/{name:path}/suites")
def list_suites(name: str, quality: QualityDep) -> dict[str, Any]:
    return {"suites": quality.list_suites(name)}


@router.get("/datasets/{name:path}/suites/{suite_name}")
def get_suite(name: str, suite_name: str, quality: QualityDep) -> dict[str, Any]:
    return quality.get_suite(name, suite_name)


@router.delete("/datasets/{name:path}/suites/{suite_name}", status_code=204)
def detach_suite(name: str, suite_name: str, quality: QualityDep) -> Response:
    quality.detach_suite(name, suite_name)
    return Response(status_code=204)


@router.post("/dataset-versions/{version_id}/validations", status_code=201)
def validate_dataset_version(version_id: str, body: ValidateBody, quality: QualityDep) -> dict[str, Any]:
    return {"validations": quality.validate(version_id, body.suite_name)}


@router.get("/dataset-versions/{version_id}/validations")
def list_validations(version_id: str, quality: QualityDep) -> dict[str, Any]:
    return {"validations": quality.validations(version_id)}


@router.get("/quality/gate")
def check_gate(gate: GateDep, run_id: str | None = None, model_id: str | None = None) -> dict[str, Any]:
    """What the alias gate would say about a model version from this run / logged model."""
    reasons = gate.check_model_version(source_run_id=run_id, model_id=model_id)
    return {
        "allowed": not reasons,
        "reasons": reasons,
        "training_datasets": gate.training_datasets(source_run_id=run_id, model_id=model_id),
    }


# -- lineage ---------------------------------------------------------------------------------------


@router.post("/lineage", status_code=201)
async def post_openlineage_event(request: Request, openlineage: OpenLineageDep) -> dict[str, Any]:
    """Accept one OpenLineage RunEvent (as Marquez's ``POST /api/v1/lineage`` does)."""
    data = await request.body()
    if len(data) > MAX_EVENT_BYTES:
        raise InvalidArgumentError(f"OpenLineage event larger than {MAX_EVENT_BYTES} bytes")
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise InvalidArgumentError(f"Invalid OpenLineage event: body is not JSON ({exc})") from exc
    result: dict[str, Any] = await run_in_threadpool(openlineage.ingest, event)
    return result


@router.get("/lineage/{kind}/{node_id:path}")
def get_lineage(
    kind: str,
    node_id: str,
    lineage: LineageDep,
    direction: str = "upstream",
    depth: int = 5,
    as_of: str | None = None,
) -> dict[str, Any]:
    return lineage.query(kind, node_id, direction=direction, depth=depth, as_of=as_of)


@router.get("/runs/{run_id}/openlineage")
def get_run_openlineage(run_id: str, openlineage: OpenLineageDep) -> dict[str, Any]:
    return {"events": openlineage.run_events(run_id)}
