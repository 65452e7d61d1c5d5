"""Chart-sized reads under ``/api/v1``: a metric's history downsampled to the points a chart can show."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Request, Response

from api.deps import TrackingDep
from api.encoding import JSONBody, RawJSONRoute
from lakeops.downsample import downsample

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)

ARROW_STREAM = "application/vnd.apache.arrow.stream"


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
    summary = {
        "points_in_range": result.points_in_range,
        "non_finite": result.non_finite,
        "downsampled": result.is_downsampled,
        "min_step": result.min_step,
        "max_step": result.max_step,
    }
    table = result.table
    if ARROW_STREAM in request.headers.get("accept", ""):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        headers = {f"x-lakeops-{k.replace('_', '-')}": str(v).lower() for k, v in summary.items()}
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM, headers=headers)
    return {
        "key": key,
        "steps": table.column("step").to_pylist(),
        "timestamps": table.column("timestamp").to_pylist(),
        "values": table.column("value").to_pylist(),  # finite: downsample() leaves NaN and inf out
        **summary,
    }
