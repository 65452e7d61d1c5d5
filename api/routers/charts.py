"""Chart-sized reads under ``/api/v1``: a metric's history downsampled to the points a chart can show."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import TrackingDep
from api.encoding import JSONBody, RawJSONRoute
from lakeops.downsample import Downsampled, downsample

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_RUNS = 1000


class ManyHistories(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_ids: list[str] = Field(min_length=1, max_length=MAX_RUNS)
    key: str
    points: int = 1000
    min_step: int | None = None
    max_step: int | None = None
    # Per run, the last step to read (below max_step): each run's history as far as it had got at some time,
    # as the portal's compare page shows runs "as of" a past time.
    max_steps: dict[str, int] = Field(default_factory=dict, max_length=MAX_RUNS)


def _summary(result: Downsampled) -> dict[str, Any]:
    return {
        "points_in_range": result.points_in_range,
        "non_finite": result.non_finite,
        "downsampled": result.is_downsampled,
        "min_step": result.min_step,
        "max_step": result.max_step,
    }


def _columns(result: Downsampled) -> dict[str, Any]:
    table = result.table
    return {
        "steps": table.column("step").to_pylist(),
        "timestamps": table.column("timestamp").to_pylist(),
        "values": table.column("value").to_pylist(),  # finite: downsample() leaves NaN and inf out
        **_summary(result),
    }


@router.get("/runs/{run_id}/metrics/{key:path}/downsampled", response_model=None)
def downsampled_history(
    run_id: str,
    key: str,
    request: Request,
    tracking: TrackingDep,
    points: int = 1000,
    min_step: int | None = None,
    max_step: int | None = None,
) -> Response | dict[str, Any]:
    """At most ``points`` real points of the history between the steps, each bucket's min and max kept.

    JSON answers columns (``steps``, ``timestamps``, ``values``) and what they stand for
    (``points_in_range``, ``non_finite``, ``downsampled``); Arrow IPC if the client accepts it.
    """
    result = downsample(tracking.metric_history_table(run_id, key), points, min_step=min_step, max_step=max_step)
    if ARROW_STREAM in request.headers.get("accept", ""):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, result.table.schema) as writer:
            writer.write_table(result.table)
        headers = {f"x-lakeops-{k.replace('_', '-')}": str(v).lower() for k, v in _summary(result).items()}
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM, headers=headers)
    return {"key": key, **_columns(result)}


@router.post("/metrics/downsampled")
def downsampled_histories(body: ManyHistories, tracking: TrackingDep) -> dict[str, Any]:
    """One metric of many runs (up to 1,000), each downsampled as ``GET .../downsampled`` does, in one call.

    A run that never logged the key answers an empty series; an unknown run is a 404. ``max_steps`` caps
    each named run's steps (an empty series when its cap is below ``min_step``).
    """
    series = []
    for run_id in dict.fromkeys(body.run_ids):
        history = tracking.metric_history_table(run_id, body.key)  # an unknown run: NotFoundError, a 404
        max_step = body.max_step
        cap = body.max_steps.get(run_id)
        if cap is not None:
            max_step = cap if max_step is None else min(cap, max_step)
            if body.min_step is not None and max_step < body.min_step:
                history = history.slice(0, 0)
                max_step = body.min_step
        result = downsample(history, body.points, min_step=body.min_step, max_step=max_step)
        series.append({"run_id": run_id, **_columns(result)})
    return {"key": body.key, "series": series}
