"""The tracking service's shared base: store, actor and clock, the change rows it appends, lookups.

Validation happens before anything is written; rules that depend on stored state (unique
experiment names, immutable params, writes only to active runs) are checked inside the store's
write lock, in the ``build`` function given to ``store.write``, so a refused write stores nothing
and two racing writers cannot both pass a check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from catalog.tables import TAG_CHANGES, TableDef
from lakeops.actor import ActorField, default_actor
from lakeops.entities import LifecycleStage
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.search import PinnedResults
from lakeops.services.runs_as_of import RunsAsOf
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import ExperimentState, LoggedModelState, RunState, TrackingState

if TYPE_CHECKING:
    from lakeops.sql import SqlEngine


DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
ARTIFACT_ROOT = "mlflow-artifacts:"
LOGGED_MODEL_TAG = "logged_model"


def record_batch(table: TableDef, columns: Mapping[str, Sequence[Any] | pa.Array]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(dict(columns), schema=table.arrow_schema)


def with_changes(obj: Any, **changes: Any) -> Any:
    values = {name: getattr(obj, name) for name in obj.__slots__}
    values.update(changes)
    return type(obj)(**values)


class TrackingCore:
    """What every part of the tracking service shares: the store, the actor, the clock, change rows, lookups."""

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

    @property
    def state(self) -> TrackingState:
        """The current state (read under no lock: values are replaced, never half-written)."""
        return self.store.state

    def _change(self, operation: str) -> dict[str, Any]:
        return {
            "changed_at": self._now_ms() * 1000,
            "actor": self.actor,
            "operation": operation,
            "writer_id": self.store.writer_id,
            "wal_seq": 0,  # stamped with the real log position by the store
        }

    def _tag_rows(self, entity_type: str, entity_id: str, tags: Mapping[str, str | None]) -> pa.RecordBatch:
        change = self._change("delete_tag" if all(v is None for v in tags.values()) else "set_tag")
        n = len(tags)
        return record_batch(
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

    def _experiment(self, state: TrackingState, experiment_id: str) -> ExperimentState:
        exp = state.experiments.get(str(experiment_id))
        if exp is None:
            raise NotFoundError(
                f"No Experiment with id={experiment_id} exists", details={"experiment_id": experiment_id}
            )
        return exp

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

    def _logged_model(self, state: TrackingState, model_id: str, *, allow_deleted: bool = False) -> LoggedModelState:
        """A logged model; a deleted one is not found (as on an MLflow server) unless ``allow_deleted``."""
        model = state.logged_models.get(model_id)
        if model is None or (not allow_deleted and model.lifecycle_stage != LifecycleStage.ACTIVE):
            raise NotFoundError(f"Logged model with ID '{model_id}' not found", details={"model_id": model_id})
        return model

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
