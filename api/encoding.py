"""JSON encoding shared by the native and MLflow routes.

Non-finite floats are written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``,
as protobuf's JSON mapping (and so MLflow's server) does; plain JSON has no literal for them.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from lakeops.entities import Experiment, LoggedModel, Metric, Run


class RawJSONRoute(APIRoute):
    """A route whose handler's dict is encoded once, by ``JSONBody``, in the handler's thread.

    FastAPI otherwise runs a second full pass over every response before encoding it (pydantic's
    ``dump_python`` for an inferred ``dict[str, Any]`` model, or ``jsonable_encoder`` without one),
    on the event loop: measured with py-spy at 20-60% of a 1,000-run search.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model"] = None
        status = kwargs.get("status_code") or 200
        wrapped: Callable[..., Any]
        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def wrapped(*args: Any, **kw: Any) -> Any:
                return _as_response(await endpoint(*args, **kw), status)

        else:

            @functools.wraps(endpoint)
            def wrapped(*args: Any, **kw: Any) -> Any:
                return _as_response(endpoint(*args, **kw), status)

        super().__init__(path, wrapped, **kwargs)


def _as_response(result: Any, status: int) -> Any:
    return JSONBody(result, status_code=status) if isinstance(result, dict | list) else result


def json_float(value: float) -> float | str:
    """A float JSON can carry."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


class JSONBody(JSONResponse):
    """A JSON response; floats must already be finite or encoded with ``json_float``."""

    def render(self, content: Any) -> bytes:
        # orjson encodes a 1,000-run search page (~1.2 MB) in ~3 ms where the json module takes ~12 ms.
        # What it refuses (integers beyond 64 bits) falls back to the json module, same output.
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def metric_json(metric: Metric) -> dict[str, Any]:
    """A metric point."""
    return {"key": metric.key, "value": json_float(metric.value), "timestamp": metric.timestamp, "step": metric.step}


def history_json(key: str, page: pa.Table) -> list[dict[str, Any]]:
    """Metric points straight from Arrow columns (no per-point objects: pages hold 25,000 points)."""
    values = page.column("value").to_pylist()
    if not pc.all(pc.is_finite(page.column("value"))).as_py():
        values = [json_float(v) for v in values]
    return [
        {"key": key, "value": v, "timestamp": t, "step": s}
        for v, t, s in zip(values, page.column("timestamp").to_pylist(), page.column("step").to_pylist(), strict=True)
    ]


def kv(mapping: dict[str, str]) -> list[dict[str, str]]:
    """``{"a": "1"}`` as MLflow's ``[{"key": "a", "value": "1"}]``."""
    return [{"key": k, "value": v} for k, v in mapping.items()]


def mlflow_experiment(exp: Experiment) -> dict[str, Any]:
    """An experiment in MLflow's JSON shape."""
    return {
        "experiment_id": exp.experiment_id,
        "name": exp.name,
        "artifact_location": exp.artifact_location or "",
        "lifecycle_stage": exp.lifecycle_stage.value,
        "last_update_time": exp.last_update_time,
        "creation_time": exp.creation_time,
        "tags": kv(exp.tags),
    }


def mlflow_run_info(run: Run) -> dict[str, Any]:
    """A run's info in MLflow's JSON shape."""
    info = run.info
    out: dict[str, Any] = {
        "run_id": info.run_id,
        "run_uuid": info.run_id,
        "run_name": info.run_name or "",
        "experiment_id": info.experiment_id,
        "user_id": info.user_id or "",
        "status": info.status.value,
        "start_time": info.start_time,
        "artifact_uri": info.artifact_uri or "",
        "lifecycle_stage": info.lifecycle_stage.value,
    }
    if info.end_time is not None:
        out["end_time"] = info.end_time
    return out


def mlflow_run(run: Run) -> dict[str, Any]:
    """A run in MLflow's JSON shape."""
    return {
        "info": mlflow_run_info(run),
        "data": {
            "metrics": [metric_json(m) for m in run.metrics.values()],
            "params": kv(run.params),
            "tags": kv(run.tags),
        },
        "inputs": mlflow_run_inputs(run.inputs),
        "outputs": {"model_outputs": [{"model_id": o["model_id"], "step": o.get("step") or 0} for o in run.outputs]},
    }


def mlflow_run_inputs(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's dataset and model inputs in MLflow's JSON shape."""
    datasets = []
    models = []
    for link in inputs:
        if link.get("kind") == "model":
            models.append({"model_id": link["model_id"]})
            continue
        dataset = {"name": link["dataset_name"], "digest": link["dataset_digest"]}
        for src, dst in (
            ("source_type", "source_type"),
            ("source", "source"),
            ("dataset_schema", "schema"),
            ("profile", "profile"),
        ):
            if link.get(src) is not None:
                dataset[dst] = link[src]
        tags = json.loads(link.get("tags_json") or "{}")
        datasets.append({"tags": kv(tags), "dataset": dataset})
    return {"dataset_inputs": datasets, "model_inputs": models}


_MODEL_STATUS = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}


def mlflow_logged_model(model: LoggedModel) -> dict[str, Any]:
    """A logged model in MLflow's JSON shape."""
    info: dict[str, Any] = {
        "model_id": model.model_id,
        "experiment_id": model.experiment_id,
        "name": model.name,
        "artifact_uri": model.artifact_location or "",
        "creation_timestamp_ms": model.creation_time,
        "last_updated_timestamp_ms": model.last_update_time,
        "status": _MODEL_STATUS[model.status.value],
        "tags": kv(model.tags),
    }
    for key in ("model_type", "source_run_id", "status_message"):
        value = getattr(model, key)
        if value is not None:
            info[key] = value
    metrics = [
        {
            "key": m.key,
            "value": json_float(m.value),
            "timestamp": m.timestamp,
            "step": m.step,
            "run_id": m.run_id,
            "model_id": m.model_id,
            **{k: v for k, v in (("dataset_name", m.dataset_name), ("dataset_digest", m.dataset_digest)) if v},
        }
        for m in model.metrics
    ]
    return {"info": info, "data": {"params": kv(model.params), "metrics": metrics}}


def native_run(run: Run) -> dict[str, Any]:
    """A run in the native API's JSON shape (built by hand: ``dataclasses.asdict`` deep-copies and
    took 190 ms for a 1,000-run page)."""
    info = run.info
    return {
        "info": {
            "run_id": info.run_id,
            "experiment_id": info.experiment_id,
            "run_name": info.run_name,
            "user_id": info.user_id,
            "status": info.status.value,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "lifecycle_stage": info.lifecycle_stage.value,
            "artifact_uri": info.artifact_uri,
            "parent_run_id": info.parent_run_id,
        },
        "params": run.params,
        "metrics": {k: metric_json(m) for k, m in run.metrics.items()},
        "tags": run.tags,
        "inputs": run.inputs,
        "outputs": run.outputs,
    }
