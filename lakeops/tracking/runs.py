"""Runs: create in an active experiment, update status, end time and name, delete and restore, read."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pyarrow as pa

from catalog.tables import RUN_CHANGES, TAG_CHANGES
from lakeops.entities import LifecycleStage, Metric, Run, RunInfo, RunStatus
from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.stores.iceberg import Rows
from lakeops.stores.run_index import unpack_latest
from lakeops.stores.state import RunState, TrackingState
from lakeops.tracking.core import (
    DEFAULT_EXPERIMENT_ID,
    PARENT_RUN_TAG,
    RUN_NAME_TAG,
    TrackingCore,
    record_batch,
    with_changes,
)
from lakeops.tracking.validation import MAX_TAG_VALUE_LENGTH, check_time_ms, validate_key, validate_text


def run_entity(run: RunState) -> Run:
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


class RunsMixin(TrackingCore):
    """Runs: create, update (status, end time, name), delete, restore, read."""

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
        return record_batch(RUN_CHANGES, row)

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
            validate_key("tag", k): validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in (tags or {}).items()
        }
        parent_run_id = parent_run_id or clean_tags.get(PARENT_RUN_TAG)
        run_name = run_name or clean_tags.get(RUN_NAME_TAG) or None
        run_id = run_id or uuid.uuid4().hex
        if start_time is not None:
            check_time_ms("start_time", start_time)
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
            check_time_ms("end_time", end_time)

        def build(state: TrackingState) -> Rows:
            run = self._active_run(state, run_id)
            new = with_changes(
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
            return {RUN_CHANGES.name: self._run_row(with_changes(run, lifecycle_stage=stage), operation)}

        self.store.write(build)

    def get_run(self, run_id: str) -> Run:
        """A run with its params, latest metrics and tags."""
        return run_entity(self._run(self.state, run_id))
