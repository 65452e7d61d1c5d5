"""The Iceberg store: durable batched writes, group commit, replay, and hot reads.

Write path (ARCHITECTURE.md, "Write path"):
1. ``write`` builds change rows under the state lock (so checks such as param immutability
   are atomic with the write), appends them as one record to the write-ahead log, folds
   them into the in-memory state and queues them for commit; it returns after the log's
   fsync, which concurrent callers share.
2. A background committer turns everything queued into one Iceberg append per table and
   records the log position it reaches (snapshot summary ``lakeops.wal-seq`` and table
   property ``lakeops.wal.<writer_id>``, set in the same transaction as the append).
3. On start, rows beyond each table's recorded position are replayed from the log: nothing
   lost, nothing duplicated. Commit conflicts with other replicas are retried by pyiceberg.
   Start-up folds every table into the state except metric points: their summary table
   (``metric_latest``, appended in the same commit round, catalog/summaries.py) gives the
   latest value of each metric, so start-up time and memory do not grow with metric points.
4. Reads see committed data plus queued rows (read-your-writes); other replicas' commits are
   picked up incrementally from the snapshots they add.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
import sqlite3
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo
from pyiceberg.io.pyarrow import ArrowScan, bin_pack_arrow_table, pyarrow_to_schema, write_file
from pyiceberg.manifest import DataFile, ManifestContent, ManifestEntryStatus
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.table import FileScanTask, Table, TableProperties, Transaction, WriteTask
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import StringType
from pyiceberg.utils.properties import property_as_int

from catalog.connection import ensure_tables, open_catalog, transaction
from catalog.maintenance import MIN_FILES_TO_COMPACT, compact_table, expire_snapshots
from catalog.pointers import PointerReadError, open_pointer_reader, read_sqlite_pointers
from catalog.summaries import SUMMARIES, SUMMARY_BY_NAME, SUMMARY_OF_SOURCE
from catalog.tables import (
    EXPERIMENT_CHANGES,
    LOGGED_MODEL_CHANGES,
    METRIC_BUCKETS,
    METRICS,
    ON_DEMAND_TABLES,
    RUN_CHANGES,
    SPANS,
    TABLES,
    TABLES_BY_CODE,
    TABLES_BY_NAME,
    TAG_CHANGES,
    TRACE_INFO_CHANGES,
    TRACE_TAG_CHANGES,
)
from catalog.versions import VersionStore, open_version_store
from lakeops.errors import BackendUnavailableError, ConflictError, LakeopsError
from lakeops.settings import LakeopsSettings
from lakeops.stores import run_checkpoint
from lakeops.stores.run_base import RunBase
from lakeops.stores.run_checkpoint import COVERED
from lakeops.stores.state import TrackingState
from lakeops.wal import RecordLog, WriteAheadLog

log = logging.getLogger(__name__)

CATALOG_NAME = "lakeops"
WAL_MARK_PREFIX = "lakeops.wal."
SUMMARY_WRITER = "lakeops.writer-id"
SUMMARY_SEQ = "lakeops.wal-seq"
SUMMARY_OPERATION = "lakeops.operation"
SUMMARY_LOG = "lakeops.drained-log"  # a dead process's log whose rows the commit carries

_PART = struct.Struct("<BI")

Rows = dict[str, pa.RecordBatch]


def encode_record(rows: Rows) -> bytes:
    """One log record: for each table, its index and an Arrow IPC stream of its rows."""
    parts: list[bytes] = []
    for name, batch in rows.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        ipc = sink.getvalue().to_pybytes()
        parts.append(_PART.pack(TABLES_BY_NAME[name].code, len(ipc)) + ipc)
    return b"".join(parts)


def decode_record(payload: bytes) -> Rows:
    """The inverse of ``encode_record``."""
    rows: Rows = {}
    pos = 0
    while pos < len(payload):
        index, length = _PART.unpack_from(payload, pos)
        pos += _PART.size
        reader = pa.ipc.open_stream(pa.py_buffer(payload[pos : pos + length]))
        batches = list(reader)
        rows[TABLES_BY_CODE[index].name] = (
            batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).to_batches()[0]
        )
        pos += length
    return rows


@dataclass
class _Queue:
    """Rows of one table waiting to be committed, each with its log sequence number."""

    pending: list[tuple[int, pa.RecordBatch]] = field(default_factory=list)
    inflight: list[tuple[int, pa.RecordBatch]] = field(default_factory=list)
    rows: int = 0
    since: float = 0.0  # self.clock() when the oldest row waiting (pending or in flight) was queued


class _ReadCache:
    """A thread-safe LRU of committed read results ``(snapshot id, rows)``, bounded by total rows."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._rows = 0
        self._items: OrderedDict[tuple[str, str], tuple[int, pa.Table]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, slot: tuple[str, str]) -> tuple[int, pa.Table] | None:
        with self._lock:
            found = self._items.get(slot)
            if found is not None:
                self._items.move_to_end(slot)
            return found

    def put(self, slot: tuple[str, str], snapshot_id: int, rows: pa.Table) -> None:
        if rows.num_rows > self._max_rows:
            return
        with self._lock:
            old = self._items.pop(slot, None)
            if old is not None:
                self._rows -= old[1].num_rows
            self._items[slot] = (snapshot_id, rows)
            self._rows += rows.num_rows
            while self._rows > self._max_rows and self._items:
                _slot, (_snap, evicted) = self._items.popitem(last=False)
                self._rows -= evicted.num_rows


@dataclass(frozen=True)
class CommitHealth:
    """The committer's record, read by ``/health`` and ``/metrics``. Times are ``clock()`` seconds."""

    at: float  # when this record was taken
    last_commit_ok_at: float | None  # the last commit that landed rows
    first_failure_at: float | None  # first failed commit since the last one that landed; None when healthy
    last_error: str | None  # the last failure's message, secrets redacted
    commit_started_at: float | None  # a commit in flight since then
    oldest_queued_at: float | None  # the oldest acknowledged row not yet committed was queued then
    commits_total: int
    commit_failures_total: int


@dataclass(frozen=True)
class CommitStats:
    """What one committer round did."""

    tables: int
    rows: int
    seconds: float


def _open_log(settings: LakeopsSettings) -> RecordLog:
    """The write-ahead log ``write.log`` names: on the local disk (default) or in the object store."""
    if settings.write.log == "object":
        from lakeops.object_wal import WAL_DIR, ObjectWriteAheadLog, default_log_name

        objects = open_version_store(settings.warehouse(), settings.storage.to_properties(), directory=WAL_DIR)
        name = settings.write.log_name or default_log_name()
        return ObjectWriteAheadLog.open(objects, name, lease_s=settings.write.log_lease_s)
    return WriteAheadLog.open(settings.home / "wal", fsync=settings.write.fsync)


def _refuse_unmigrated(settings: LakeopsSettings, catalog: Catalog) -> None:
    """Refuse to start an empty object-store catalog over a lake whose tables are in a SQLite catalog.

    The object-store catalog became the default for s3:// lakes; a lake made before keeps its
    pointers in ``<home>/catalog.db``. Creating fresh tables would hide its data, so say how to move.
    """
    legacy = settings.home / "catalog.db"
    if settings.catalog.kind != "object" or not legacy.is_file():
        return
    if catalog.namespace_exists(settings.namespace):
        return
    try:
        pointers = read_sqlite_pointers(legacy, catalog_name=CATALOG_NAME, namespace=settings.namespace)
    except sqlite3.Error:
        return
    if pointers:
        raise BackendUnavailableError(
            f"the lake at {settings.warehouse()} keeps its tables in the SQLite catalog {legacy}, and the configured "
            "catalog (object store, the default for s3:// lakes) has none yet: run `lakeops migrate-catalog` once "
            "(nothing is rewritten), or keep the SQLite catalog with LAKEOPS_CATALOG__KIND=sql"
        )


class IcebergStore:
    """Tracking data on Iceberg tables with a write-ahead log in front."""

    def __init__(
        self,
        settings: LakeopsSettings,
        *,
        start_committer: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.RLock()
        self._commit_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._commits = 0
        self._last_refresh = 0.0
        self._refreshed_from = 0.0  # when the last completed refresh began (time.monotonic())
        self._last_commit_began = time.monotonic()  # when the committer last took rows to commit
        self._last_takeover = time.monotonic()
        # How often to look for other replicas' logs whose lease expired (object-store logs only).
        self._takeover_every = settings.write.log_lease_s / 4
        # Health bookkeeping only (see commit_health); the write path does not read it.
        self._last_commit_ok_at: float | None = None
        self._first_failure_at: float | None = None
        self._last_error: str | None = None
        self._commit_started_at: float | None = None
        self._oldest_queued_at: float | None = None
        self._commits_total = 0
        self._commit_failures_total = 0
        settings.home.mkdir(parents=True, exist_ok=True)
        try:
            self.catalog: Catalog = open_catalog(CATALOG_NAME, settings.catalog_properties())
            _refuse_unmigrated(settings, self.catalog)
            self._tables: dict[str, Table] = ensure_tables(self.catalog, settings.namespace)
        except LakeopsError:
            raise
        except Exception as exc:
            raise BackendUnavailableError(f"cannot open the lake at {settings.warehouse()}: {exc}") from exc
        self.wal: RecordLog = _open_log(settings)
        self.writer_id = self.wal.writer_id
        self._queues: dict[str, _Queue] = {t.name: _Queue() for t in TABLES}
        self.state = TrackingState()
        self._seen_snapshot: dict[str, int | None] = {}
        self._visible: dict[str, TableMetadata] = {}
        # The metadata file each table's rows were last folded in at (by start-up, a refresh, or our
        # own commit landing straight on it): a refresh reloads a table whose catalog pointer differs.
        self._absorbed: dict[str, str] = {}
        self._read_cache = _ReadCache(max_rows=settings.write.read_cache_rows)
        properties = settings.catalog_properties()
        self._pointers = open_pointer_reader(properties, catalog_name=CATALOG_NAME)
        # How often other writers' commits are picked up (see ``WriteConfig.refresh_interval_s``).
        self.refresh_interval_s = settings.write.refresh_interval_s or (0.25 if self._pointers else 2.0)
        self._constrained_lock = threading.Lock()
        self._constrained_seq = 0
        self._constrained_commit_lock = threading.Lock()
        self._constrained_queue: list[_ConstrainedWrite] = []
        self._checkpoints: VersionStore | None = None
        if settings.write.run_checkpoints:
            try:
                self._checkpoints = open_version_store(
                    settings.warehouse(), settings.storage.to_properties(), directory=run_checkpoint.DIRECTORY
                )
            except ValueError as exc:  # a warehouse that is neither file:// nor s3://: start-up folds every row
                log.info("no run checkpoints: %s", exc)
        self._checkpoint_thread: threading.Thread | None = None
        self._checkpoint_failed_at = -math.inf  # when writing one last came to nothing (time.monotonic())
        self.started_from_checkpoint: int | None = None  # the run checkpoint start-up read, if any
        self.renewed_from: int | None = None  # the checkpoint the last one written was built from, if any
        self._load()
        hand_back_memory()
        self._committer: threading.Thread | None = None
        if start_committer:
            self._committer = threading.Thread(target=self._run_committer, name="lakeops-committer", daemon=True)
            self._committer.start()

    # -- start-up ----------------------------------------------------------------------------

    def _load(self) -> None:
        """Fold every table into the state, then replay the log beyond each table's mark.

        Metric points are not read: their summary (``metric_latest``) holds what the state keeps.
        """
        self._backfill_summaries()
        # Capture snapshots children-first: a child table's commit always follows its parent's,
        # so every row seen has its run or experiment in the (later captured) parent snapshot.
        for table_def in reversed(TABLES):
            table = self._tables[table_def.name]
            snapshot = table.metadata.current_snapshot()
            self._seen_snapshot[table_def.name] = snapshot.snapshot_id if snapshot else None
            self._visible[table_def.name] = table.metadata
            self._absorbed[table_def.name] = table.metadata_location
        plan = self._checkpoint_plan()
        self.started_from_checkpoint = plan.checkpoint.number if plan is not None else None
        other_tags: pa.Table | None = None
        with self.state.starting():  # runs, their params, tags and latest metrics kept as columns
            for table_def in TABLES:
                name = table_def.name
                table = self._tables[name]
                if name in _NOT_FOLDED:
                    continue
                if plan is not None and name in plan.delta:
                    # From the checkpoint: its columns, then only the rows appended after it.
                    if name == RUN_CHANGES.name:
                        self.state.restore_base(plan.tables)
                    rows = plan.rows(name, table)
                    if name == TAG_CHANGES.name:
                        rows = pa.concat_tables([plan.tables["other_tags"].cast(rows.schema), rows])
                    if rows.num_rows:
                        _fold(self.state, name, rows)
                    continue
                if self._seen_snapshot[name] is not None:
                    rows = table.scan(snapshot_id=self._seen_snapshot[name]).to_arrow()
                    rows = _fold(self.state, name, rows)
                    if name == TAG_CHANGES.name:
                        other_tags = rows.filter(pc.not_equal(rows.column("entity_type"), "run"))
                if name == COVERED[-1] and plan is None:
                    self._checkpoint_later(self.state.base_alone(COVERED), other_tags)
        self.state.retry_orphans()
        marks = {name: self._mark(table) for name, table in self._tables.items()}
        replayed = 0
        for seq, payload in self.wal.replay(after_seq=min(marks.values())):
            for name, batch in decode_record(payload).items():
                targets = _replay_targets(name, seq, marks)
                if targets:
                    self.state.apply(name, batch)  # folding is idempotent: a row may feed two targets
                    replayed += batch.num_rows
                for target in targets:
                    self._enqueue(target, seq, batch)
        if replayed:
            log.info("replayed %d rows from write-ahead log %s", replayed, self.writer_id)
        self._drain_orphans(self.wal.orphans())
        self.state.retry_orphans()
        for name in CONSTRAINED_ORDER:  # from now on, only constrained rounds commit these tables
            queue = self._queues[name]
            if queue.pending:
                self._commit_table(name, queue.pending)
                queue.pending, queue.rows = [], 0

    # -- run checkpoints (lakeops/stores/run_checkpoint.py) -------------------------------------

    def _checkpoint_plan(self, tables: Mapping[str, Table] | None = None) -> _CheckpointPlan | None:
        """The newest run checkpoint and, for each table it covers, the data files appended after it
        up to ``tables``' current snapshots (start-up's tables by default); None when there is none or
        it cannot be used (a covered snapshot left the history: expired, or the table was made again),
        and the tables are folded in full."""
        if self._checkpoints is None:
            return None
        tables = self._tables if tables is None else tables
        checkpoint = run_checkpoint.latest(self._checkpoints)
        if checkpoint is None:
            return None
        delta: dict[str, list[DataFile] | None] = {}
        for name in COVERED:
            table = tables[name]
            since = checkpoint.snapshots[name]
            if since is None:
                delta[name] = None  # empty when checkpointed: every row is newer
                continue
            files = _appends_after(table, table.metadata, since)
            if files is None:
                log.info(
                    "run checkpoint %d no longer matches %s's history; folding the tables", checkpoint.number, name
                )
                return None
            delta[name] = files
        tables = run_checkpoint.read(self._checkpoints, checkpoint)
        if tables is None:
            return None
        log.info("starting from run checkpoint %d (%d runs)", checkpoint.number, checkpoint.runs)
        return _CheckpointPlan(checkpoint, tables, delta)

    def _checkpoint_later(self, base: RunBase | None, other_tags: pa.Table | None) -> None:
        """Write start-up's freshly folded run columns as a checkpoint, in the background (they cover
        exactly the snapshots start-up read, and never change: later changes make objects)."""
        if self._checkpoints is None or base is None or base.size < self.settings.write.run_checkpoint_min_runs:
            return
        snapshots = {name: self._seen_snapshot[name] for name in COVERED}
        if other_tags is None:
            other_tags = TAG_CHANGES.arrow_schema.empty_table()
        store = self._checkpoints
        self._in_background(
            lambda: run_checkpoint.write(store, {**base.to_tables(), "other_tags": other_tags}, snapshots)
        )

    def _in_background(self, write: Callable[[], int | None]) -> None:
        """Write a run checkpoint in a thread of its own (one at a time; ``close`` waits for it)."""
        if self._checkpoint_thread is not None and self._checkpoint_thread.is_alive():
            return

        def run() -> None:
            try:
                number = write()
                if number is not None:
                    log.info("wrote run checkpoint %d", number)
                    return
            except Exception:  # a checkpoint only saves time at the next start-up
                log.exception("writing a run checkpoint failed")
            self._checkpoint_failed_at = time.monotonic()

        self._checkpoint_thread = threading.Thread(target=run, name="lakeops-run-checkpoint", daemon=True)
        self._checkpoint_thread.start()

    def write_run_checkpoint(self) -> int | None:
        """Write a checkpoint of the runs' tables at their current snapshots (what ``maintain`` does
        when the newest is old). Returns its number, or None (checkpoints off, too few runs, or rows
        waiting for their run).

        Built as start-up builds its state, in a scratch state: from the newest checkpoint and the
        rows appended after it when it is usable (its columns with the runs changed since merged in,
        ``TrackingState.run_columns``: O(runs) in Arrow and numpy), else by folding every row.
        ``renewed_from`` tells which checkpoint it started from (None: the full fold)."""
        if self._checkpoints is None:
            return None
        names = (EXPERIMENT_CHANGES.name, RUN_CHANGES.name, LOGGED_MODEL_CHANGES.name, *COVERED[1:])
        tables = {name: self._reload(name) for name in reversed(names)}  # children first, as in _load
        snapshots = {n: (s.snapshot_id if (s := t.metadata.current_snapshot()) else None) for n, t in tables.items()}
        plan = self._checkpoint_plan(tables)
        scratch = TrackingState()
        other_tags = TAG_CHANGES.arrow_schema.empty_table()
        with scratch.starting():
            for name in names:
                if plan is not None and name in plan.delta:
                    if name == RUN_CHANGES.name:
                        scratch.restore_base(plan.tables)
                    rows = plan.rows(name, tables[name])
                    if name == TAG_CHANGES.name:
                        rows = pa.concat_tables([plan.tables["other_tags"].cast(rows.schema), rows])
                    rows = _fold(scratch, name, rows) if rows.num_rows else rows
                elif snapshots[name] is not None:
                    rows = _fold(scratch, name, tables[name].scan(snapshot_id=snapshots[name]).to_arrow())
                else:
                    continue
                if name == TAG_CHANGES.name:
                    other_tags = rows.filter(pc.not_equal(rows.column("entity_type"), "run"))
        scratch.retry_orphans()
        columns = scratch.run_columns(COVERED)
        if columns is None or columns["runs"].num_rows < self.settings.write.run_checkpoint_min_runs:
            return None
        self.renewed_from = plan.checkpoint.number if plan is not None else None
        return run_checkpoint.write(
            self._checkpoints, {**columns, "other_tags": other_tags}, {n: snapshots[n] for n in COVERED}
        )

    def _backfill_summaries(self) -> None:
        """Build a summary table once from its source, on a lake written before the summary existed.

        The summary takes the source's write-ahead-log marks, so replay feeds it exactly the rows
        the source has not committed yet. Replicas starting together race: the first commit wins
        and the others, finding the summary no longer empty, keep it.
        """
        for summary in SUMMARIES:
            target = self._tables[summary.table.name]
            source = self._tables[summary.source.name]
            snapshot = source.metadata.current_snapshot()
            if target.metadata.current_snapshot() is not None or snapshot is None:
                continue
            marks = {k: v for k, v in source.properties.items() if k.startswith(WAL_MARK_PREFIX)}
            rows = summary.summarize(source.scan(snapshot_id=snapshot.snapshot_id).to_arrow())
            log.info("building %s from %s (%d rows)", summary.table.name, summary.source.name, rows.num_rows)
            for attempt in range(_OWN_RETRIES):
                try:
                    with transaction(target) as tx:
                        tx.append(
                            rows, snapshot_properties={SUMMARY_OPERATION: "backfill", SUMMARY_WRITER: self.writer_id}
                        )
                        tx.set_properties(marks)
                    break
                except CommitFailedException:
                    target = self._reload(summary.table.name)
                    if target.metadata.current_snapshot() is not None:
                        break
                    time.sleep(_backoff(attempt))
            self._tables[summary.table.name] = self._reload(summary.table.name)

    def _mark(self, table: Table, writer_id: str | None = None) -> int:
        return int(table.properties.get(WAL_MARK_PREFIX + (writer_id or self.writer_id), "0"))

    def _drain_orphans(self, orphans: Iterable[RecordLog]) -> None:
        """Replay and commit the logs of dead processes, then delete them.

        Local logs: a restarted process adopts one orphaned log of its home as its own; any others
        (more processes died than came back) are drained here at start-up. Object-store logs: the
        logs of other replicas whose lease expired, taken over while running (``_take_over_logs``).
        Rows a log's owner already committed are skipped by that log's marks, and the commits here
        advance the same marks, so each row lands once even if this process dies mid-drain and
        another one drains the log again. The commits carry this process's writer id: the rows are
        folded in here already, and other replicas fold them in from the snapshots as usual.
        """
        for orphan in orphans:
            marks = {name: self._mark(table, orphan.writer_id) for name, table in self._tables.items()}
            batches: dict[str, list[tuple[int, pa.RecordBatch]]] = {}
            for seq, payload in orphan.replay(after_seq=min(marks.values())):
                for name, batch in decode_record(payload).items():
                    targets = _replay_targets(name, seq, marks)
                    if targets:
                        with self._lock:
                            self.state.apply(name, batch)
                    for target in targets:
                        batches.setdefault(target, []).append((seq, batch))
            for table_def in TABLES:
                if batches.get(table_def.name):
                    self._commit_table(table_def.name, batches[table_def.name], wal=orphan)
            log.info("drained write-ahead log %s (%d tables)", orphan.writer_id, len(batches))
            orphan.discard()

    def _take_over_logs(self) -> None:
        """Drain other replicas' object-store logs whose lease expired (see ``lakeops/object_wal.py``).

        Their owner committed some rows before it died: a refresh first folds those in (the owner
        can commit nothing after its lease lapsed, and the log is taken only after that).
        """
        self._last_takeover = time.monotonic()
        taken = self.wal.orphans()
        if not taken:
            return
        self.refresh()
        with self._commit_lock:
            try:
                self._drain_orphans(taken)
            finally:
                with self._lock:
                    self.state.retry_orphans()

    # -- writing -----------------------------------------------------------------------------

    def write(self, build: Callable[[TrackingState], Rows]) -> None:
        """Make the rows ``build`` returns durable, visible and queued for commit.

        ``build`` runs under the state lock: it may inspect the state and raise to refuse the
        write, in which case nothing is stored. Returns once the log record is on disk. A write
        with rows for a constrained table takes the constrained path (``_write_constrained``).
        """
        with self._lock:
            seq = self.wal.last_seq + 1  # appends happen only under this lock, so this is the next seq
            rows = {name: _stamp_seq(batch, seq) for name, batch in build(self.state).items() if batch.num_rows}
            if not rows:
                return
            ticket = None if any(name in CONSTRAINED for name in rows) else self._log_and_apply(seq, rows)
        if ticket is None:
            self._write_constrained(build)
        else:
            self._after_append(ticket)

    def _log_and_apply(self, seq: int, rows: Rows, *, committed: Iterable[str] = ()) -> int:
        """Append ``rows`` to the log as record ``seq``, fold them in, queue what is not ``committed``."""
        logged, ticket = self.wal.append(encode_record(rows))
        assert logged == seq
        for name, batch in rows.items():
            self.state.apply(name, batch)
            if name in committed:
                continue
            self._enqueue(name, seq, batch)
            summary = SUMMARY_OF_SOURCE.get(name)
            if summary is not None:  # summarised when committed, in the same round
                self._enqueue(summary.table.name, seq, batch)
        return ticket

    def _after_append(self, ticket: int) -> None:
        self.wal.sync(ticket)
        with self._lock:
            queued = sum(q.rows for name, q in self._queues.items() if name not in SUMMARY_BY_NAME)
        # Commit at once when the committer has been idle for a commit interval (a sparse write: other
        # replicas see it one commit later, not a committer tick later); a steady stream still commits
        # once per interval.
        idle = time.monotonic() - self._last_commit_began >= self.settings.write.commit_interval_s
        if queued >= self.settings.write.commit_max_rows or idle:
            self._wake.set()

    # -- constrained writes ------------------------------------------------------------------

    def _write_constrained(self, build: Callable[[TrackingState], Rows]) -> None:
        """A write that must hold against every replica: checked on the latest commits, committed now.

        Constrained writes queue up; whichever caller leads takes them all (``_run_constrained``),
        so concurrent callers share one Iceberg commit as they share one fsync on the unconstrained
        path. Constrained tables are committed only here (their replayed rows at start-up), so
        rounds need not wait for the group commit. The caller returns once its write is committed and
        logged, or raises what its ``build`` raised on the newest state.
        """
        request = _ConstrainedWrite(build)
        with self._constrained_lock:
            self._constrained_queue.append(request)
        while not request.done:
            # One caller at a time runs rounds (taking everything queued); the others wait for
            # their outcome, and one of them leads the next round if theirs is still queued.
            if self._constrained_commit_lock.acquire(blocking=False):
                try:
                    while not request.done:
                        self._run_constrained()
                finally:
                    self._constrained_commit_lock.release()
            else:
                request.finished.wait(0.005)
        if request.error is not None:
            raise request.error
        if request.ticket is not None:
            self._after_append(request.ticket)

    def _run_constrained(self) -> None:
        """Check and commit every queued constrained write. Called by one caller at a time.

        Each round: the constrained tables the writes touch are loaded at their current snapshot
        and other replicas' rows folded into the state; under the state lock every ``build`` runs
        on that state (refusing what now conflicts), and the writes whose first constrained table
        is the round's and whose keys (``TableDef.constraint_keys``) no earlier write of the round
        claims form the round's group; then, outside the lock, the group's rows are appended in one
        commit on the catalog's optimistic concurrency, with no blind retry. If another replica
        committed in between, the commit fails and the group runs again on the newer state. Only a
        committed write is folded in, has its other rows logged, and is acknowledged: two replicas
        can never both acknowledge values that contradict each other. Writes left out wait for the
        next round. The constrained rows are durable once committed, so they are not logged.
        """
        with self._constrained_lock:
            pending, self._constrained_queue = self._constrained_queue, []
        conflicts = 0
        while pending:
            with self._lock:
                touched: set[str] = set()
                for request in pending:  # which tables to bring up to date; the real checks follow
                    with contextlib.suppress(Exception):
                        touched |= {n for n, b in request.build(self.state).items() if n in CONSTRAINED and b.num_rows}
            fresh = {name: self._reload(name) for name in sorted(touched)}
            with self._lock:
                for name, table in fresh.items():
                    self._absorb(name, table)
                if fresh:
                    self.state.retry_orphans()
                target, group, later = self._constrained_group(pending)
                base = self._tables[target] if target is not None else None
            pending = later
            if target is None or base is None:
                continue
            try:
                committed = self._commit_now(base, target, [rows[target] for _r, rows, _n in group])
            except CommitFailedException:
                log.info("constrained write to %s met a concurrent commit; checking again", target)
                pending = [request for request, _rows, _names in group] + pending
                conflicts += 1
                if conflicts >= _OWN_RETRIES:
                    for request in pending:
                        request.finish(
                            error=ConflictError("too many concurrent writes to the same entities; try again")
                        )
                    return
                time.sleep(_backoff(conflicts))
                continue
            tables = {target: committed}
            for name in CONSTRAINED_ORDER:  # Iceberg has no multi-table commit: serialised on the first
                rest = [rows[name] for _r, rows, _n in group if name != target and name in rows]
                if rest:
                    tables[name] = self._commit_now(self._reload(name), name, rest, retry=True)
            with self._lock:
                for name, table in tables.items():  # reads (SQL, scans) see the rows just committed
                    if _sequence(table) >= _sequence(self._tables[name]):
                        self._tables[name] = table
                        self._visible[name] = table.metadata
                        self._advance_seen(name, table, self.writer_id)
                for request, rows, names in group:
                    for name in names:
                        self.state.apply(name, rows[name])
                    others = {n: b for n, b in rows.items() if n not in names}
                    ticket = None
                    if others:
                        seq = self.wal.last_seq + 1
                        ticket = self._log_and_apply(seq, {n: _stamp_seq(b, seq) for n, b in others.items()})
                    request.finish(ticket=ticket)

    def _constrained_group(
        self, pending: list[_ConstrainedWrite]
    ) -> tuple[str | None, list[tuple[_ConstrainedWrite, Rows, list[str]]], list[_ConstrainedWrite]]:
        """Build every pending write on the current state (under the state lock) and pick this round's group."""
        target: str | None = None
        group: list[tuple[_ConstrainedWrite, Rows, list[str]]] = []
        claimed: set[tuple[str, tuple[str, ...], tuple[Any, ...]]] = set()
        later: list[_ConstrainedWrite] = []
        for request in pending:
            try:
                rows = {n: b for n, b in request.build(self.state).items() if b.num_rows}
            except Exception as exc:
                request.finish(error=exc)
                continue
            names = [t.name for t in TABLES if t.name in rows and t.name in CONSTRAINED]
            if not names:  # nothing left to check (e.g. the same param value again)
                seq = self.wal.last_seq + 1
                stamped = {n: _stamp_seq(b, seq) for n, b in rows.items()}
                request.finish(ticket=self._log_and_apply(seq, stamped) if rows else None)
                continue
            keys = _claims(rows, names)
            if (target is not None and names[0] != target) or keys & claimed:
                later.append(request)
                continue
            target = names[0]
            claimed |= keys
            # Change rows order one writer's changes by wal_seq; constrained rows are not logged,
            # so they take numbers from a counter of their own that never goes back.
            self._constrained_seq = max(self._constrained_seq, self.wal.last_seq) + 1
            group.append((request, {n: _stamp_seq(b, self._constrained_seq) for n, b in rows.items()}, names))
        return target, group, later

    def _commit_now(self, table: Table, name: str, batches: list[pa.RecordBatch], *, retry: bool = False) -> Table:
        """Append constrained rows in one commit on top of ``table``'s snapshot; the table after it.

        Raises ``CommitFailedException`` if the table moved since ``table`` was loaded, unless
        ``retry`` (rows already checked through another table), which reloads and appends again.
        """
        table_def = TABLES_BY_NAME[name]
        data = pa.Table.from_batches(batches, schema=table_def.arrow_schema)
        if table_def.sort_columns:
            data = data.sort_by([(c, "ascending") for c in table_def.sort_columns])
        for attempt in range(_OWN_RETRIES):
            try:
                with transaction(table) as tx:
                    tx.append(data, snapshot_properties={SUMMARY_WRITER: self.writer_id, SUMMARY_OPERATION: "append"})
                return table  # pyiceberg moved this handle to the snapshot it committed
            except CommitFailedException:
                if not retry:
                    raise
                table = self._reload(name)
                time.sleep(_backoff(attempt))
        raise ConflictError(f"could not commit to {name} after repeated conflicts")

    def _absorb(self, name: str, table: Table) -> int:
        """Fold in the rows other writers added to ``name`` up to ``table``'s snapshot; make it ours.

        Under the state lock as a whole, so a refresh and a constrained round never fold the same
        rows twice; a ``table`` older than the one we hold (a refresh that loaded it before a
        constrained commit landed) changes nothing.
        """
        with self._lock:
            if _sequence(table) < _sequence(self._tables[name]):
                return 0
            # Other writers' metric points reach the state through their summary rows.
            rows = None if name in _NOT_FOLDED else self._foreign_rows(name, table)
            if rows is not None:
                self.state.apply(name, rows)
            self._tables[name] = table
            self._visible[name] = table.metadata
            snapshot = table.metadata.current_snapshot()
            self._seen_snapshot[name] = snapshot.snapshot_id if snapshot else None
            self._absorbed[name] = table.metadata_location
            return rows.num_rows if rows is not None else 0

    def _advance_seen(self, name: str, table: Table, writer_id: str) -> None:
        """After a commit of ours (or of a drained log's rows, already folded in): if it landed right on
        the snapshot we last folded in, nothing foreign lies between, so the refresh may skip this table.

        Otherwise (pyiceberg rebased the append on another writer's snapshot) the seen mark stays and
        the next refresh folds in the rows that other writer added. Under the state lock.
        """
        snapshot = table.metadata.current_snapshot()
        if snapshot is None or snapshot.parent_snapshot_id != self._seen_snapshot.get(name):
            return
        props = snapshot.summary.additional_properties if snapshot.summary is not None else {}
        if props.get(SUMMARY_WRITER) != writer_id:
            return
        self._seen_snapshot[name] = snapshot.snapshot_id
        self._absorbed[name] = table.metadata_location

    def _enqueue(self, name: str, seq: int, batch: pa.RecordBatch) -> None:
        queue = self._queues[name]
        if not queue.pending and not queue.inflight:  # rows put back after a failed round keep their time
            queue.since = self.clock()
        queue.pending.append((seq, batch))
        queue.rows += batch.num_rows
        if self._oldest_queued_at is None:
            self._oldest_queued_at = self.clock()

    # -- committing --------------------------------------------------------------------------

    def commit(self, *, deferring: bool = False) -> CommitStats:
        """Commit everything queued now: one Iceberg append per table. Thread-safe.

        ``deferring`` (the committer's rounds) leaves the trace tables queued until they have waited
        ``write.traces_commit_interval_s`` or many rows wait (``_deferred``).
        """
        started = time.perf_counter()
        with self._commit_lock:
            with self._lock:
                through = self.wal.last_seq
                work: dict[str, list[tuple[int, pa.RecordBatch]]] = {}
                for name, queue in self._queues.items():
                    if queue.pending and not (deferring and self._deferred(name, queue)):
                        queue.inflight, queue.pending = queue.pending, []
                        queue.rows = 0
                        work[name] = queue.inflight
            total = 0
            began = self.clock()
            if work:
                self._commit_started_at = began
            try:
                for table_def in TABLES:  # parents before children; see _load
                    batches = work.get(table_def.name)
                    if batches:
                        total += self._commit_table(table_def.name, batches)
            except BaseException as exc:
                self._requeue_inflight()
                if work:
                    self._commit_failures_total += 1
                    self._first_failure_at = self._first_failure_at or self.clock()
                    self._last_error = self.settings.redact(f"{type(exc).__name__}: {exc}")[:500]
                raise
            finally:
                self._commit_started_at = None
            with self._lock:
                low_water = min(
                    (q.pending[0][0] - 1 for q in self._queues.values() if q.pending),
                    default=through,
                )
                if work:  # rows still pending arrived after this round took its work, or were deferred
                    self._oldest_queued_at = min(
                        (began if name in work else q.since for name, q in self._queues.items() if q.pending),
                        default=None,
                    )
            if work:
                self.wal.truncate_through(low_water)
                self._commits += 1
                self._commits_total += 1
                self._last_commit_ok_at = self.clock()
                self._first_failure_at = None
        return CommitStats(tables=len(work), rows=total, seconds=time.perf_counter() - started)

    def _deferred(self, name: str, queue: _Queue) -> bool:
        """Whether a committer round leaves ``name``'s queue for a later one.

        Spans come by the thousand (an OTLP request carries hundreds, with a trace info and tag
        rows for each root span), and a round of the trace tables costs ~100-150 ms of CPU: a
        Parquet file per bucket of the spans table, three snapshots, manifests to merge. Taken
        every half-second round, that was most of a span's ingest cost. These tables are read with
        the queue merged in (``scan_with_pending``) and the log holds the rows meanwhile, so waiting
        costs nothing but their visibility to other replicas.
        """
        write = self.settings.write
        return (
            name in _DEFERRED_TABLES
            and queue.rows < write.commit_max_rows
            and self.clock() - queue.since < write.traces_commit_interval_s
        )

    def _requeue_inflight(self) -> None:
        """After a failed round, put rows that did not commit back in front of the queue.

        The next round commits them again; until then the log keeps them (the low-water mark
        stays below them), so a crash in between loses nothing either.
        """
        with self._lock:
            for queue in self._queues.values():
                if queue.inflight:
                    queue.pending = queue.inflight + queue.pending
                    queue.rows += sum(b.num_rows for _s, b in queue.inflight)
                    queue.inflight = []

    def _commit_table(
        self, name: str, batches: list[tuple[int, pa.RecordBatch]], *, wal: RecordLog | None = None
    ) -> int:
        """One Iceberg append of ``batches`` that also records how far into ``wal``'s records it reaches.

        ``wal`` is this process's own log unless a dead process's log is being drained. Nothing is
        committed once the log is no longer ours (an object-store log's lease lapsed or was taken).
        """
        wal = wal or self.wal
        writer_id = wal.writer_id
        table_def = TABLES_BY_NAME[name]
        summary = SUMMARY_BY_NAME.get(name)
        if summary is not None:  # the queue holds the source's rows; commit their summary
            data = summary.summarize(
                pa.Table.from_batches([b for _s, b in batches], schema=summary.source.arrow_schema)
            )
        else:
            data = pa.Table.from_batches([b for _s, b in batches], schema=table_def.arrow_schema)
        sort_keys = [(c, "ascending") for c in table_def.sort_columns]
        by_bucket = name == SPANS.name  # sorted with the bucket first, see _append_by_bucket
        if sort_keys and not by_bucket:
            data = data.sort_by(sort_keys)
        seq = max(s for s, _b in batches)
        table = self._tables[name]
        # Where pyiceberg does not retry (summary tables), this loop is the only retry.
        attempts = 5 if int(table.properties.get("commit.retry.num-retries", "4")) else _OWN_RETRIES
        for attempt in range(attempts):
            wal.check_writable()
            try:
                with transaction(table) as tx:
                    properties = {
                        SUMMARY_WRITER: self.writer_id,
                        SUMMARY_SEQ: str(seq),
                        SUMMARY_OPERATION: "append",
                        **({SUMMARY_LOG: writer_id} if writer_id != self.writer_id else {}),
                    }
                    if by_bucket:
                        _append_by_bucket(tx, data, sort_keys, properties)
                    else:
                        tx.append(data, snapshot_properties=properties)
                    tx.set_properties({WAL_MARK_PREFIX + writer_id: str(seq)})
                break
            except CommitFailedException as exc:
                # pyiceberg already retried with backoff; reload and try a few more rounds.
                log.warning("commit to %s failed (%s), attempt %d", name, exc, attempt + 1)
                table = self._reload(name)
                if self._mark(table, writer_id) >= seq:  # the commit landed even though it was reported lost
                    break
                time.sleep(_backoff(attempt))
        else:
            raise ConflictError(f"could not commit to {name} after repeated conflicts")
        with self._lock:
            self._tables[name] = table
            self._visible[name] = table.metadata
            self._advance_seen(name, table, self.writer_id)
            if writer_id == self.writer_id:
                self._queues[name].inflight = []
        return int(data.num_rows)

    def _reload(self, name: str) -> Table:
        return self.catalog.load_table((self.settings.namespace, name))

    def _run_committer(self) -> None:
        interval = self.settings.write.commit_interval_s
        refresh_every = self.refresh_interval_s
        while not self._stop.is_set():
            self._wake.wait(min(interval, refresh_every))
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                if (woken or time.monotonic() - self._last_commit_began >= interval) and any(
                    q.pending for q in self._queues.values()
                ):
                    self._last_commit_began = time.monotonic()
                    self.commit(deferring=True)
                if time.monotonic() - self._last_refresh >= refresh_every:
                    self.refresh()
                if time.monotonic() - self._last_takeover >= self._takeover_every:
                    self._take_over_logs()
                every = self.settings.write.maintain_every_commits
                if every and self._commits >= every:
                    self._commits = 0
                    self.maintain()
            except Exception:  # the committer must survive a bad round; the log still holds the rows
                log.exception("committer round failed; will retry")
                self._stop.wait(min(5.0, interval * 2))

    # -- other writers -----------------------------------------------------------------------

    def refresh(self, *, newer_than: float | None = None) -> int:
        """Fold in rows other writers committed since we last looked. Returns rows applied.

        With ``newer_than`` (a ``time.monotonic()`` reading), nothing is done if a refresh that began
        after that moment has completed meanwhile: callers that missed an id at the same moment
        (``api/refresh_on_miss.py``) share one refresh instead of queueing one each.
        """
        self._last_refresh = time.monotonic()
        with self._commit_lock:
            if newer_than is not None and self._refreshed_from >= newer_than:
                return 0
            began = time.monotonic()
            fresh: dict[str, Table] = {}
            moved = self._moved_tables()
            for table_def in reversed(TABLES):  # children first, as in _load
                if moved is not None and table_def.name not in moved:
                    continue
                try:
                    fresh[table_def.name] = self._reload(table_def.name)
                except NoSuchTableError as exc:
                    raise BackendUnavailableError(f"table {table_def.name} disappeared") from exc
            applied = sum(self._absorb(d.name, fresh[d.name]) for d in TABLES if d.name in fresh)
            if applied:
                with self._lock:
                    self.state.retry_orphans()
            self._refreshed_from = began
            return applied

    def _moved_tables(self) -> set[str] | None:
        """Tables whose metadata pointer moved since we loaded them, where one catalog request tells
        (SQLite: one read of ``iceberg_tables``; the object-store catalog: one listing), so an idle
        refresh costs a request instead of loading every table; None where each table must be loaded."""
        if self._pointers is None:
            return None
        try:
            pointers = self._pointers.read(self.settings.namespace)
        except PointerReadError:
            return None
        with self._lock:
            # Against what was folded in, not the handle we hold: our own commit may have landed on top
            # of another writer's, and the handle then points past rows the state does not have yet.
            return {name for name in self._tables if pointers.get(name) != self._absorbed.get(name)}

    def _foreign_rows(self, name: str, table: Table) -> pa.Table | None:
        """Rows added by other writers' snapshots between the one we saw and the current one."""
        seen = self._seen_snapshot.get(name)
        snapshot = table.metadata.current_snapshot()
        new_files: list[DataFile] = []
        while snapshot is not None and snapshot.snapshot_id != seen:
            summary = snapshot.summary
            props = summary.additional_properties if summary is not None else {}
            writer = props.get(SUMMARY_WRITER)
            if writer != self.writer_id and props.get(SUMMARY_OPERATION) == "append":
                new_files.extend(_added_files(table, snapshot.snapshot_id, snapshot.manifest_list))
            if snapshot.parent_snapshot_id is None:
                break
            parent = table.metadata.snapshot_by_id(snapshot.parent_snapshot_id)
            if parent is None:
                if seen is not None:
                    log.warning("snapshot history of %s expired past what we saw; rows may be missed", name)
                break
            snapshot = parent
        if not new_files:
            return None
        rows = _read_files(table.metadata, table, new_files, AlwaysTrue())
        if "changed_at" in rows.column_names:
            rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
        return rows

    # -- reading -----------------------------------------------------------------------------

    def scan_with_pending(
        self,
        name: str,
        row_filter: BooleanExpression,
        pending_mask: Callable[[pa.Table], pa.Array],
        *,
        cache_key: str | None = None,
        file_filter: Callable[[DataFile], bool] | None = None,
    ) -> pa.Table:
        """Committed rows matching ``row_filter`` plus queued rows matching ``pending_mask``.

        The committed part is read at the snapshot that was current when the queued rows were
        taken, so no row is seen twice or missed while a commit lands. With a ``cache_key``, the
        committed part is kept in a bounded LRU with the snapshot it was read at. A later read at a
        newer snapshot reads only the files appended since (``file_filter`` prunes them further),
        so read cost does not grow with the number of small files between compactions; if any
        snapshot in between is not a plain append (a compaction), it reads everything again.
        """
        table_def = TABLES_BY_NAME[name]
        with self._lock:
            metadata = self._visible[name]
            queue = self._queues[name]
            waiting = [b for _s, b in queue.inflight] + [b for _s, b in queue.pending]
            table = self._tables[name]
        parts: list[pa.Table] = []
        snapshot = metadata.current_snapshot()
        if snapshot is not None:
            slot = (name, cache_key) if cache_key is not None else None
            cached = self._read_cache.get(slot) if slot is not None else None
            committed: pa.Table | None = None
            if cached is not None:
                if cached[0] == snapshot.snapshot_id:
                    committed = cached[1]
                else:
                    added = _appended_since(table, metadata, cached[0])
                    if added is not None:
                        added = [f for f in added if file_filter is None or file_filter(f)]
                        fresh = _read_files(metadata, table, added, row_filter) if added else None
                        committed = (
                            cached[1]
                            if fresh is None
                            else pa.concat_tables(
                                [cached[1], fresh.select(cached[1].column_names).cast(cached[1].schema)]
                            )
                        )
            if committed is None:
                tasks = table.scan(row_filter=row_filter, snapshot_id=snapshot.snapshot_id).plan_files()
                committed = _read_tasks(metadata, table, tasks, row_filter)
            if slot is not None and (cached is None or cached[0] != snapshot.snapshot_id):
                self._read_cache.put(slot, snapshot.snapshot_id, committed)
            parts.append(committed)
        if waiting:
            queued = pa.Table.from_batches(waiting, schema=table_def.arrow_schema)
            parts.append(queued.filter(pending_mask(queued)))
        if not parts:
            return table_def.arrow_schema.empty_table()
        return pa.concat_tables([p.select(table_def.arrow_schema.names).cast(table_def.arrow_schema) for p in parts])

    def metric_history(self, run_id: str, key: str) -> pa.Table:
        """Every point of one metric of one run, ordered by step then timestamp."""
        rows = self.scan_with_pending(
            METRICS.name,
            And(_equal_to("run_id", run_id), _equal_to("key", key)),
            lambda t: pc.and_(pc.equal(t["run_id"], run_id), pc.equal(t["key"], key)),
            cache_key=f"{run_id}\x00{key}",
            file_filter=_in_bucket(run_id),
        )
        return rows.sort_by([("step", "ascending"), ("recorded_at", "ascending")])

    def table(self, name: str) -> Table:
        """The current handle of one of the lake's tables (for maintenance and tests)."""
        with self._lock:
            return self._tables[name]

    def commit_health(self) -> CommitHealth:
        """A read-only snapshot of the committer's record (for ``/health`` and ``/metrics``)."""
        with self._lock:
            return CommitHealth(
                at=self.clock(),
                last_commit_ok_at=self._last_commit_ok_at,
                first_failure_at=self._first_failure_at,
                last_error=self._last_error,
                commit_started_at=self._commit_started_at,
                oldest_queued_at=self._oldest_queued_at,
                commits_total=self._commits_total,
                commit_failures_total=self._commit_failures_total,
            )

    def queued_rows(self) -> int:
        """Rows acknowledged but not yet in an Iceberg commit."""
        with self._lock:
            return sum(
                b.num_rows
                for name, q in self._queues.items()
                if name not in SUMMARY_BY_NAME  # the same rows as their source's queue
                for _s, b in [*q.pending, *q.inflight]
            )

    def table_version(self, name: str) -> tuple[int | None, int]:
        """A token that changes whenever what ``scan_with_pending`` of ``name`` returns may change: the
        visible snapshot (a commit, a refresh, maintenance) and the newest queued sequence number (a
        write; sequence numbers only grow). Read before scanning, it lets a caller reuse what it
        derived from an earlier scan while the token stays the same."""
        with self._lock:
            snapshot = self._visible[name].current_snapshot()
            queue = self._queues[name]
            newest = max((seq for seq, _b in [*queue.inflight, *queue.pending]), default=0)
            return (None if snapshot is None else snapshot.snapshot_id, newest)

    # -- maintenance -------------------------------------------------------------------------

    def maintain(
        self, *, compact: bool = True, expire: bool = True, on_table: Callable[[str], object] | None = None
    ) -> dict[str, dict[str, int]]:
        """Compact small files and expire old snapshots on every table (``on_table(name)`` after each)."""
        report: dict[str, dict[str, int]] = {}
        retention = self.settings.write.snapshot_retention_s
        checkpoint = run_checkpoint.latest(self._checkpoints) if self._checkpoints is not None else None
        refresh = (
            checkpoint is None or self.clock() - checkpoint.created_at >= self.settings.write.run_checkpoint_every_s
        )
        with self._commit_lock:
            for table_def in TABLES:
                table = self._reload(table_def.name)
                entry: dict[str, int] = {}
                if compact:
                    summary = SUMMARY_BY_NAME.get(table_def.name)
                    entry["files_rewritten"], entry["files_written"] = compact_table(
                        table,
                        table_def,
                        snapshot_properties={SUMMARY_OPERATION: "compact", SUMMARY_WRITER: self.writer_id},
                        # a summary's partial rows fold into one per key: worth it from two files on
                        reduce=summary.reduce if summary is not None else None,
                        min_files=2 if summary is not None else MIN_FILES_TO_COMPACT,
                    )
                    table = self._reload(table_def.name)
                if expire:
                    older_than = datetime.fromtimestamp(self.clock() - retention, tz=UTC)
                    # The newest run checkpoint needs its tables' history from its snapshot on (start-up
                    # reads what was appended after it): kept while it is short, else a new checkpoint.
                    protect = (
                        _history_since(table.metadata, checkpoint.snapshots.get(table_def.name)) if checkpoint else []
                    )
                    if len(protect) > _PROTECT_AT_MOST * self.settings.write.max_snapshots:
                        protect, refresh = [], True
                    entry["snapshots_expired"] = expire_snapshots(
                        table, older_than=older_than, keep_at_most=self.settings.write.max_snapshots, protect=protect
                    )
                    table = self._reload(table_def.name)
                with self._lock:
                    # Rows of our own committed appends are already in state; skip to the new head.
                    self._tables[table_def.name] = table
                    self._visible[table_def.name] = table.metadata
                report[table_def.name] = entry
                if on_table is not None:
                    on_table(table_def.name)
        if (
            refresh
            and self._checkpoints is not None
            and len(self.state.runs) >= self.settings.write.run_checkpoint_min_runs
            # a fold that could not be checkpointed (rows waiting for their run) is not redone each round
            and time.monotonic() - self._checkpoint_failed_at >= self.settings.write.run_checkpoint_every_s
        ):
            self._in_background(self.write_run_checkpoint)
        return report

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued, stop the committer and release the log. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._committer is not None:
            self._committer.join(timeout=60)
        if self._checkpoint_thread is not None:
            self._checkpoint_thread.join()
        committed = False
        try:
            self.commit()
            with self._lock:
                committed = not any(q.pending or q.inflight for q in self._queues.values())
        finally:
            self.wal.close(committed=committed)

    def __enter__(self) -> IcebergStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_OWN_RETRIES = 30
CONSTRAINED = frozenset(t.name for t in TABLES if t.constrained)
CONSTRAINED_ORDER = tuple(t.name for t in TABLES if t.constrained)


@dataclass
class _ConstrainedWrite:
    """A constrained write waiting for its round, then its outcome."""

    build: Callable[[TrackingState], Rows]
    done: bool = False
    error: BaseException | None = None
    ticket: int | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def finish(self, *, error: BaseException | None = None, ticket: int | None = None) -> None:
        self.error, self.ticket, self.done = error, ticket, True
        self.finished.set()


def _sequence(table: Table) -> int:
    """How far a loaded table has come: its last sequence number (0 for v1 tables, which lack one)."""
    return int(getattr(table.metadata, "last_sequence_number", 0))


def _claims(rows: Rows, names: list[str]) -> set[tuple[str, tuple[str, ...], tuple[Any, ...]]]:
    """What a write's rows claim: for each constrained table and key, the key values of its rows."""
    found: set[tuple[str, tuple[str, ...], tuple[Any, ...]]] = set()
    for name in names:
        batch = rows[name]
        for columns in TABLES_BY_NAME[name].constraint_keys:
            values = zip(*(batch.column(c).to_pylist() for c in columns), strict=True)
            found.update((name, columns, v) for v in values)
    return found


# Tables never folded into the state: read on demand, or through their summary (metric points).
_NOT_FOLDED = frozenset(ON_DEMAND_TABLES) | frozenset(SUMMARY_OF_SOURCE)


def _fold(state: TrackingState, name: str, rows: pa.Table) -> pa.Table:
    """Fold start-up's (or a checkpoint's later) rows of table ``name`` in the order the fold needs;
    returns them as folded."""
    summary = SUMMARY_BY_NAME.get(name)
    if summary is not None and not state.takes_into_base("metrics"):
        rows = summary.reduce(rows)  # fewer rows to fold (the run columns reduce their own)
    elif "changed_at" in rows.column_names:
        rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
    elif "created_at" in rows.column_names:
        # Append-only logs fold in time order too: a scan lists the newest commit's files
        # first, so e.g. a dataset's versions came back newest first after a restart.
        rows = rows.sort_by([("created_at", "ascending")])
    state.apply(name, rows)
    return rows


@dataclass
class _CheckpointPlan:
    """A run checkpoint start-up uses, and the data files each covered table appended after it
    (None: the table was empty then, so all of it)."""

    checkpoint: run_checkpoint.Checkpoint
    tables: dict[str, pa.Table]
    delta: dict[str, list[DataFile] | None]

    def rows(self, name: str, table: Table) -> pa.Table:
        files = self.delta[name]
        snapshot = table.metadata.current_snapshot()
        if snapshot is None:
            return TABLES_BY_NAME[name].arrow_schema.empty_table()
        if files is None:
            return table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()
        if not files:
            return TABLES_BY_NAME[name].arrow_schema.empty_table()
        return _read_files(table.metadata, table, files, AlwaysTrue())


_PROTECT_AT_MOST = 4  # snapshots kept for a run checkpoint: at most this many times write.max_snapshots


def _history_since(metadata: TableMetadata, since: int | None) -> list[int]:
    """Ids of the snapshots from ``since`` to the current one ([] if ``since`` is not in its history)."""
    ids: list[int] = []
    snapshot = metadata.current_snapshot()
    while snapshot is not None:
        ids.append(snapshot.snapshot_id)
        if snapshot.snapshot_id == since:
            return ids
        parent = snapshot.parent_snapshot_id
        snapshot = metadata.snapshot_by_id(parent) if parent is not None else None
    return []


def _appends_after(table: Table, metadata: TableMetadata, since: int) -> list[DataFile] | None:
    """Data files appended after snapshot ``since`` up to the current one, skipping compactions (they
    rewrite rows already there); None if ``since`` is not in the current snapshot's history or a
    snapshot in between was made by something else."""
    appended: list[list[DataFile]] = []  # newest snapshot first
    snapshot = metadata.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != since:
        summary = snapshot.summary
        operation = summary.additional_properties.get(SUMMARY_OPERATION) if summary is not None else None
        if operation in ("append", "backfill"):
            appended.append(list(_added_files(table, snapshot.snapshot_id, snapshot.manifest_list)))
        elif operation != "compact":
            return None
        parent = snapshot.parent_snapshot_id
        snapshot = metadata.snapshot_by_id(parent) if parent is not None else None
    return [f for files in reversed(appended) for f in files] if snapshot is not None else None


def hand_back_memory() -> None:
    """Return the memory start-up's scans freed to the operating system.

    Arrow's pool (mimalloc) keeps the pages of freed buffers for reuse, and glibc keeps freed heap
    below its top: after folding a 100k-run lake they held ~1 KB and ~0.2 KB per run of resident
    memory that a server never uses again. (No library wraps ``malloc_trim``; it is one libc call,
    absent on non-glibc platforms, where this does nothing.)
    """
    pa.default_memory_pool().release_unused()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own symbols: libc's
    if trim is not None:
        trim(0)


def _backoff(attempt: int) -> float:
    return float(min(2.0, 0.02 * 2**attempt))


def _replay_targets(name: str, seq: int, marks: dict[str, int]) -> list[str]:
    """The queues a logged row of ``name`` at ``seq`` still has to reach: its table, and its
    summary table, each unless that table's mark shows the row already committed there."""
    targets = [name] if seq > marks[name] else []
    summary = SUMMARY_OF_SOURCE.get(name)
    if summary is not None and seq > marks[summary.table.name]:
        targets.append(summary.table.name)
    return targets


# pyiceberg's pydantic-generated signature for EqualTo confuses mypy; this is its documented call form.
_equal_to = cast(Callable[[str, Any], BooleanExpression], EqualTo)


def _append_by_bucket(
    tx: Transaction, data: pa.Table, sort_keys: list[tuple[str, str]], snapshot_properties: dict[str, str]
) -> None:
    """``tx.append(data.sort_by(sort_keys))`` for a table partitioned by one bucket transform (spans).

    pyiceberg splits a table into partitions with a group-by and then one filter over every row
    per partition: 16 passes over a round's spans (content JSON included), most of a spans round's
    CPU. Here one sort by bucket and ``sort_keys`` puts each bucket's rows in one run, and each run,
    a zero-copy slice, is written as pyiceberg writes a partition (same files, statistics and
    snapshot; sorted within the file as before).
    """
    metadata = tx.table_metadata
    spec, schema = metadata.spec(), metadata.schema()
    (bucket_field,) = spec.fields
    source = schema.find_field(bucket_field.source_id)
    buckets = bucket_field.transform.pyarrow_transform(source.field_type)(data[source.name])
    data = data.append_column(_BUCKET_COLUMN, buckets).sort_by([(_BUCKET_COLUMN, "ascending"), *sort_keys])
    runs = pc.value_counts(data[_BUCKET_COLUMN])  # in order of first appearance: ascending, as sorted
    data = data.drop_columns([_BUCKET_COLUMN])
    task_schema = pyarrow_to_schema(
        data.schema, name_mapping=schema.name_mapping, format_version=metadata.format_version
    )
    target = property_as_int(
        metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )
    with tx._append_snapshot_producer(snapshot_properties) as append:  # merge or fast append, as tx.append
        counter = itertools.count(0)
        tasks = []
        start = 0
        for run in runs.to_pylist():
            key = PartitionKey(
                field_values=[PartitionFieldValue(field=bucket_field, value=run["values"])],
                partition_spec=spec,
                schema=schema,
            )
            part = data.slice(start, run["counts"])
            start += run["counts"]
            for batches in bin_pack_arrow_table(part, target or 0):
                tasks.append(
                    WriteTask(
                        write_uuid=append.commit_uuid,
                        task_id=next(counter),
                        record_batches=batches,
                        partition_key=key,
                        schema=task_schema,
                    )
                )
        for data_file in write_file(io=tx._table.io, table_metadata=metadata, tasks=iter(tasks)):
            append.append_data_file(data_file)


_BUCKET_COLUMN = "__lakeops_bucket"
# Committed every write.traces_commit_interval_s rather than every round (IcebergStore._deferred).
_DEFERRED_TABLES = frozenset({SPANS.name, TRACE_INFO_CHANGES.name, TRACE_TAG_CHANGES.name})


def _stamp_seq(batch: pa.RecordBatch, seq: int) -> pa.RecordBatch:
    """Change rows carry their log position, which orders one writer's changes."""
    index = batch.schema.get_field_index("wal_seq")
    if index < 0:
        return batch
    return batch.set_column(index, batch.schema.field(index), pa.array([seq] * batch.num_rows, pa.int64()))


def _appended_since(table: Table, metadata: TableMetadata, since: int) -> list[DataFile] | None:
    """Data files added by the plain appends after snapshot ``since`` up to the current one, or None
    if the chain is broken (expired) or holds anything but appends (a compaction rewrote files)."""
    files: list[DataFile] = []
    snapshot = metadata.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != since:
        summary = snapshot.summary
        if summary is None or summary.operation.value != "append":
            return None
        files.extend(_added_files(table, snapshot.snapshot_id, snapshot.manifest_list))
        parent = snapshot.parent_snapshot_id
        snapshot = metadata.snapshot_by_id(parent) if parent is not None else None
    return files if snapshot is not None else None


def _in_bucket(run_id: str) -> Callable[[DataFile], bool]:
    """Whether a metrics data file can hold rows of ``run_id`` (its partition is the run's bucket)."""
    bucket = BucketTransform(METRIC_BUCKETS).transform(StringType())(run_id)
    return lambda data_file: data_file.spec_id != 0 or data_file.partition[0] == bucket


def _added_files(table: Table, snapshot_id: int, manifest_list: str) -> Iterable[DataFile]:
    from pyiceberg.manifest import _manifests

    for manifest in _manifests(table.io, manifest_list):
        if manifest.content != ManifestContent.DATA or manifest.added_snapshot_id != snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot_id:
                yield entry.data_file


def _read_files(
    metadata: TableMetadata, table: Table, files: list[DataFile], row_filter: BooleanExpression
) -> pa.Table:
    return _read_tasks(metadata, table, [FileScanTask(f) for f in files], row_filter)


def _read_tasks(
    metadata: TableMetadata, table: Table, tasks: Iterable[FileScanTask], row_filter: BooleanExpression
) -> pa.Table:
    return ArrowScan(metadata, table.io, metadata.schema(), row_filter).to_table(tasks)
