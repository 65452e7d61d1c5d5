"""Logged models (MLflow 3): create, finalize, params, tags, delete and search; their metric points are
read from the lake, pruned by model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import BooleanExpression, In

from catalog.tables import LOGGED_MODEL_CHANGES, LOGGED_MODEL_METRICS, TAG_CHANGES
from lakeops.entities import LifecycleStage, LoggedModel, LoggedModelStatus, ModelMetric
from lakeops.errors import InvalidArgumentError
from lakeops.search import compile_logged_model_filter, decode_token, encode_token
from lakeops.stores.epochs import epoch_ints
from lakeops.stores.iceberg import Rows
from lakeops.stores.state import LoggedModelState, TrackingState
from lakeops.tracking.core import ARTIFACT_ROOT, LOGGED_MODEL_TAG, TrackingCore, record_batch, with_changes
from lakeops.tracking.validation import (
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    check_max_results,
    validate_key,
    validate_text,
)

# pyiceberg's pydantic-generated signature for In confuses mypy; this is its documented call form.
_in = cast(Callable[[str, Any], BooleanExpression], In)


def _logged_model_entity(model: LoggedModelState, metrics: list[ModelMetric] | None = None) -> LoggedModel:
    return LoggedModel(
        metrics=metrics or [],
        model_id=model.model_id,
        experiment_id=model.experiment_id,
        name=model.name,
        artifact_location=model.artifact_location,
        source_run_id=model.source_run_id,
        model_type=model.model_type,
        status=LoggedModelStatus(model.status),
        status_message=model.status_message,
        lifecycle_stage=LifecycleStage(model.lifecycle_stage),
        creation_time=model.creation_time,
        last_update_time=model.last_update_time,
        params=dict(model.params),
        tags=dict(model.tags),
    )


class LoggedModelsMixin(TrackingCore):
    """Logged models (MLflow 3): create, finalize, params, tags, metrics, delete, search."""

    def _logged_model_row(self, model: LoggedModelState, operation: str) -> pa.RecordBatch:
        row = {
            "model_id": [model.model_id],
            "experiment_id": [model.experiment_id],
            "name": [model.name],
            "artifact_location": [model.artifact_location],
            "source_run_id": [model.source_run_id],
            "model_type": [model.model_type],
            "status": [model.status],
            "status_message": [model.status_message],
            "params_json": [json.dumps(model.params, sort_keys=True)],
            "lifecycle_stage": [model.lifecycle_stage],
            "created_at": [model.creation_time * 1000],
            **{k: [v] for k, v in self._change(operation).items()},
        }
        return record_batch(LOGGED_MODEL_CHANGES, row)

    def create_logged_model(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        model_type: str | None = None,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> LoggedModel:
        """Create a logged model (status PENDING until its artifacts are uploaded and it is finalized)."""
        model_id = f"m-{uuid.uuid4().hex}"
        clean_params = {
            validate_key("param", k): validate_text("param", v, MAX_PARAM_VALUE_LENGTH)
            for k, v in (params or {}).items()
        }
        clean_tags = {
            validate_key("tag", k): validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in (tags or {}).items()
        }
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            exp = self._experiment(state, experiment_id)
            if source_run_id is not None:
                self._run(state, source_run_id)
            model = LoggedModelState(
                model_id=model_id,
                experiment_id=exp.experiment_id,
                name=name or model_id,
                artifact_location=f"{ARTIFACT_ROOT}/{exp.experiment_id}/models/{model_id}/artifacts",
                source_run_id=source_run_id,
                model_type=model_type,
                status=LoggedModelStatus.PENDING,
                status_message=None,
                params=clean_params,
                lifecycle_stage=LifecycleStage.ACTIVE,
                creation_time=now,
                last_update_time=now,
            )
            rows: Rows = {LOGGED_MODEL_CHANGES.name: self._logged_model_row(model, "create")}
            if clean_tags:
                rows[TAG_CHANGES.name] = self._tag_rows(LOGGED_MODEL_TAG, model_id, clean_tags)
            return rows

        self.store.write(build)
        return self.get_logged_model(model_id)

    def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        """A logged model by id (a deleted one only with ``allow_deleted``), with its metrics.

        Raises:
            NotFoundError: no such model (or it is deleted).
        """
        model = self._logged_model(self.state, model_id, allow_deleted=allow_deleted)
        return _logged_model_entity(model, self._model_metrics([model_id]).get(model_id, []))

    def _model_metrics(self, model_ids: Sequence[str]) -> dict[str, list[ModelMetric]]:
        """The metric points logged with each of ``model_ids`` (read from the lake, pruned by model)."""
        if not model_ids:
            return {}
        wanted = pa.array(list(model_ids), pa.string())
        rows = self.store.scan_with_pending(
            LOGGED_MODEL_METRICS.name,
            _in("model_id", list(model_ids)),
            lambda t: pc.is_in(t["model_id"], value_set=wanted),
        )
        found: dict[str, list[ModelMetric]] = {}
        if rows.num_rows == 0:
            return found
        rows = rows.sort_by([("model_id", "ascending"), ("key", "ascending"), ("step", "ascending")])
        data = rows.select(["model_id", "run_id", "key", "value", "step", "dataset_name", "dataset_digest"]).to_pydict()
        stamps = epoch_ints(rows.column("recorded_at"), "ms")
        for i, model_id in enumerate(data["model_id"]):
            found.setdefault(model_id, []).append(
                ModelMetric(
                    key=data["key"][i],
                    value=data["value"][i],
                    timestamp=stamps[i] or 0,
                    step=data["step"][i],
                    run_id=data["run_id"][i],
                    model_id=model_id,
                    dataset_name=data["dataset_name"][i],
                    dataset_digest=data["dataset_digest"][i],
                )
            )
        return found

    def _update_logged_model(self, model_id: str, operation: str, **changes: Any) -> LoggedModel:
        def build(state: TrackingState) -> Rows:
            model = self._logged_model(state, model_id)
            return {LOGGED_MODEL_CHANGES.name: self._logged_model_row(with_changes(model, **changes), operation)}

        self.store.write(build)
        return self.get_logged_model(model_id, allow_deleted=True)

    def finalize_logged_model(self, model_id: str, status: LoggedModelStatus | str) -> LoggedModel:
        """Mark a logged model READY or FAILED."""
        try:
            status = LoggedModelStatus(status)
        except ValueError as exc:
            raise InvalidArgumentError(f"Invalid logged model status {status!r}") from exc
        return self._update_logged_model(model_id, "finalize", status=status.value)

    def delete_logged_model(self, model_id: str) -> None:
        """Move a logged model to the trash."""
        self._update_logged_model(model_id, "delete", lifecycle_stage=LifecycleStage.DELETED)

    def log_logged_model_params(self, model_id: str, params: Mapping[str, str]) -> LoggedModel:
        """Add params to a logged model (immutable, like run params)."""
        clean = {validate_key("param", k): validate_text("param", v, MAX_PARAM_VALUE_LENGTH) for k, v in params.items()}
        model = self._logged_model(self.state, model_id)
        conflicts = {k for k, v in clean.items() if k in model.params and model.params[k] != v}
        if conflicts:
            raise InvalidArgumentError(f"Changing param values is not allowed: {sorted(conflicts)}")
        return self._update_logged_model(model_id, "log_params", params={**model.params, **clean})

    def set_logged_model_tags(self, model_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on a logged model."""
        clean = {validate_key("tag", k): validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in tags.items()}
        self._write_tags(LOGGED_MODEL_TAG, model_id, clean)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        """Remove one tag from a logged model."""
        self._write_tags(LOGGED_MODEL_TAG, model_id, {key: None})

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> tuple[list[LoggedModel], str | None]:
        """Active logged models of the experiments matching a filter, newest first."""
        check_max_results(max_results)
        predicate = compile_logged_model_filter(filter_string)
        wanted = {str(e) for e in experiment_ids}
        found = [
            m
            for m in list(self.state.logged_models.values())
            if m.experiment_id in wanted and m.lifecycle_stage == LifecycleStage.ACTIVE and predicate(m)
        ]
        found.sort(key=lambda m: (-m.creation_time, m.model_id))
        offset = int(decode_token(page_token).get("offset", 0))
        page = found[offset : offset + max_results]
        nxt = encode_token({"offset": offset + max_results}) if offset + max_results < len(found) else None
        metrics = self._model_metrics([m.model_id for m in page])
        return [_logged_model_entity(m, metrics.get(m.model_id, [])) for m in page], nxt
