"""Checkpoint endpoints under ``/api/v1/runs/{run_id}/checkpoints``: record, list, select, remove.

The checkpoint's files are uploaded first as the run's artifacts (``checkpoints/step-<step>/...``);
``POST`` then records them, pinning each file's version.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CheckpointsDep
from api.encoding import JSONBody, RawJSONRoute
from lakeops.services.checkpoints import Mode

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


class CheckpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=0)
    metrics: dict[str, float] = Field(default_factory=dict)
    is_dir: bool = True
    files: list[str] | None = Field(default=None, description="the files to record; default all in the directory")


@router.post("/runs/{run_id}/checkpoints", status_code=201)
def create_checkpoint(run_id: str, body: CheckpointCreate, checkpoints: CheckpointsDep) -> dict[str, Any]:
    """Record the files uploaded under ``checkpoints/step-<step>`` as the run's checkpoint at ``step``."""
    return checkpoints.create(
        run_id, step=body.step, metrics=body.metrics, is_dir=body.is_dir, files=body.files
    ).model_dump()


@router.get("/runs/{run_id}/checkpoints")
def list_checkpoints(run_id: str, checkpoints: CheckpointsDep) -> dict[str, Any]:
    """The run's current checkpoints, by step."""
    return {"checkpoints": [c.model_dump() for c in checkpoints.of_run(run_id)]}


@router.get("/runs/{run_id}/checkpoints/latest")
def latest_checkpoint(run_id: str, checkpoints: CheckpointsDep) -> dict[str, Any]:
    """The checkpoint of the highest step."""
    return checkpoints.latest(run_id).model_dump()


@router.get("/runs/{run_id}/checkpoints/best")
def best_checkpoint(run_id: str, metric: str, checkpoints: CheckpointsDep, mode: Mode = "min") -> dict[str, Any]:
    """The checkpoint with the lowest (``mode=min``) or highest (``mode=max``) value of ``metric``."""
    return checkpoints.best(run_id, metric, mode).model_dump()


@router.get("/runs/{run_id}/checkpoints/{step}")
def get_checkpoint(run_id: str, step: int, checkpoints: CheckpointsDep) -> dict[str, Any]:
    """The checkpoint at ``step``."""
    return checkpoints.get(run_id, step).model_dump()


@router.delete("/runs/{run_id}/checkpoints/{step}", status_code=204)
def delete_checkpoint(run_id: str, step: int, checkpoints: CheckpointsDep) -> Response:
    """Remove the checkpoint at ``step`` (its bytes are reclaimed by ``lakeops maintain --gc``)."""
    checkpoints.delete(run_id, step)
    return Response(status_code=204)
