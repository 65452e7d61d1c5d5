"""The in-memory current state: what the change tables fold into, kept hot for reads.

Every row reaches the state through ``TrackingState.apply`` — rows loaded from Iceberg at
start-up, rows replayed from the write-ahead log, rows other replicas committed, and this
process's own writes — so there is exactly one way the current state is derived.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.objects import staged_token
from catalog.tables import (
    ARTIFACT_VERSIONS,
    DATASET_VERSIONS,
    EXPECTATION_SUITE_CHANGES,
    EXPERIMENT_CHANGES,
    LINEAGE_EDGES,
    LOGGED_MODEL_CHANGES,
    METRIC_LATEST,
    METRICS,
    ON_DEMAND_TABLES,
    OPENLINEAGE_EVENTS,
    PARAMS,
    RUN_CHANGES,
    RUN_IO,
    SAVED_QUERY_CHANGES,
    TAG_CHANGES,
    VALIDATION_RESULTS,
)
from lakeops.stores.auth_state import AUTH_TABLE_NAMES, AuthState  # -- users, tokens, permissions --
from lakeops.stores.epochs import epoch_array, epoch_ints
from lakeops.stores.lineage_state import LineageState
from lakeops.stores.registry_state import REGISTRY_TABLE_NAMES, RegistryState  # -- model registry --
from lakeops.stores.run_base import LATEST_DTYPE as _LATEST_DTYPE
from lakeops.stores.run_base import RunBase, Runs
from lakeops.stores.run_base import combined as _combined
from lakeops.stores.run_index import RunIndex, pack_latest, unpack_latest

log = logging.getLogger(__name__)

# Batches of at least this many rows (start-up's whole tables, a large commit of another replica)
# fold runs, params, tags and metrics per run instead of per row: the same state as the row-by-row
# fold (tests/lakeops/test_state_bulk.py folds both ways and compares), at a fraction of the CPU.
# Start-up folded ~18 rows per run one at a time, ~90 us a run: 74-109 s for 1M runs.
BULK_ROWS = 4096


def metric_rank(timestamp: int, value: float, step: int) -> tuple[int, int, float, int]:
    """MLflow's "latest" order: max timestamp, then max value (NaN ranks below every number); a full
    tie goes to the greater step, so the state, the summary and the SQL views agree on one point."""
    return (timestamp, 0, 0.0, step) if math.isnan(value) else (timestamp, 1, value, step)


# The operation of the row that files a staged upload's version under its blob once hashed.
HASHED_OPERATION = "hashed"


@dataclass(slots=True)
class ExperimentState:
    """Current state of one experiment."""

    experiment_id: str
    name: str
    artifact_location: str | None
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RunState:
    """Current state of one run, with its params, tags and latest metrics."""

    run_id: str
    experiment_id: str
    run_name: str | None
    user_id: str | None
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    # The run's artifact URI, or for the usual ``<experiment location>/<run id>/artifacts`` the
    # experiment's location as a ``RunsUnder`` shared by its runs (128 bytes per run less); read
    # ``artifact_uri``.
    artifact_root: str | None
    parent_run_id: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, bytes] = field(default_factory=dict)  # key -> pack_latest(timestamp ms, value, step)
    # Most runs link nothing: one shared empty tuple until the first link (56 bytes per run less).
    inputs: list[dict[str, Any]] | tuple[()] = ()
    outputs: list[dict[str, Any]] | tuple[()] = ()
    row: int = -1  # the run's row in the run index (lakeops/stores/run_index.py)

    @property
    def artifact_uri(self) -> str | None:
        root = self.artifact_root
        return f"{root}/{self.run_id}/artifacts" if type(root) is RunsUnder else root


class RunsUnder(str):
    """An experiment's artifact location, standing for ``<location>/<run id>/artifacts`` in a run."""

    __slots__ = ()


@dataclass(slots=True)
class LoggedModelState:
    """Current state of one logged model (MLflow 3's model entity)."""

    model_id: str
    experiment_id: str
    name: str
    artifact_location: str | None
    source_run_id: str | None
    model_type: str | None
    status: str
    status_message: str | None
    params: dict[str, str]
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArtifactVersionState:
    """One stored version of an artifact."""

    path: str
    version_id: str
    object_key: str
    size_bytes: int
    sha256: str
    is_deleted: bool
    created_at: int


@dataclass(frozen=True, slots=True)
class SavedQueryState:
    """Current state of one saved SQL query."""

    name: str
    sql: str
    description: str | None
    author: str | None
    created_at: int
    updated_at: int
    updated_by: str | None


class TrackingState:
    """Experiments and runs by id, folded from change rows."""

    def __init__(self, *, bulk_rows: int | None = BULK_ROWS) -> None:
        self.bulk_rows = bulk_rows  # None: always fold row by row
        self.experiments: dict[str, ExperimentState] = {}
        self.experiment_ids_by_name: dict[str, str] = {}
        # The runs as columns, for search (lakeops/stores/run_index.py).
        self.run_index = RunIndex()
        # Runs by id: the runs read at start-up as columns, and objects of those changed since
        # (lakeops/stores/run_base.py).
        self.runs = Runs(self.run_index)
        self._base_open = False  # start-up's tables may load into the columns (``starting``)
        self._base_loaded: set[str] = set()  # what went into them: "params", "tags", "metrics"
        self.logged_models: dict[str, LoggedModelState] = {}
        # Every version of every artifact path, oldest first; the last one is current.
        self.artifact_versions: dict[str, list[ArtifactVersionState]] = {}
        # Versions whose bytes are a staged upload not hashed yet, by version id: (path, staged key).
        # O(uploads in flight): a row with operation "hashed" files the version under its blob.
        self.pending_artifacts: dict[str, tuple[str, str]] = {}
        # Datasets, the lineage graph, expectation suites and validations (lakeops/stores/lineage_state.py).
        self.lineage = LineageState()
        # Saved SQL queries by name (deleted ones removed).
        self.saved_queries: dict[str, SavedQueryState] = {}
        # One str object per distinct key, status, stage or id the fold sees repeated row after row
        # (Arrow hands out a new object per row: ~50 bytes each, 20+ per run otherwise).
        self._shared: dict[str, str] = {}
        self._runs_under: dict[str, RunsUnder] = {}  # by experiment artifact location
        # Rows whose parent entity is not known yet (another replica's commit seen half-way).
        self._orphans: list[tuple[str, pa.Table]] = []
        # -- model registry: its tables fold into their own state (lakeops/stores/registry_state.py) --
        self.registry = RegistryState()
        # -- users, API tokens and permission grants (lakeops/stores/auth_state.py) --
        self.auth = AuthState()

    def _share(self, values: list[Any], *, max_length: int | None = None) -> list[Any]:
        """``values`` with each string replaced by the one shared object for its text (``None`` kept);
        with ``max_length``, longer strings stay as they are (values, unlike keys, may be unique)."""
        shared = self._shared.setdefault
        if max_length is None:
            return [v if v is None else shared(v, v) for v in values]
        return [v if v is None or len(v) > max_length else shared(v, v) for v in values]

    @contextmanager
    def starting(self) -> Iterator[None]:
        """Start-up's whole tables: folded inside, the runs, run tags, params and latest metrics go
        into columns (``RunBase``) instead of one object a run, each table once, while no run has an
        object yet; anything else folds as usual."""
        self._base_open = True
        try:
            yield
        finally:
            self._base_open = False

    def restore_base(self, tables: dict[str, pa.Table]) -> None:
        """Start from a checkpoint of the run columns (``RunBase.to_tables``, see
        lakeops/stores/run_checkpoint.py) instead of folding the runs' tables: it becomes the base,
        and the rows committed after it fold into objects, as any later change does."""
        base = RunBase.restore(tables, self._share, self._artifact_root)
        with self.run_index.lock:
            self.runs.base = base
            self.run_index.load_base(base)
            self._base_loaded.update(("params", "tags", "metrics"))
            for entity in ("param", "tag", "metric"):
                self.run_index.forget(entity)

    def base_alone(self, tables: Iterable[str]) -> RunBase | None:
        """The start-up base when it is the whole truth of what ``tables`` folded so far (no run was
        made into an object, no row of theirs waits for its run): what a checkpoint may hold."""
        names = set(tables)
        if self.runs.base is None or self.runs.objects or any(t in names for t, _rows in self._orphans):
            return None
        return self.runs.base

    def run_columns(self, tables: Iterable[str]) -> dict[str, pa.Table] | None:
        """The run columns of the base with the runs made into objects since merged in
        (``RunBase.to_tables_with``): what a checkpoint of this state holds. None without a base, or
        while a row of ``tables`` waits for its run (the state is not the whole truth of the rows)."""
        names = set(tables)
        if self.runs.base is None or any(t in names for t, _rows in self._orphans):
            return None
        base = self.runs.base
        changed = sorted(self.runs.objects.values(), key=lambda run: run.row)
        return base.to_tables_with(changed)

    def _into_base(self, rows: pa.Table | pa.RecordBatch, kind: str) -> bool:
        return self.takes_into_base(kind) and self._bulk(rows)

    def takes_into_base(self, kind: str) -> bool:
        """Whether start-up's ``kind`` rows ("params", "tags", "metrics") would go into the run
        columns now (a large batch): the columns reduce them themselves (metrics: each run's latest
        point of a key, whatever the rows' order or count)."""
        return (
            self._base_open and self.runs.base is not None and not self.runs.objects and kind not in self._base_loaded
        )

    def apply(self, table: str, rows: pa.Table | pa.RecordBatch) -> None:
        """Fold rows of ``table`` into the state, in row order."""
        if rows.num_rows == 0 or table in ON_DEMAND_TABLES:  # read from the lake when asked for
            return
        if table in REGISTRY_TABLE_NAMES:  # -- model registry --
            self.registry.apply(table, rows)
            return
        if table in AUTH_TABLE_NAMES:  # -- users, tokens, permissions --
            self.auth.apply(table, rows)
            return
        handler = _HANDLERS[table]
        leftover = handler(self, rows)
        if leftover is not None and leftover.num_rows:
            self._orphans.append((table, leftover))

    def retry_orphans(self) -> int:
        """Apply rows that were waiting for their run or experiment. Returns rows still waiting."""
        waiting, self._orphans = self._orphans, []
        for table, rows in waiting:
            self.apply(table, rows)
        return sum(rows.num_rows for _t, rows in self._orphans)

    # -- handlers, one per table ---------------------------------------------------------

    def _apply_experiments(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(["experiment_id", "name", "artifact_location", "lifecycle_stage"]).to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms")
        changed = epoch_ints(rows.column("changed_at"), "ms")
        for i, experiment_id in enumerate(cols["experiment_id"]):
            old = self.experiments.get(experiment_id)
            if old is not None and self.experiment_ids_by_name.get(old.name) == experiment_id:
                del self.experiment_ids_by_name[old.name]
            exp = ExperimentState(
                experiment_id=experiment_id,
                name=cols["name"][i],
                artifact_location=cols["artifact_location"][i],
                lifecycle_stage=cols["lifecycle_stage"][i],
                creation_time=created[i] or 0,
                last_update_time=changed[i] or 0,
                tags=old.tags if old is not None else {},
            )
            self.experiments[experiment_id] = exp
            self.experiment_ids_by_name[exp.name] = experiment_id

    def _bulk(self, rows: pa.Table | pa.RecordBatch) -> bool:
        return self.bulk_rows is not None and rows.num_rows >= self.bulk_rows

    def _apply_runs(self, rows: pa.Table | pa.RecordBatch) -> None:
        into_base = self._base_open and self.bulk_rows is not None and self.runs.base is None and not self.runs.objects
        if into_base or self._bulk(rows):
            # A run's row replaces the run's attributes: only each run's last row counts, and runs
            # keep the order of their first row (their run-index rows are numbered in that order).
            _ids, order, bounds = _by_run(rows.column("run_id"))
            last = order[bounds[1:] - 1]
            first = np.argsort(order[bounds[:-1]], kind="stable")
            latest = rows.take(pa.array(last[first]))
            if into_base:
                table = latest if isinstance(latest, pa.Table) else pa.Table.from_batches([latest])
                base = RunBase(table, self._share, self._usual_artifact_uris(table), self._artifact_root)
                with self.run_index.lock:
                    self.runs.base = base
                    self.run_index.load_base(base)
                return
            self._apply_runs_rows(latest, bulk=True)
            return
        self._apply_runs_rows(rows, bulk=False)

    def _apply_runs_rows(self, rows: pa.Table | pa.RecordBatch, *, bulk: bool) -> None:
        names = [
            "run_id",
            "experiment_id",
            "run_name",
            "user_id",
            "status",
            "lifecycle_stage",
            "artifact_uri",
            "parent_run_id",
        ]
        shared = ("experiment_id", "user_id", "status", "lifecycle_stage")
        if bulk:  # no throw-away str per row and column: they fragment the heap the runs stay in
            everyone = np.arange(rows.num_rows)
            # The usual artifact URI is left out here (null), so no str is made for it.
            usual = self._usual_artifact_uris(rows)
            rows = rows.set_column(
                rows.schema.get_field_index("artifact_uri"),
                "artifact_uri",
                pc.if_else(usual, None, _combined(rows.column("artifact_uri"))),
            )
            cols = rows.select([n for n in names if n not in shared]).to_pydict()
            cols.update({name: self._strings(rows.column(name), everyone) for name in shared})
            cols["usual_artifact_uri"] = usual.to_pylist()
        else:
            cols = rows.select(names).to_pydict()
            for name in shared:
                cols[name] = self._share(cols[name])
        started = epoch_ints(rows.column("started_at"), "ms")
        ended = epoch_ints(rows.column("ended_at"), "ms")
        with self.run_index.lock:
            folded = self._fold_runs(cols, started, ended, index_each=not bulk)
            if bulk:
                self.run_index.upsert_runs(folded)

    def _fold_runs(
        self, cols: dict[str, list[Any]], started: list[int | None], ended: list[int | None], *, index_each: bool
    ) -> list[RunState]:
        index = self.run_index
        folded: list[RunState] = []
        usual = cols.get("usual_artifact_uri")
        for i, run_id in enumerate(cols["run_id"]):
            old = self.runs.for_update(run_id)
            run = RunState(
                run_id=run_id,
                experiment_id=cols["experiment_id"][i],
                run_name=cols["run_name"][i],
                user_id=cols["user_id"][i],
                status=cols["status"][i],
                start_time=started[i],
                end_time=ended[i],
                lifecycle_stage=cols["lifecycle_stage"][i],
                artifact_root=self._artifact_root(
                    run_id, cols["experiment_id"][i], cols["artifact_uri"][i], usual[i] if usual else None
                ),
                parent_run_id=cols["parent_run_id"][i],
            )
            if old is not None:
                run.params, run.tags, run.metrics = old.params, old.tags, old.metrics
                run.inputs, run.outputs, run.row = old.inputs, old.outputs, old.row
            self.runs[run_id] = run
            if index_each:
                index.upsert_run(run)
            else:
                folded.append(run)
        return folded

    def _usual_artifact_uris(self, rows: pa.Table | pa.RecordBatch) -> pa.Array:
        """Per row: is the artifact URI the usual ``<experiment location>/<run id>/artifacts``
        (compared in Arrow)."""
        text = pa.large_string()
        experiments = pc.dictionary_encode(_combined(rows.column("experiment_id")))
        locations = pa.array(
            [
                (e.artifact_location or None) if (e := self.experiments.get(i)) is not None else None
                for i in experiments.dictionary.to_pylist()
            ],
            text,
        ).take(experiments.indices)
        run_ids = _combined(rows.column("run_id")).cast(text)
        usual = pc.binary_join_element_wise(locations, run_ids, pa.scalar("artifacts", text), pa.scalar("/", text))
        return pc.fill_null(pc.equal(_combined(rows.column("artifact_uri")).cast(text), usual), False)

    def _artifact_root(self, run_id: str, experiment_id: str, uri: str | None, usual: bool | None) -> str | None:
        """What a run keeps of its artifact URI (see ``RunState.artifact_root``); ``usual`` when known."""
        experiment = self.experiments.get(experiment_id)
        location = experiment.artifact_location if experiment is not None else None
        if usual is None:
            usual = bool(location) and uri == f"{location}/{run_id}/artifacts"
        if not usual or not location:
            return uri
        shared = self._runs_under.get(location)
        if shared is None:
            shared = self._runs_under[location] = RunsUnder(location)
        return shared

    def _apply_tags(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | None:
        if self._bulk(rows) or self.takes_into_base("tags"):
            # Runs' tags per run; experiments' and logged models' (few) row by row. Each entity's
            # rows keep their order, so the left-over rows do too.
            is_run = pc.equal(rows.column("entity_type"), "run")
            run_rows = rows.filter(is_run)
            loaded, waiting = self._load_base("tags", run_rows)
            leftovers = [
                self._apply_tags_rows(rows.filter(pc.invert(is_run))),
                waiting if loaded else self._bulk_run_tags(run_rows),
            ]
            return _concat([t for t in leftovers if t is not None])
        return self._apply_tags_rows(rows)

    def _bulk_run_tags(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | None:
        grouped = _by_run(rows.column("entity_id"))
        order = grouped[1]
        keys = self._strings(rows.column("key"), order)
        values = self._strings(rows.column("value"), order, max_length=32)
        deleted = rows.column("is_deleted").to_numpy(zero_copy_only=False)[order].tolist()

        def fold(run: RunState, a: int, b: int) -> None:
            tags = run.tags
            for key, value, gone in zip(keys[a:b], values[a:b], deleted[a:b], strict=True):
                if gone:
                    tags.pop(key, None)
                else:
                    tags[key] = value or ""

        return self._fold_each_run(rows, grouped, "tag", keys, fold)

    def _fold_each_run(
        self,
        rows: pa.Table | pa.RecordBatch,
        grouped: tuple[list[str], np.ndarray, np.ndarray],
        entity: str,
        keys: list[str],
        fold: Callable[[RunState, int, int], None],
    ) -> pa.Table | None:
        """``fold(run, a, b)`` for each known run with its rows at ``a:b`` of the grouped order, under
        the run index's lock; then the cached ``entity`` columns of ``keys`` are re-read. Returns the
        rows of runs not known yet, in row order."""
        ids, order, bounds = grouped
        missing: list[np.ndarray] = []
        touched: list[RunState] = []
        index = self.run_index
        with index.lock:
            for g, run_id in enumerate(ids):
                a, b = int(bounds[g]), int(bounds[g + 1])
                run = self.runs.for_update(run_id)
                if run is None:
                    missing.append(order[a:b])
                    continue
                fold(run, a, b)
                touched.append(run)
            index.refresh_values(entity, set(keys), touched)
        return _take_sorted(rows, missing)

    def _apply_tags_rows(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | None:
        cols = rows.select(["entity_type", "entity_id", "key", "value", "is_deleted"]).to_pydict()
        cols["key"], cols["value"] = self._share(cols["key"]), self._share(cols["value"], max_length=32)
        missing: list[int] = []
        parents: dict[str, Any] = {
            "run": _Updating(self.runs),
            "experiment": self.experiments,
            "logged_model": self.logged_models,
        }
        index = self.run_index
        with index.lock:
            for i, entity_id in enumerate(cols["entity_id"]):
                entity_type = cols["entity_type"][i]
                entity: RunState | ExperimentState | LoggedModelState | None = parents[entity_type].get(entity_id)
                if entity is None:
                    missing.append(i)
                    continue
                key = cols["key"][i]
                value = None if cols["is_deleted"][i] else cols["value"][i] or ""
                if value is None:
                    entity.tags.pop(key, None)
                else:
                    entity.tags[key] = value
                if entity_type == "run":
                    index.set_value("tag", key, entity, value)  # type: ignore[arg-type]
        return _take(rows, missing)

    def _apply_params(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | None:
        loaded, waiting = self._load_base("params", rows)
        if loaded:
            return waiting
        if self._bulk(rows):
            return self._bulk_params(rows)
        cols = rows.select(["run_id", "key", "value"]).to_pydict()
        cols["key"], cols["value"] = self._share(cols["key"]), self._share(cols["value"], max_length=32)
        missing: list[int] = []
        index = self.run_index
        with index.lock:
            for i, run_id in enumerate(cols["run_id"]):
                run = self.runs.for_update(run_id)
                if run is None:
                    missing.append(i)
                elif (key := cols["key"][i]) not in run.params:  # params are immutable: the first value stays
                    run.params[key] = cols["value"][i]
                    index.set_value("param", key, run, cols["value"][i])
        return _take(rows, missing)

    def _bulk_params(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | None:
        grouped = _by_run(rows.column("run_id"))
        keys = self._strings(rows.column("key"), grouped[1])
        values = self._strings(rows.column("value"), grouped[1], max_length=32)

        def fold(run: RunState, a: int, b: int) -> None:
            params = run.params
            for key, value in zip(keys[a:b], values[a:b], strict=True):
                if key not in params:  # params are immutable: the first value stays
                    params[key] = value

        return self._fold_each_run(rows, grouped, "param", keys, fold)

    def _bulk_metrics(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | None:
        grouped = _by_run(rows.column("run_id"))
        order = grouped[1]
        keys = self._strings(rows.column("key"), order)
        values = rows.column("value").to_numpy(zero_copy_only=False)[order]
        steps = rows.column("step").to_numpy(zero_copy_only=False)[order]
        stamps = epoch_array(rows.column("recorded_at"), "ms")[order]
        points = np.empty(len(order), dtype=_LATEST_DTYPE)
        points["timestamp"], points["value"], points["step"] = stamps, values, steps
        raw = points.tobytes()
        width = _LATEST_DTYPE.itemsize

        def fold(run: RunState, a: int, b: int) -> None:
            metrics = run.metrics
            for j in range(a, b):
                key = keys[j]
                current = metrics.get(key)
                if current is None or metric_rank(int(stamps[j]), float(values[j]), int(steps[j])) > metric_rank(
                    *unpack_latest(current)
                ):
                    metrics[key] = raw[j * width : (j + 1) * width]

        return self._fold_each_run(rows, grouped, "metric", keys, fold)

    def _load_base(self, kind: str, rows: pa.Table | pa.RecordBatch) -> tuple[bool, pa.Table | None]:
        """Start-up's ``kind`` rows into the run columns when they may go there (``starting``), with
        the rows of runs not in them handed back; (False, None): they fold as usual."""
        base = self.runs.base
        if base is None or not self.takes_into_base(kind):
            return False, None
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
        load = {"params": base.load_params, "tags": base.load_tags, "metrics": base.load_metrics}[kind]
        with self.run_index.lock:
            missing = load(table, self._share)
            self._base_loaded.add(kind)
            self.run_index.forget({"params": "param", "tags": "tag", "metrics": "metric"}[kind])
        return True, _take(table, missing.tolist())

    def _strings(
        self, column: pa.ChunkedArray | pa.Array, order: np.ndarray, *, max_length: int | None = None
    ) -> list[Any]:
        """``column``'s strings taken in ``order``, one Python object per distinct text (``_share``)."""
        encoded = pc.dictionary_encode(_combined(column))
        texts = self._share(encoded.dictionary.to_pylist(), max_length=max_length)
        texts.append(None)
        codes = pc.fill_null(encoded.indices, len(texts) - 1).to_numpy(zero_copy_only=False)
        return list(np.array(texts, dtype=object)[codes[order]])

    def _apply_metrics(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | None:
        if not any(rows.column(c).null_count for c in ("recorded_at", "value", "step")):
            loaded, waiting = self._load_base("metrics", rows)
            if loaded:
                return waiting
            if self._bulk(rows):
                return self._bulk_metrics(rows)
        run_ids = rows.column("run_id").to_pylist()
        keys = self._share(rows.column("key").to_pylist())
        values = rows.column("value").to_pylist()
        steps = rows.column("step").to_pylist()
        stamps = epoch_ints(rows.column("recorded_at"), "ms")
        missing: list[int] = []
        run: RunState | None = None
        index = self.run_index
        with index.lock:
            for i, run_id in enumerate(run_ids):
                if run is None or run.run_id != run_id:
                    run = self.runs.for_update(run_id)
                    if run is None:
                        missing.append(i)
                        continue
                key, ts, value = keys[i], stamps[i], values[i]
                current = run.metrics.get(key)
                newer = current is None or metric_rank(ts, value, steps[i]) > metric_rank(*unpack_latest(current))  # type: ignore[arg-type]
                if newer:
                    run.metrics[key] = pack_latest(ts, value, steps[i])
                    index.set_value("metric", key, run, value)
        return _take(rows, missing)

    def _apply_logged_models(self, rows: pa.Table | pa.RecordBatch) -> None:
        names = ["model_id", "experiment_id", "name", "artifact_location", "source_run_id", "model_type", "status"]
        cols = rows.select([*names, "status_message", "params_json", "lifecycle_stage"]).to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms")
        changed = epoch_ints(rows.column("changed_at"), "ms")
        for i, model_id in enumerate(cols["model_id"]):
            old = self.logged_models.get(model_id)
            self.logged_models[model_id] = LoggedModelState(
                **{n: cols[n][i] for n in names},
                status_message=cols["status_message"][i],
                params=json.loads(cols["params_json"][i] or "{}"),
                lifecycle_stage=cols["lifecycle_stage"][i],
                creation_time=created[i] or 0,
                last_update_time=changed[i] or 0,
                tags=old.tags if old is not None else {},
            )

    def _apply_run_io(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | None:
        cols = rows.to_pydict()
        missing: list[int] = []
        with self.run_index.lock:  # for_update may add a run to run_index.runs, which a column build reads
            for i, run_id in enumerate(cols["run_id"]):
                run = self.runs.for_update(run_id)
                if run is None:
                    missing.append(i)
                    continue
                link = {k: cols[k][i] for k in cols if k not in ("run_id", "direction", "logged_at")}
                if cols["direction"][i] == "input":
                    run.inputs = target = run.inputs or []
                else:
                    run.outputs = target = run.outputs or []
                if link not in target:  # the same dataset or model linked twice is one link
                    target.append(link)
        return _take(rows, missing)

    def _apply_artifacts(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(
            ["path", "version_id", "object_key", "size_bytes", "sha256", "is_deleted", "operation"]
        ).to_pydict()
        changed = epoch_ints(rows.column("changed_at"), "ms")
        for i, path in enumerate(cols["path"]):
            version_id, object_key = cols["version_id"][i], cols["object_key"][i]
            if cols["operation"][i] == HASHED_OPERATION:
                # A staged upload hashed and filed under its blob: the version keeps its place, id and time.
                self.pending_artifacts.pop(version_id, None)
                history = self.artifact_versions.get(path, [])
                for j, old in enumerate(history):
                    if old.version_id == version_id and staged_token(old.object_key) is not None:
                        history[j] = replace(
                            old, object_key=object_key, sha256=cols["sha256"][i], size_bytes=cols["size_bytes"][i]
                        )
                continue
            version = ArtifactVersionState(
                path=path,
                version_id=version_id,
                object_key=object_key,
                size_bytes=cols["size_bytes"][i],
                sha256=cols["sha256"][i],
                is_deleted=cols["is_deleted"][i],
                created_at=changed[i] or 0,
            )
            self.artifact_versions.setdefault(path, []).append(version)
            if not version.is_deleted and staged_token(object_key) is not None:
                self.pending_artifacts[version_id] = (path, object_key)

    def _apply_saved_queries(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(["name", "sql", "description", "author", "is_deleted", "actor"]).to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms")
        changed = epoch_ints(rows.column("changed_at"), "ms")
        for i, name in enumerate(cols["name"]):
            if cols["is_deleted"][i]:
                self.saved_queries.pop(name, None)
                continue
            self.saved_queries[name] = SavedQueryState(
                name=name,
                sql=cols["sql"][i],
                description=cols["description"][i],
                author=cols["author"][i],
                created_at=created[i] or 0,
                updated_at=changed[i] or 0,
                updated_by=cols["actor"][i],
            )


def _take(rows: pa.Table | pa.RecordBatch, indices: list[int]) -> pa.Table | None:
    if not indices:
        return None
    taken = rows.take(pa.array(indices, pa.int64()))
    return taken if isinstance(taken, pa.Table) else pa.Table.from_batches([taken])


def _by_run(column: pa.ChunkedArray | pa.Array) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Rows grouped by the id in ``column``: the distinct ids in the order of their first row, the
    row positions grouped by id (each group in row order), and where each group starts and ends
    (group ``g`` is ``order[bounds[g]:bounds[g + 1]]``)."""
    encoded = pc.dictionary_encode(_combined(column))  # codes in order of first appearance
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    ids: list[str] = encoded.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    bounds = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=len(ids)), out=bounds[1:])
    return ids, order, bounds


def _take_sorted(rows: pa.Table | pa.RecordBatch, groups: list[np.ndarray]) -> pa.Table | None:
    """The rows at the positions in ``groups``, in row order (rows still waiting for their run)."""
    if not groups:
        return None
    return _take(rows, np.sort(np.concatenate(groups)).tolist())


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    return pa.concat_tables(tables) if tables else None


class _Updating:
    """``Runs`` seen through ``get`` as the fold sees it: the objects it changes are kept."""

    __slots__ = ("runs",)

    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    def get(self, run_id: str) -> RunState | None:
        return self.runs.for_update(run_id)


_HANDLERS: dict[str, Any] = {
    EXPERIMENT_CHANGES.name: TrackingState._apply_experiments,
    RUN_CHANGES.name: TrackingState._apply_runs,
    TAG_CHANGES.name: TrackingState._apply_tags,
    PARAMS.name: TrackingState._apply_params,
    METRICS.name: TrackingState._apply_metrics,
    # Summary rows carry the latest point of each (run, key): the same fold (catalog/summaries.py).
    METRIC_LATEST.name: TrackingState._apply_metrics,
    LOGGED_MODEL_CHANGES.name: TrackingState._apply_logged_models,
    RUN_IO.name: TrackingState._apply_run_io,
    ARTIFACT_VERSIONS.name: TrackingState._apply_artifacts,
    DATASET_VERSIONS.name: lambda state, rows: state.lineage.apply_dataset_versions(rows),
    LINEAGE_EDGES.name: lambda state, rows: state.lineage.apply_edges(rows),
    OPENLINEAGE_EVENTS.name: lambda state, rows: state.lineage.apply_openlineage_events(rows),
    EXPECTATION_SUITE_CHANGES.name: lambda state, rows: state.lineage.apply_suites(rows),
    VALIDATION_RESULTS.name: lambda state, rows: state.lineage.apply_validations(rows),
    SAVED_QUERY_CHANGES.name: TrackingState._apply_saved_queries,
}
