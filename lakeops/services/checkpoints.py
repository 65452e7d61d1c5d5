"""Checkpoints: a run's saved model state at a step, with the metrics at that step, and retention.

A checkpoint is a directory in the run's artifacts (``checkpoints/step-<step>``) whose files are
uploaded first, like any artifact, and then *recorded*: one row in ``checkpoint_changes`` pins
every file's version (size, sha256, object-store version id) and carries the step and metrics.
Re-logging a step records a new row that replaces the old one; removing a checkpoint records a
``delete`` row. The current checkpoints of a run are the latest row per step that is not deleted.

Bounded state: checkpoints are never folded into the in-memory state. A run's rows are read from
the lake when asked for (``checkpoint_changes`` is bucketed and sorted by run, so the read prunes
other runs' files), plus rows not yet committed; retention reads the table once per pass.

Retention policies are tags, on the run or its experiment (the run's win key by key), so the stock
``mlflow`` client can set them too::

    lakeops.checkpoints.keep_last   = 3          # the 3 most recent steps
    lakeops.checkpoints.keep_best   = 2          # the 2 best by ...
    lakeops.checkpoints.metric      = val_loss   # ... this metric of the checkpoint ...
    lakeops.checkpoints.mode        = min        # ... lowest first (max: highest first)
    lakeops.checkpoints.keep_every  = 10         # every step divisible by 10

A checkpoint survives if any rule keeps it; a run without a policy keeps everything unless
``lakeops maintain --checkpoints`` is given a default policy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, cast

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, EqualTo
from pyiceberg.manifest import DataFile
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import StringType

from catalog.tables import CHECKPOINT_CHANGES, METRIC_BUCKETS
from lakeops.actor import ActorField
from lakeops.entities import checkpoint_dir
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.services.artifacts import ArtifactService, validate_artifact_path
from lakeops.stores.epochs import epoch_ints
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import RunState, TrackingState

ARTIFACT_SCHEME = "mlflow-artifacts:"
TAG_PREFIX = "lakeops.checkpoints."
MAX_METRICS = 100

Mode = Literal["min", "max"]


class CheckpointFile(BaseModel):
    """One file of a checkpoint, pinned to the version that was current when it was recorded."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="relative to the checkpoint's directory")
    size_bytes: int
    sha256: str
    version_id: str


class Checkpoint(BaseModel):
    """A run's saved state at one step."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    experiment_id: str
    step: int
    artifact_path: str = Field(description="the checkpoint's directory in the artifact store")
    is_dir: bool
    files: list[CheckpointFile]
    size_bytes: int
    metrics: dict[str, float]
    created_at: int = Field(description="milliseconds since the epoch")


class RetentionPolicy(BaseModel):
    """Which checkpoints of a run to keep: the union of the rules that are set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_last: int | None = Field(default=None, ge=0)
    keep_best: int | None = Field(default=None, ge=0)
    metric: str | None = None
    mode: Mode = "min"
    keep_every: int | None = Field(default=None, ge=1)

    def is_empty(self) -> bool:
        """No rule is set (the policy keeps everything)."""
        return self.keep_last is None and self.keep_best is None and self.keep_every is None

    def check(self) -> RetentionPolicy:
        """The policy, or ``InvalidArgumentError`` if ``keep_best`` lacks its metric."""
        if self.keep_best is not None and not self.metric:
            raise InvalidArgumentError("keep_best needs a metric to rank checkpoints by")
        return self

    def as_tags(self) -> dict[str, str]:
        """The policy as the tags that set it on a run or an experiment."""
        values = self.model_dump(exclude_none=True)
        if self.keep_best is None:
            values.pop("mode", None)
        return {f"{TAG_PREFIX}{k}": str(v) for k, v in values.items()}

    @classmethod
    def from_tags(cls, *layers: Mapping[str, str]) -> RetentionPolicy | None:
        """The policy set by tags, later layers overriding earlier ones; None if no rule is set."""
        values: dict[str, Any] = {}
        for tags in layers:
            values.update({k[len(TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)})
        if not values:
            return None
        try:
            policy = cls.model_validate(values)
        except ValueError as exc:
            raise InvalidArgumentError(f"Bad checkpoint retention tags {values}: {exc}") from exc
        return None if policy.is_empty() else policy.check()

    def keep(self, checkpoints: list[Checkpoint]) -> dict[int, list[str]]:
        """For each kept step, the rules that keep it."""
        reasons: dict[int, list[str]] = {}
        by_step = sorted(checkpoints, key=lambda c: c.step)
        if self.keep_last is not None and self.keep_last > 0:
            for c in by_step[-self.keep_last :]:
                reasons.setdefault(c.step, []).append(f"last {self.keep_last}")
        if self.keep_best is not None and self.keep_best > 0 and self.metric:
            for c in rank_by(by_step, self.metric, self.mode)[: self.keep_best]:
                reasons.setdefault(c.step, []).append(f"best {self.keep_best} by {self.metric} ({self.mode})")
        if self.keep_every is not None:
            for c in by_step:
                if c.step % self.keep_every == 0:
                    reasons.setdefault(c.step, []).append(f"every {self.keep_every}th step")
        return reasons


class RunRetention(BaseModel):
    """What retention does to one run's checkpoints."""

    run_id: str
    policy: RetentionPolicy
    kept: dict[int, list[str]]
    removed: list[int]
    removed_bytes: int


class RetentionReport(BaseModel):
    """What a retention pass did (or, with ``dry_run``, would do)."""

    dry_run: bool
    runs: list[RunRetention]
    checkpoints_removed: int
    bytes_removed: int
    skipped: dict[str, str] = Field(default_factory=dict, description="run id -> why its policy was not applied")


def rank_by(checkpoints: Iterable[Checkpoint], metric: str, mode: Mode) -> list[Checkpoint]:
    """Checkpoints that carry ``metric`` (NaN excluded), best first; ties go to the later step."""
    scored = [c for c in checkpoints if metric in c.metrics and not math.isnan(c.metrics[metric])]
    sign = 1.0 if mode == "min" else -1.0
    return sorted(scored, key=lambda c: (sign * c.metrics[metric], -c.step))


def run_artifact_root(run: RunState) -> str:
    """The run's artifact directory in lakeops' artifact store (``<exp>/<run>/artifacts``)."""
    uri = run.artifact_uri or ""
    if not uri.startswith(ARTIFACT_SCHEME):
        raise InvalidArgumentError(f"Run {run.run_id} keeps its artifacts outside lakeops ({uri!r})")
    return uri[len(ARTIFACT_SCHEME) :].strip("/")


class CheckpointService:
    """Record, list, select and retire checkpoints."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(self, store: IcebergStore, artifacts: ArtifactService, *, actor: str = "unknown") -> None:
        self.store = store
        self.artifacts = artifacts
        self.actor = actor

    # -- writing ---------------------------------------------------------------------------------

    def create(
        self,
        run_id: str,
        *,
        step: int,
        metrics: Mapping[str, float] | None = None,
        is_dir: bool = True,
        files: Iterable[str] | None = None,
    ) -> Checkpoint:
        """Record the files already uploaded under the step's directory as the run's checkpoint.

        ``files`` names them (relative to the directory); by default every file there is taken.

        Raises:
            NotFoundError: no such run.
            InvalidArgumentError: a negative step, bad metrics, or a file not uploaded.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InvalidArgumentError(f"Invalid checkpoint step {step!r}: must be an integer >= 0")
        clean = _clean_metrics(metrics or {})
        names = None if files is None else {validate_artifact_path(f) for f in files}
        created: list[Checkpoint] = []

        def build(state: TrackingState) -> Rows:
            run = _run(state, run_id)
            directory = f"{run_artifact_root(run)}/{checkpoint_dir(step)}"
            found = self._files_under(state, directory)
            if names is not None:
                missing = sorted(names - {f.path for f in found})
                if missing:
                    raise InvalidArgumentError(
                        f"Not uploaded under {directory!r}: {', '.join(missing[:5])}",
                        details={"artifact_path": directory, "missing": missing[:100]},
                    )
                found = [f for f in found if f.path in names]
            files = found
            if not files:
                raise InvalidArgumentError(
                    f"No artifacts under {directory!r}: upload the checkpoint's files before recording it",
                    details={"artifact_path": directory},
                )
            if not is_dir and len(files) != 1:
                raise InvalidArgumentError(f"A single-file checkpoint needs exactly one file, found {len(files)}")
            checkpoint = Checkpoint(
                run_id=run_id,
                experiment_id=run.experiment_id,
                step=step,
                artifact_path=directory,
                is_dir=is_dir,
                files=files,
                size_bytes=sum(f.size_bytes for f in files),
                metrics=clean,
                created_at=int(self.store.clock() * 1000),
            )
            created.append(checkpoint)
            return self._rows([checkpoint], deleted=False)

        self.store.write(build)
        return created[0]

    def delete(self, run_id: str, step: int) -> Checkpoint:
        """Remove a checkpoint: a ``delete`` row, then its files (old versions stay until gc).

        Raises:
            NotFoundError: no such run or no checkpoint at that step.
        """
        checkpoint = self.get(run_id, step)
        self._remove([checkpoint])
        return checkpoint

    def _remove(self, checkpoints: list[Checkpoint]) -> None:
        if not checkpoints:
            return
        rows = self._rows(checkpoints, deleted=True)
        self.store.write(lambda _state: rows)
        for checkpoint in checkpoints:
            for f in checkpoint.files:
                path = f"{checkpoint.artifact_path}/{f.path}"
                heads = self.store.state.artifact_versions.get(path)
                # Only the version the checkpoint pinned: a newer upload to the same path is not ours.
                if heads and not heads[-1].is_deleted and heads[-1].version_id == f.version_id:
                    self.artifacts.delete(path)

    def _rows(self, checkpoints: list[Checkpoint], *, deleted: bool) -> Rows:
        now_us = int(self.store.clock() * 1_000_000)
        columns: dict[str, list[Any]] = {
            "run_id": [c.run_id for c in checkpoints],
            "experiment_id": [c.experiment_id for c in checkpoints],
            "step": [c.step for c in checkpoints],
            "artifact_path": [c.artifact_path for c in checkpoints],
            "is_dir": [c.is_dir for c in checkpoints],
            "files_json": [json.dumps([f.model_dump() for f in c.files]) for c in checkpoints],
            "size_bytes": [c.size_bytes for c in checkpoints],
            "metrics_json": [json.dumps(c.metrics) for c in checkpoints],
            "is_deleted": [deleted] * len(checkpoints),
            "created_at": [c.created_at * 1000 for c in checkpoints],
            "changed_at": [now_us] * len(checkpoints),
            "actor": [self.actor] * len(checkpoints),
            "operation": ["delete" if deleted else "create"] * len(checkpoints),
            "writer_id": [self.store.writer_id] * len(checkpoints),
            "wal_seq": [0] * len(checkpoints),
        }
        batch = pa.RecordBatch.from_pydict(columns, schema=CHECKPOINT_CHANGES.arrow_schema)
        return {CHECKPOINT_CHANGES.name: batch}

    def _files_under(self, state: TrackingState, directory: str) -> list[CheckpointFile]:
        start = directory + "/"
        files = []
        for path, versions in list(state.artifact_versions.items()):
            if path.startswith(start) and not versions[-1].is_deleted:
                head = versions[-1]
                files.append(
                    CheckpointFile(
                        path=path[len(start) :],
                        size_bytes=head.size_bytes,
                        sha256=head.sha256,
                        version_id=head.version_id,
                    )
                )
        return sorted(files, key=lambda f: f.path)

    # -- reading ---------------------------------------------------------------------------------

    def of_run(self, run_id: str) -> list[Checkpoint]:
        """The run's current checkpoints, by step.

        Raises:
            NotFoundError: no such run.
        """
        _run(self.store.state, run_id)
        rows = self.store.scan_with_pending(
            CHECKPOINT_CHANGES.name,
            _equal_to("run_id", run_id),
            lambda t: pc.equal(t["run_id"], run_id),
            file_filter=_in_bucket(run_id),
        )
        return [self._hashed(c) for c in _current(rows).get(run_id, [])]

    def _hashed(self, checkpoint: Checkpoint) -> Checkpoint:
        """A file pinned while its version was pending its sha256 (a stock-client multipart upload not
        hashed yet) reads the sha256 that version got since; still pending, it stays empty."""
        if all(f.sha256 for f in checkpoint.files):
            return checkpoint
        versions = self.store.state.artifact_versions
        files = []
        for f in checkpoint.files:
            if not f.sha256:
                for v in versions.get(f"{checkpoint.artifact_path}/{f.path}", []):
                    if v.version_id == f.version_id and v.sha256:
                        f = f.model_copy(update={"sha256": v.sha256})
                        break
            files.append(f)
        return checkpoint.model_copy(update={"files": files})

    def get(self, run_id: str, step: int) -> Checkpoint:
        """The checkpoint at ``step``.

        Raises:
            NotFoundError: no such run or no checkpoint at that step.
        """
        for checkpoint in self.of_run(run_id):
            if checkpoint.step == step:
                return checkpoint
        raise NotFoundError(f"Run {run_id} has no checkpoint at step {step}", details={"run_id": run_id, "step": step})

    def latest(self, run_id: str) -> Checkpoint:
        """The checkpoint of the highest step.

        Raises:
            NotFoundError: no such run, or it has no checkpoint.
        """
        found = self.of_run(run_id)
        if not found:
            raise NotFoundError(f"Run {run_id} has no checkpoints", details={"run_id": run_id})
        return found[-1]

    def best(self, run_id: str, metric: str, mode: Mode = "min") -> Checkpoint:
        """The checkpoint with the lowest (``min``) or highest (``max``) value of ``metric``.

        Raises:
            NotFoundError: no such run, or no checkpoint carries the metric.
            InvalidArgumentError: ``mode`` is neither min nor max.
        """
        if mode not in ("min", "max"):
            raise InvalidArgumentError(f"Invalid mode {mode!r}: min or max")
        ranked = rank_by(self.of_run(run_id), metric, mode)
        if not ranked:
            raise NotFoundError(
                f"No checkpoint of run {run_id} carries the metric {metric!r}",
                details={"run_id": run_id, "metric": metric},
            )
        return ranked[0]

    # -- retention -------------------------------------------------------------------------------

    def apply_retention(
        self,
        *,
        default: RetentionPolicy | None = None,
        dry_run: bool = True,
        run_ids: Iterable[str] | None = None,
    ) -> RetentionReport:
        """Remove the checkpoints each run's policy (its tags, else ``default``) does not keep.

        With ``dry_run`` (the default) nothing changes: the report says what would be removed.
        """
        if default is not None and default.is_empty():
            default = None
        if default is not None:
            default.check()
        wanted = set(run_ids) if run_ids is not None else None
        rows = self.store.scan_with_pending(CHECKPOINT_CHANGES.name, AlwaysTrue(), lambda t: pc.is_valid(t["run_id"]))
        state = self.store.state
        runs: list[RunRetention] = []
        doomed: list[Checkpoint] = []
        skipped: dict[str, str] = {}
        for run_id, checkpoints in sorted(_current(rows).items()):
            if wanted is not None and run_id not in wanted:
                continue
            run = state.runs.get(run_id)
            experiment = state.experiments.get(run.experiment_id) if run is not None else None
            try:
                policy = RetentionPolicy.from_tags(
                    experiment.tags if experiment is not None else {}, run.tags if run is not None else {}
                )
            except InvalidArgumentError as exc:  # one run's bad tags must not stop the others' retention
                skipped[run_id] = exc.message
                continue
            policy = policy or default
            if policy is None:
                continue
            kept = policy.keep(checkpoints)
            removed = [c for c in checkpoints if c.step not in kept]
            doomed.extend(removed)
            runs.append(
                RunRetention(
                    run_id=run_id,
                    policy=policy,
                    kept=kept,
                    removed=[c.step for c in removed],
                    removed_bytes=sum(c.size_bytes for c in removed),
                )
            )
        if not dry_run:
            self._remove(doomed)
        return RetentionReport(
            dry_run=dry_run,
            runs=runs,
            checkpoints_removed=len(doomed),
            bytes_removed=sum(c.size_bytes for c in doomed),
            skipped=skipped,
        )


def _run(state: TrackingState, run_id: str) -> RunState:
    run = state.runs.get(run_id)
    if run is None:
        raise NotFoundError(f"Run with id={run_id} not found", details={"run_id": run_id})
    return run


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(metrics, Mapping) or len(metrics) > MAX_METRICS:
        raise InvalidArgumentError(f"Checkpoint metrics must be a mapping of at most {MAX_METRICS} names to numbers")
    clean: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key or len(key) > 250:
            raise InvalidArgumentError(f"Invalid checkpoint metric name {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgumentError(f"Checkpoint metric {key!r} must be a number, got {value!r}")
        clean[key] = float(value)
    return clean


def _current(rows: pa.Table) -> dict[str, list[Checkpoint]]:
    """The latest row per (run, step), deleted ones dropped, grouped by run and ordered by step."""
    rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
    cols = rows.select(
        ["run_id", "experiment_id", "step", "artifact_path", "is_dir", "files_json", "size_bytes", "metrics_json"]
    ).to_pydict()
    deleted = rows.column("is_deleted").to_pylist()
    created = epoch_ints(rows.column("created_at"), "ms", null=0)
    latest: dict[tuple[str, int], Checkpoint | None] = {}
    for i, run_id in enumerate(cols["run_id"]):
        key = (run_id, cols["step"][i])
        if deleted[i]:
            latest[key] = None
            continue
        latest[key] = Checkpoint(
            run_id=run_id,
            experiment_id=cols["experiment_id"][i],
            step=cols["step"][i],
            artifact_path=cols["artifact_path"][i],
            is_dir=cols["is_dir"][i],
            files=[CheckpointFile.model_validate(f) for f in json.loads(cols["files_json"][i])],
            size_bytes=cols["size_bytes"][i],
            metrics=json.loads(cols["metrics_json"][i]),
            created_at=created[i],
        )
    grouped: dict[str, list[Checkpoint]] = {}
    for (run_id, _step), checkpoint in sorted(latest.items()):
        if checkpoint is not None:
            grouped.setdefault(run_id, []).append(checkpoint)
    return grouped


# pyiceberg's pydantic-generated signature for EqualTo confuses mypy; this is its documented call form.
_equal_to = cast(Callable[[str, Any], BooleanExpression], EqualTo)


def _in_bucket(run_id: str) -> Callable[[DataFile], bool]:
    """Whether a data file of ``checkpoint_changes`` can hold rows of ``run_id`` (partition pruning)."""
    bucket = BucketTransform(METRIC_BUCKETS).transform(StringType())(run_id)
    return lambda data_file: data_file.spec_id != 0 or data_file.partition[0] == bucket
