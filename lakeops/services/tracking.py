"""Tracking: experiments, runs, params, metrics and tags, with MLflow's rules.

Validation happens here, before anything is written; rules that depend on stored state
(unique experiment names, immutable params, writes only to active runs) are checked inside
the store's write lock, so a refused write stores nothing and two racing writers cannot both
pass a check.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import BooleanExpression, In

from catalog.tables import (
    EXPERIMENT_CHANGES,
    LOGGED_MODEL_CHANGES,
    LOGGED_MODEL_METRICS,
    METRICS,
    PARAMS,
    RUN_CHANGES,
    RUN_IO,
    TAG_CHANGES,
    TableDef,
)
from lakeops.actor import ActorField
from lakeops.datasets.run_io import mlflow_io_rows
from lakeops.entities import (
    Experiment,
    ExperimentPage,
    LifecycleStage,
    LoggedModel,
    LoggedModelStatus,
    Metric,
    MetricHistoryPage,
    ModelMetric,
    Run,
    RunInfo,
    RunPage,
    RunStatus,
    ViewType,
)
from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.lake import default_actor
from lakeops.search import (
    PinnedResults,
    RankedRuns,
    RunGroup,
    compile_experiment_filter,
    compile_logged_model_filter,
    decode_token,
    encode_token,
    group_run_index,
    paginate,
    parse_filter,
    parse_group_by,
    parse_order_by,
    search_run_index,
    sort_experiments,
    validate_run_filter,
)
from lakeops.services.runs_as_of import PastRuns, RunsAsOf, as_of_ms
from lakeops.stores.epochs import epoch_ints
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.run_index import RunIndex, unpack_latest
from lakeops.stores.state import ExperimentState, LoggedModelState, RunState, TrackingState

if TYPE_CHECKING:
    from lakeops.sql import SqlEngine

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_RESULTS_LIMIT = 50_000
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

ARTIFACT_ROOT = "mlflow-artifacts:"
LOGGED_MODEL_TAG = "logged_model"
# pyiceberg's pydantic-generated signature for In confuses mypy; this is its documented call form.
_in = cast(Callable[[str, Any], BooleanExpression], In)
# (model_id, dataset_name, dataset_digest) of a metric point; model_id None for a run-only point.
MetricModelLink = tuple[str | None, str | None, str | None]

# Timestamps are stored as microseconds and read back as datetimes: years 1 to 9999.
MIN_TIMESTAMP_MS = -62_135_596_800_000
MAX_TIMESTAMP_MS = 253_402_300_799_999

_KEY = re.compile(r"^[/\w.\- :]+$")


def validate_key(kind: str, key: object) -> str:
    """MLflow's rules for metric, param and tag names."""
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"Invalid {kind} name: must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgumentError(f"Invalid {kind} name {key[:40]!r}...: longer than {MAX_KEY_LENGTH} characters")
    if not _KEY.match(key):
        raise InvalidArgumentError(
            f"Invalid {kind} name {key!r}: only alphanumerics, underscores, dashes, periods, spaces, colons "
            "and slashes are allowed"
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidArgumentError(f"Invalid {kind} name {key!r}: must be a relative path without '..'")
    return key


def _validate_text(kind: str, value: object, limit: int) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        value = str(value)
    if len(value) > limit:
        raise InvalidArgumentError(f"Invalid {kind} value: {len(value)} characters, at most {limit} allowed")
    return value


def validate_metric(
    key: object, value: object, timestamp: object, step: object, *, known_keys: set[str] | None = None
) -> tuple[str, float, int, int]:
    """A metric point, checked: a name, a real number (NaN and +-inf allowed), integer time and step.

    ``known_keys`` remembers names already checked, so a 1,000-point batch checks each name once.
    """
    if known_keys is None or key not in known_keys:
        validate_key("metric", key)
        if known_keys is not None:
            known_keys.add(key)  # type: ignore[arg-type]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"Invalid value {value!r} for metric {key!r}: must be a number")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise InvalidArgumentError(f"Invalid timestamp {timestamp!r} for metric {key!r}: must be an integer (ms)")
    if not MIN_TIMESTAMP_MS <= timestamp <= MAX_TIMESTAMP_MS:
        raise InvalidArgumentError(
            f"Invalid timestamp {timestamp!r} for metric {key!r}: must be milliseconds since 1970 between "
            f"{MIN_TIMESTAMP_MS} and {MAX_TIMESTAMP_MS} (years 1 to 9999)"
        )
    if isinstance(step, bool) or not isinstance(step, int):
        raise InvalidArgumentError(f"Invalid step {step!r} for metric {key!r}: must be an integer")
    if not -(2**63) <= step < 2**63:
        raise InvalidArgumentError(f"Invalid step {step!r} for metric {key!r}: must fit in 64 bits")
    return key, float(value), timestamp, step  # type: ignore[return-value]


def _check_time_ms(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"Invalid {name} {value!r}: must be an integer (ms)")
    if not MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS:
        raise InvalidArgumentError(
            f"Invalid {name} {value!r}: must be milliseconds since 1970 between {MIN_TIMESTAMP_MS} and "
            f"{MAX_TIMESTAMP_MS} (years 1 to 9999)"
        )


def _new_experiment_id() -> str:
    # Numeric, like MLflow's ids, and random so that replicas never collide.
    return str(uuid.uuid4().int >> 68)


def _batch(table: TableDef, columns: Mapping[str, Sequence[Any] | pa.Array]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(dict(columns), schema=table.arrow_schema)


class TrackingService:
    """The tracking API: what the REST layer, the CLI and the Python client call."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(
        self,
        store: IcebergStore,
        *,
        now_ms: Callable[[], int] | None = None,
        actor: str | None = None,
        sql: Callable[[], SqlEngine] | None = None,
    ) -> None:
        self.store = store
        # Searches "as of" a past time read the lake's snapshots through the SQL engine (built on first use).
        self._past = RunsAsOf(sql) if sql is not None else None
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.actor = actor or default_actor()
        self._pins = PinnedResults()
        self._warming = threading.Lock()  # held while search columns are built in the background
        # Artifacts are served by lakeops' own artifact store; the URI scheme is MLflow's for that.
        self._artifact_root = ARTIFACT_ROOT
        if DEFAULT_EXPERIMENT_ID not in store.state.experiments:
            self._create_experiment(DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, None, {}, only_if_missing=True)

    @property
    def state(self) -> TrackingState:
        """The current state (read under no lock: values are replaced, never half-written)."""
        return self.store.state

    # -- change rows ---------------------------------------------------------------------------

    def _change(self, operation: str) -> dict[str, Any]:
        return {
            "changed_at": self._now_ms() * 1000,
            "actor": self.actor,
            "operation": operation,
            "writer_id": self.store.writer_id,
            "wal_seq": 0,  # stamped with the real log position by the store
        }

    def _experiment_row(self, exp: ExperimentState, operation: str) -> Rows:
        change = self._change(operation)
        row = {
            "experiment_id": [exp.experiment_id],
            "name": [exp.name],
            "artifact_location": [exp.artifact_location],
            "lifecycle_stage": [exp.lifecycle_stage],
            "created_at": [exp.creation_time * 1000],
            **{k: [v] for k, v in change.items()},
        }
        return {EXPERIMENT_CHANGES.name: _batch(EXPERIMENT_CHANGES, row)}

    def _run_row(self, run: RunState, operation: str) -> pa.RecordBatch:
        change = self._change(operation)
        row = {
            "run_id": [run.run_id],
            "experiment_id": [run.experiment_id],
            "run_name": [run.run_name],
            "user_id": [run.user_id],
            "status": [run.status],
            "started_at": [None if run.start_time is None else run.start_time * 1000],
            "ended_at": [None if run.end_time is None else run.end_time * 1000],
            "lifecycle_stage": [run.lifecycle_stage],
            "artifact_uri": [run.artifact_uri],
            "parent_run_id": [run.parent_run_id],
            **{k: [v] for k, v in change.items()},
        }
        return _batch(RUN_CHANGES, row)

    def _tag_rows(self, entity_type: str, entity_id: str, tags: Mapping[str, str | None]) -> pa.RecordBatch:
        change = self._change("delete_tag" if all(v is None for v in tags.values()) else "set_tag")
        n = len(tags)
        return _batch(
            TAG_CHANGES,
            {
                "entity_type": [entity_type] * n,
                "entity_id": [entity_id] * n,
                "key": list(tags),
                "value": list(tags.values()),
                "is_deleted": [v is None for v in tags.values()],
                **{k: [v] * n for k, v in change.items()},
            },
        )

    # -- experiments -----------------------------------------------------------------------------

    def create_experiment(
        self, name: str, *, artifact_location: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        """Create an experiment with a unique name; returns its id."""
        return self._create_experiment(_new_experiment_id(), name, artifact_location, dict(tags or {}))

    def _create_experiment(
        self,
        experiment_id: str,
        name: str,
        artifact_location: str | None,
        tags: dict[str, str],
        *,
        only_if_missing: bool = False,
    ) -> str:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("Invalid experiment name: must be a non-empty string")
        if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
            raise InvalidArgumentError(f"Invalid experiment name: longer than {MAX_EXPERIMENT_NAME_LENGTH} characters")
        clean_tags = {validate_key("tag", k): _validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in tags.items()}
        artifact_location = absolute_location(artifact_location) if artifact_location else None
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            if only_if_missing and experiment_id in state.experiments:
                return {}
            if name in state.experiment_ids_by_name:
                raise AlreadyExistsError(f"Experiment '{name}' already exists.", details={"name": name})
            exp = ExperimentState(
                experiment_id=experiment_id,
                name=name,
                artifact_location=artifact_location or f"{self._artifact_root}/{experiment_id}",
                lifecycle_stage=LifecycleStage.ACTIVE,
                creation_time=now,
                last_update_time=now,
            )
            rows = self._experiment_row(exp, "create")
            if clean_tags:
                rows[TAG_CHANGES.name] = self._tag_rows("experiment", experiment_id, clean_tags)
            return rows

        self.store.write(build)
        return experiment_id

    def _experiment(self, state: TrackingState, experiment_id: str) -> ExperimentState:
        exp = state.experiments.get(str(experiment_id))
        if exp is None:
            raise NotFoundError(
                f"No Experiment with id={experiment_id} exists", details={"experiment_id": experiment_id}
            )
        return exp

    def get_experiment(self, experiment_id: str) -> Experiment:
        """An experiment by id."""
        return _experiment_entity(self._experiment(self.state, experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment:
        """An experiment by its unique name."""
        experiment_id = self.state.experiment_ids_by_name.get(name)
        if experiment_id is None:
            raise NotFoundError(f"Could not find experiment with name '{name}'", details={"name": name})
        return self.get_experiment(experiment_id)

    def _update_experiment(
        self, experiment_id: str, operation: str, change: Callable[[ExperimentState, TrackingState], ExperimentState]
    ) -> None:
        def build(state: TrackingState) -> Rows:
            exp = self._experiment(state, experiment_id)
            return self._experiment_row(change(exp, state), operation)

        self.store.write(build)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        """Give an experiment a new unique name."""
        if not isinstance(new_name, str) or not new_name.strip():
            raise InvalidArgumentError("Invalid experiment name: must be a non-empty string")

        def change(exp: ExperimentState, state: TrackingState) -> ExperimentState:
            if exp.lifecycle_stage != LifecycleStage.ACTIVE:
                raise InvalidArgumentError("Cannot rename a deleted experiment")
            if new_name != exp.name and new_name in state.experiment_ids_by_name:
                raise AlreadyExistsError(f"Experiment '{new_name}' already exists.", details={"name": new_name})
            renamed: ExperimentState = _replace(exp, name=new_name)
            return renamed

        self._update_experiment(experiment_id, "rename", change)

    def delete_experiment(self, experiment_id: str) -> None:
        """Move an experiment (and, for searches, its runs) to the trash."""
        if str(experiment_id) == DEFAULT_EXPERIMENT_ID:
            raise InvalidArgumentError("Cannot delete the default experiment '0'.")
        self._update_experiment(
            experiment_id, "delete", lambda e, _s: _replace(e, lifecycle_stage=LifecycleStage.DELETED)
        )

    def restore_experiment(self, experiment_id: str) -> None:
        """Bring a deleted experiment back."""
        self._update_experiment(
            experiment_id, "restore", lambda e, _s: _replace(e, lifecycle_stage=LifecycleStage.ACTIVE)
        )

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        """Set one tag on an experiment."""
        self._write_tags(
            "experiment",
            str(experiment_id),
            {validate_key("tag", key): _validate_text("tag", value, MAX_TAG_VALUE_LENGTH)},
        )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Remove one tag from an experiment."""
        self._write_tags("experiment", str(experiment_id), {key: None})

    def search_experiments(
        self,
        *,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> ExperimentPage:
        """Experiments matching MLflow's experiment filter, ordered and paged."""
        _check_max_results(max_results)
        predicate = compile_experiment_filter(filter_string)
        token = decode_token(page_token)
        offset = int(token.get("offset", 0))
        matches = [
            e for e in list(self.state.experiments.values()) if view_type.admits(e.lifecycle_stage) and predicate(e)
        ]
        ordered = sort_experiments(matches, order_by)
        page = ordered[offset : offset + max_results]
        nxt = encode_token({"offset": offset + max_results}) if offset + max_results < len(ordered) else None
        return ExperimentPage(experiments=[_experiment_entity(e) for e in page], next_page_token=nxt)

    # -- runs ------------------------------------------------------------------------------------

    def _run(self, state: TrackingState, run_id: str) -> RunState:
        run = state.runs.get(run_id)
        if run is None:
            raise NotFoundError(f"Run with id={run_id} not found", details={"run_id": run_id})
        return run

    def _active_run(self, state: TrackingState, run_id: str) -> RunState:
        run = self._run(state, run_id)
        if run.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidArgumentError(
                f"The run {run_id} must be in the 'active' state. Current state is {run.lifecycle_stage}."
            )
        return run

    def create_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        *,
        run_name: str | None = None,
        user_id: str | None = None,
        start_time: int | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Start a run in an active experiment."""
        clean_tags = {
            validate_key("tag", k): _validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in (tags or {}).items()
        }
        parent_run_id = parent_run_id or clean_tags.get(PARENT_RUN_TAG)
        run_name = run_name or clean_tags.get(RUN_NAME_TAG) or None
        run_id = run_id or uuid.uuid4().hex
        if start_time is not None:
            _check_time_ms("start_time", start_time)
        start_time = self._now_ms() if start_time is None else start_time
        run_name = run_name or f"run-{run_id[:8]}"
        clean_tags[RUN_NAME_TAG] = run_name
        if parent_run_id:
            clean_tags[PARENT_RUN_TAG] = parent_run_id

        def build(state: TrackingState) -> Rows:
            exp = self._experiment(state, experiment_id)
            if exp.lifecycle_stage != LifecycleStage.ACTIVE:
                raise InvalidArgumentError(f"Experiment {experiment_id} is deleted; restore it before creating runs")
            if run_id in state.runs:
                raise AlreadyExistsError(f"Run {run_id} already exists")
            if parent_run_id and parent_run_id not in state.runs:
                raise NotFoundError(f"Parent run with id={parent_run_id} not found")
            run = RunState(
                run_id=run_id,
                experiment_id=exp.experiment_id,
                run_name=run_name,
                user_id=user_id,
                status=RunStatus.RUNNING,
                start_time=start_time,
                end_time=None,
                lifecycle_stage=LifecycleStage.ACTIVE,
                artifact_root=f"{exp.artifact_location}/{run_id}/artifacts",
                parent_run_id=parent_run_id,
            )
            return {
                RUN_CHANGES.name: self._run_row(run, "create"),
                TAG_CHANGES.name: self._tag_rows("run", run_id, clean_tags),
            }

        self.store.write(build)
        return self.get_run(run_id)

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        """Change a run's status, end time or name."""
        if status is not None:
            try:
                status = RunStatus(status)
            except ValueError as exc:
                raise InvalidArgumentError(
                    f"Invalid run status {status!r}; use one of {[s.value for s in RunStatus]}"
                ) from exc
        if end_time is not None:
            _check_time_ms("end_time", end_time)

        def build(state: TrackingState) -> Rows:
            run = self._active_run(state, run_id)
            new = _replace(
                run,
                status=status or run.status,
                end_time=end_time if end_time is not None else run.end_time,
                run_name=run_name or run.run_name,
            )
            rows: Rows = {RUN_CHANGES.name: self._run_row(new, "update")}
            if run_name and run_name != run.run_name:
                rows[TAG_CHANGES.name] = self._tag_rows("run", run_id, {RUN_NAME_TAG: run_name})
            return rows

        self.store.write(build)
        return self.get_run(run_id).info

    def delete_run(self, run_id: str) -> None:
        """Move a run to the trash."""
        self._set_run_stage(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        """Bring a deleted run back."""
        self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    def _set_run_stage(self, run_id: str, stage: LifecycleStage) -> None:
        def build(state: TrackingState) -> Rows:
            run = self._run(state, run_id)
            operation = "delete" if stage == LifecycleStage.DELETED else "restore"
            return {RUN_CHANGES.name: self._run_row(_replace(run, lifecycle_stage=stage), operation)}

        self.store.write(build)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Set one tag on a run (tags are mutable)."""
        self.log_batch(run_id, tags={key: value})

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove one tag from a run."""
        self._write_tags("run", run_id, {key: None})

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        """Log one param. Params are immutable: the same value again is accepted, another is an error."""
        self.log_batch(run_id, params={key: value})

    def log_metric(self, run_id: str, key: str, value: float, *, timestamp: int | None = None, step: int = 0) -> None:
        """Log one metric point."""
        self.log_batch(run_id, metrics=[(key, value, self._now_ms() if timestamp is None else timestamp, step)])

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Iterable[tuple[str, float, int, int] | Metric] = (),
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        tags: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        metric_models: Sequence[MetricModelLink] = (),
    ) -> None:
        """Log metrics, params and tags of one run atomically: all are stored, or none.

        ``metric_models``, when given, holds one ``(model_id, dataset_name, dataset_digest)`` per
        metric (all None for a point of the run alone): a point with a model_id also shows on that
        logged model, as MLflow 3 does.

        Raises:
            NotFoundError: no such run, or no such logged model.
            InvalidArgumentError: a bad key or value, a param changed.
        """
        seen: set[str] = set()
        points = [
            validate_metric(m.key, m.value, m.timestamp, m.step, known_keys=seen)
            if isinstance(m, Metric)
            else validate_metric(*m, known_keys=seen)
            for m in metrics
        ]
        linked = [(p, link) for p, link in zip(points, metric_models, strict=False) if link[0]]
        param_items = list(params.items()) if isinstance(params, Mapping) else list(params)
        new_params: dict[str, str] = {}
        for key, value in param_items:
            validate_key("param", key)
            text = _validate_text("param", value, MAX_PARAM_VALUE_LENGTH)
            if key in new_params and new_params[key] != text:
                raise InvalidArgumentError(
                    f"Duplicate parameter {key!r} in the batch with different values: {new_params[key]!r}, {text!r}"
                )
            new_params[key] = text
        tag_items = list(tags.items()) if isinstance(tags, Mapping) else list(tags)
        new_tags = {validate_key("tag", k): _validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in tag_items}
        metric_batch = _metric_batch(run_id, points) if points else None
        now_us = self._now_ms() * 1000

        def build(state: TrackingState) -> Rows:
            run = self._active_run(state, run_id)
            rows: Rows = {}
            fresh: dict[str, str] = {}
            for key, value in new_params.items():
                old = run.params.get(key)
                if old is None:
                    fresh[key] = value
                elif old != value:
                    raise InvalidArgumentError(
                        f"Changing param values is not allowed. Param with key='{key}' was already logged "
                        f"with value='{old}' for run ID='{run_id}'. Attempted logging new value '{value}'.",
                        details={"key": key, "old_value": old, "new_value": value},
                    )
            if fresh:
                rows[PARAMS.name] = _batch(
                    PARAMS,
                    {
                        "run_id": [run_id] * len(fresh),
                        "key": list(fresh),
                        "value": list(fresh.values()),
                        "logged_at": [now_us] * len(fresh),
                    },
                )
            if new_tags:
                rows[TAG_CHANGES.name] = self._tag_rows("run", run_id, new_tags)
            if metric_batch is not None:
                rows[METRICS.name] = metric_batch
            if linked:
                for _point, (model_id, _n, _d) in linked:
                    self._logged_model(state, str(model_id))
                rows[LOGGED_MODEL_METRICS.name] = _model_metric_batch(run_id, linked)
            return rows

        self.store.write(build)

    def log_metrics_table(self, points: pa.Table) -> int:
        """Bulk-log metric points of any number of runs from an Arrow table.

        Columns: ``run_id`` (string), ``key`` (string), ``value`` (float), ``timestamp`` (int ms),
        and optionally ``step`` (int, default 0). Returns the number of points stored.
        """
        batch = _metrics_from_arrow(points)
        run_ids = pc.unique(batch.column("run_id")).to_pylist()
        for key in pc.unique(batch.column("key")).to_pylist():
            validate_key("metric", key)

        def build(state: TrackingState) -> Rows:
            for run_id in run_ids:
                self._active_run(state, run_id)
            return {METRICS.name: batch}

        self.store.write(build)
        return int(batch.num_rows)

    # -- inputs, outputs and logged models -------------------------------------------------------

    def log_inputs(
        self, run_id: str, *, datasets: Iterable[Mapping[str, Any]] = (), model_ids: Iterable[str] = ()
    ) -> None:
        """Link datasets (MLflow's DatasetInput: name, digest, source_type, source, schema, profile, tags)
        and logged models to a run as its inputs. The same link twice is one link."""
        datasets = [dict(d) for d in datasets]
        model_ids = [str(m) for m in model_ids]
        rows: list[dict[str, Any]] = []
        for d in datasets:
            if not d.get("name") or not d.get("digest"):
                raise InvalidArgumentError("A dataset input needs a name and a digest")
            rows.append(
                {
                    "kind": "dataset",
                    "dataset_name": str(d["name"]),
                    "dataset_digest": str(d["digest"]),
                    "source_type": d.get("source_type"),
                    "source": d.get("source"),
                    "dataset_schema": d.get("schema"),
                    "profile": d.get("profile"),
                    "tags_json": json.dumps(dict(d.get("tags") or {}), sort_keys=True),
                }
            )
        rows.extend({"kind": "model", "model_id": m} for m in model_ids)
        at_us = self._now_ms() * 1000

        def lineage_rows(state: TrackingState) -> Rows:
            # The same inputs land in the dataset tables and the lineage graph (lakeops/datasets/run_io.py).
            return mlflow_io_rows(
                state, run_id, datasets=datasets, model_inputs=model_ids, actor=self.actor, at_us=at_us
            )

        self._write_io(run_id, "input", rows, extra=lineage_rows)

    def log_outputs(self, run_id: str, models: Iterable[tuple[str, int]]) -> None:
        """Record logged models (with the step they were logged at) as outputs of a run."""
        models = list(models)
        at_us = self._now_ms() * 1000

        def lineage_rows(state: TrackingState) -> Rows:
            outputs = [m for m, _step in models]
            return mlflow_io_rows(state, run_id, model_outputs=outputs, actor=self.actor, at_us=at_us)

        links = [{"kind": "model", "model_id": m, "step": step} for m, step in models]
        self._write_io(run_id, "output", links, extra=lineage_rows)

    def _write_io(
        self,
        run_id: str,
        direction: str,
        links: list[dict[str, Any]],
        *,
        extra: Callable[[TrackingState], Rows] | None = None,
    ) -> None:
        if not links:
            return
        now_us = self._now_ms() * 1000
        names = [f.name for f in RUN_IO.arrow_schema]
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for link in links:
            full = {"run_id": run_id, "direction": direction, "logged_at": now_us, **link}
            for n in names:
                columns[n].append(full.get(n))

        def build(state: TrackingState) -> Rows:
            self._active_run(state, run_id)
            for link in links:
                if link.get("model_id") and link["model_id"] not in state.logged_models:
                    raise NotFoundError(f"Logged model {link['model_id']} not found")
            return {RUN_IO.name: _batch(RUN_IO, columns), **(extra(state) if extra is not None else {})}

        self.store.write(build)

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
        return _batch(LOGGED_MODEL_CHANGES, row)

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
            validate_key("param", k): _validate_text("param", v, MAX_PARAM_VALUE_LENGTH)
            for k, v in (params or {}).items()
        }
        clean_tags = {
            validate_key("tag", k): _validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in (tags or {}).items()
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

    def _logged_model(self, state: TrackingState, model_id: str, *, allow_deleted: bool = False) -> LoggedModelState:
        """A logged model; a deleted one is not found (as on an MLflow server) unless ``allow_deleted``."""
        model = state.logged_models.get(model_id)
        if model is None or (not allow_deleted and model.lifecycle_stage != LifecycleStage.ACTIVE):
            raise NotFoundError(f"Logged model with ID '{model_id}' not found", details={"model_id": model_id})
        return model

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
            return {LOGGED_MODEL_CHANGES.name: self._logged_model_row(_replace(model, **changes), operation)}

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
        clean = {
            validate_key("param", k): _validate_text("param", v, MAX_PARAM_VALUE_LENGTH) for k, v in params.items()
        }
        model = self._logged_model(self.state, model_id)
        conflicts = {k for k, v in clean.items() if k in model.params and model.params[k] != v}
        if conflicts:
            raise InvalidArgumentError(f"Changing param values is not allowed: {sorted(conflicts)}")
        return self._update_logged_model(model_id, "log_params", params={**model.params, **clean})

    def set_logged_model_tags(self, model_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on a logged model."""
        clean = {validate_key("tag", k): _validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in tags.items()}
        self._write_tags(LOGGED_MODEL_TAG, model_id, clean)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        """Remove one tag from a logged model."""
        self._write_tags(LOGGED_MODEL_TAG, model_id, {key: None})

    def _write_tags(self, entity_type: str, entity_id: str, tags: Mapping[str, str | None]) -> None:
        """Set (value) or delete (None) tags of an experiment, run or logged model; deleting a missing tag fails."""
        lookup: Callable[[TrackingState, str], Any] = {
            "experiment": self._experiment,
            "run": self._active_run,
            LOGGED_MODEL_TAG: self._logged_model,
        }[entity_type]

        def build(state: TrackingState) -> Rows:
            entity = lookup(state, entity_id)
            for key, value in tags.items():
                if value is None and key not in entity.tags:
                    raise NotFoundError(f"No tag with name: {key} in {entity_type} with id {entity_id}")
            return {TAG_CHANGES.name: self._tag_rows(entity_type, entity_id, tags)} if tags else {}

        self.store.write(build)

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> tuple[list[LoggedModel], str | None]:
        """Active logged models of the experiments matching a filter, newest first."""
        _check_max_results(max_results)
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

    # -- reads -----------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        """A run with its params, latest metrics and tags."""
        return _run_entity(self._run(self.state, run_id))

    def get_metric_history(
        self, run_id: str, key: str, *, max_results: int | None = None, page_token: str | None = None
    ) -> MetricHistoryPage:
        """Every point of one metric, ordered by step then timestamp, optionally paged."""
        page, nxt = self.metric_history_page(run_id, key, max_results=max_results, page_token=page_token)
        metrics = [
            Metric(key=key, value=v, timestamp=t, step=st)
            for v, t, st in zip(
                page.column("value").to_pylist(),
                page.column("timestamp").to_pylist(),
                page.column("step").to_pylist(),
                strict=True,
            )
        ]
        return MetricHistoryPage(metrics=metrics, next_page_token=nxt)

    def metric_history_page(
        self, run_id: str, key: str, *, max_results: int | None = None, page_token: str | None = None
    ) -> tuple[pa.Table, str | None]:
        """One page of a metric's history as Arrow (``step``, ``timestamp``, ``value``) and the next token."""
        if max_results is not None:
            _check_max_results(max_results, limit=10_000_000)
        offset = int(decode_token(page_token).get("offset", 0))
        table = self.metric_history_table(run_id, key)
        end = table.num_rows if max_results is None else min(table.num_rows, offset + max_results)
        nxt = encode_token({"offset": end}) if end < table.num_rows else None
        return table.slice(offset, max(0, end - offset)), nxt

    def metric_history_table(self, run_id: str, key: str) -> pa.Table:
        """One metric's history as Arrow: ``step``, ``timestamp`` (ms), ``value``; ordered by step, timestamp."""
        self._run(self.state, run_id)
        rows = self.store.metric_history(run_id, key)
        stamps = pc.divide(pc.cast(rows.column("recorded_at"), pa.int64()), 1000)
        return pa.table({"step": rows.column("step"), "timestamp": stamps, "value": rows.column("value")})

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        run_view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        as_of: datetime | None = None,
    ) -> RunPage:
        """Runs of the experiments matching MLflow's filter language, ordered, paged and pinned.

        With ``as_of``, the runs as they stood then (their status, params, tags and latest metrics at the
        snapshots current at that time; see ``lakeops/services/runs_as_of.py``).

        Raises:
            InvalidArgumentError: the filter or order is not valid, or ``as_of`` is older than the kept snapshots.
        """
        _check_max_results(max_results)
        comparisons = parse_filter(filter_string)
        order = parse_order_by(order_by)
        validate_run_filter(comparisons)
        experiment_ids = [str(e) for e in experiment_ids]
        when = None if as_of is None else as_of_ms(as_of)
        fingerprint = hashlib.sha1(
            json.dumps(
                [sorted(experiment_ids), filter_string, run_view_type.value, list(order_by or []), when]
            ).encode(),
            usedforsecurity=False,
        ).hexdigest()[:16]
        stages = {stage.value for stage in LifecycleStage if run_view_type.admits(stage)}
        past = None if as_of is None else self._runs_as_of(experiment_ids, as_of)
        index = self.state.run_index if past is None else past.index

        def results_now() -> RankedRuns:
            return search_run_index(index, experiment_ids, stages, comparisons, order)

        page_ids, nxt = paginate(
            results_now, fingerprint=fingerprint, max_results=max_results, page_token=page_token, pins=self._pins
        )
        if past is None:
            found = self.state.runs.get_many(page_ids)
        else:
            found = [past.runs[i] for i in page_ids if i in past.runs]
        if past is None and page_token is None:
            self._warm_columns(index, found)
        return RunPage(runs=[_run_entity(run) for run in found], next_page_token=nxt)

    def _warm_columns(self, index: RunIndex, runs: Sequence[RunState]) -> None:
        """Build, in the background, the search columns a first page suggests are next: the first metrics and
        params of its runs by name (what the portal's runs table shows and sorts on by default).

        A column is built on first use (a pass over every run: ~50 ms of CPU at 100k runs, 0.2 s on a loaded
        box), which the first sort on a key paid; once a large index's first page is out, it is built now.
        """
        if index.size < _WARM_MIN_RUNS or self._warming.locked():
            return
        metrics = sorted({k for r in runs for k in r.metrics})[:_WARM_KEYS]
        params = sorted({k for r in runs for k in r.params})[:_WARM_KEYS]
        wanted = [("metric", key) for key in metrics] + [("param", key) for key in params]
        cold = [(entity, key) for entity, key in wanted if not index.has_column(entity, key)]
        if not cold or not self._warming.acquire(blocking=False):
            return

        def build() -> None:
            try:
                for entity, key in cold:
                    index.column(entity, key)
            finally:
                self._warming.release()

        threading.Thread(target=build, name="lakeops-warm-columns", daemon=True).start()

    def _runs_as_of(self, experiment_ids: Sequence[str], as_of: datetime) -> PastRuns:
        if self._past is None:
            raise InvalidArgumentError("Searching runs as of a past time needs the lake's SQL engine (open a Lake)")
        return self._past.get(experiment_ids, as_of)

    def group_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        group_by: str,
        filter_string: str | None = None,
        run_view_type: ViewType = ViewType.ACTIVE_ONLY,
        metrics: Sequence[str] = (),
        as_of: datetime | None = None,
    ) -> list[RunGroup]:
        """The runs a search would find, grouped by one param, tag or attribute (``params.lr``): each
        group's value (None: the runs without it), its number of runs and, for each of ``metrics``, the
        count, min, mean and max of its runs' latest values. Groups come in value order (numeric when
        every value is a number), the runs without the key last. With ``as_of``, the runs as they stood then.

        Raises:
            InvalidArgumentError: the filter, the group key or a metric key is not valid, or ``as_of`` is
                older than the kept snapshots.
        """
        entity, key = parse_group_by(group_by)
        comparisons = parse_filter(filter_string)
        stages = {stage.value for stage in LifecycleStage if run_view_type.admits(stage)}
        experiment_ids = [str(e) for e in experiment_ids]
        return group_run_index(
            self.state.run_index if as_of is None else self._runs_as_of(experiment_ids, as_of).index,
            experiment_ids,
            stages,
            comparisons,
            entity=entity,
            key=key,
            metrics=metrics,
        )


# -- helpers ----------------------------------------------------------------------------------


def absolute_location(location: str) -> str:
    """A relative local path (``artifacts``, ``file:artifacts``) made absolute against the working
    directory, as an MLflow server does with an experiment's ``artifact_location``; URIs pass as given."""
    parsed = urllib.parse.urlsplit(location)
    if parsed.scheme not in ("", "file") or (len(parsed.scheme) == 1 and location[1:2] == ":"):
        return location
    path = parsed.path if parsed.scheme == "file" else location
    if PurePosixPath(path).is_absolute() or parsed.netloc:
        return location
    absolute = (Path.cwd() / path).as_posix()
    return urllib.parse.urlunsplit(("file", "", absolute, parsed.query, parsed.fragment)) if parsed.scheme else absolute


_WARM_MIN_RUNS = 10_000  # below this, building a column on first use costs a few ms
_WARM_KEYS = 4  # metrics and params each: the portal's runs table shows the first four of each


def _check_max_results(max_results: int, *, limit: int = MAX_RESULTS_LIMIT) -> None:
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= limit:
        raise InvalidArgumentError(f"Invalid max_results {max_results!r}: must be between 1 and {limit}")


def _replace(obj: Any, **changes: Any) -> Any:
    values = {name: getattr(obj, name) for name in obj.__slots__}
    values.update(changes)
    return type(obj)(**values)


def _metric_batch(run_id: str, points: list[tuple[str, float, int, int]]) -> pa.RecordBatch:
    keys, values, stamps, steps = zip(*points, strict=True)
    return _batch(
        METRICS,
        {
            "run_id": [run_id] * len(points),
            "key": keys,
            "value": values,
            "recorded_at": [t * 1000 for t in stamps],
            "step": steps,
        },
    )


def _model_metric_batch(
    run_id: str, linked: list[tuple[tuple[str, float, int, int], MetricModelLink]]
) -> pa.RecordBatch:
    return _batch(
        LOGGED_MODEL_METRICS,
        {
            "model_id": [link[0] for _p, link in linked],
            "run_id": [run_id] * len(linked),
            "key": [p[0] for p, _l in linked],
            "value": [p[1] for p, _l in linked],
            "recorded_at": [p[2] * 1000 for p, _l in linked],
            "step": [p[3] for p, _l in linked],
            "dataset_name": [link[1] or None for _p, link in linked],
            "dataset_digest": [link[2] or None for _p, link in linked],
        },
    )


def _metrics_from_arrow(points: pa.Table) -> pa.RecordBatch:
    required = {"run_id", "key", "value", "timestamp"}
    missing = required - set(points.column_names)
    if missing:
        raise InvalidArgumentError(
            f"Metric table lacks columns {sorted(missing)}; needs run_id, key, value, timestamp[, step]"
        )
    if points.num_rows == 0:
        raise InvalidArgumentError("Metric table is empty")
    try:
        run_id = pc.cast(points.column("run_id"), pa.string())
        key = pc.cast(points.column("key"), pa.string())
        value = pc.cast(points.column("value"), pa.float64())
        stamp = pc.cast(points.column("timestamp"), pa.int64())
        step = (
            pc.cast(points.column("step"), pa.int64())
            if "step" in points.column_names
            else pa.array([0] * points.num_rows, pa.int64())
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgumentError(f"Metric table has a column of the wrong type: {exc}") from exc
    for name, col in (("run_id", run_id), ("key", key), ("value", value), ("timestamp", stamp), ("step", step)):
        if col.null_count:
            raise InvalidArgumentError(f"Metric table column {name!r} has nulls")
    low, high = pc.min_max(stamp).values()
    if low.as_py() < MIN_TIMESTAMP_MS or high.as_py() > MAX_TIMESTAMP_MS:
        raise InvalidArgumentError(
            f"Metric table column 'timestamp' must hold milliseconds since 1970 between {MIN_TIMESTAMP_MS} and "
            f"{MAX_TIMESTAMP_MS} (years 1 to 9999); it holds {low.as_py()} to {high.as_py()}"
        )
    recorded = pc.cast(pc.multiply(stamp, 1000), pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {"run_id": run_id, "key": key, "value": value, "recorded_at": recorded, "step": step},
        schema=METRICS.arrow_schema,
    )
    return table.combine_chunks().to_batches()[0]


def _experiment_entity(exp: ExperimentState) -> Experiment:
    return Experiment(
        experiment_id=exp.experiment_id,
        name=exp.name,
        artifact_location=exp.artifact_location,
        lifecycle_stage=LifecycleStage(exp.lifecycle_stage),
        creation_time=exp.creation_time,
        last_update_time=exp.last_update_time,
        tags=dict(exp.tags),
    )


def _run_entity(run: RunState) -> Run:
    return Run(
        info=RunInfo(
            run_id=run.run_id,
            experiment_id=run.experiment_id,
            run_name=run.run_name,
            user_id=run.user_id,
            status=RunStatus(run.status),
            start_time=run.start_time,
            end_time=run.end_time,
            lifecycle_stage=LifecycleStage(run.lifecycle_stage),
            artifact_uri=run.artifact_uri,
            parent_run_id=run.parent_run_id,
        ),
        params=dict(run.params),
        metrics={
            k: Metric(key=k, value=v, timestamp=t, step=s)
            for k, (t, v, s) in ((k, unpack_latest(packed)) for k, packed in run.metrics.items())
        },
        tags=dict(run.tags),
        inputs=list(run.inputs),
        outputs=list(run.outputs),
    )


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


def metric_is_nan(value: float) -> bool:
    """Whether a metric value is NaN (exported for the REST layer's JSON encoding)."""
    return math.isnan(value)
