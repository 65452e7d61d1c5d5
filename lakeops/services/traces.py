"""Traces, spans and assessments (MLflow 3's GenAI tracing), as append-only lake tables.

Four tables (catalog/tables.py): ``trace_info_changes`` (one row per trace recorded or changed),
``trace_tag_changes``, ``spans`` (the large one, bucketed and sorted by trace like metrics) and
``assessment_changes``. All go through ``store.write`` (write-ahead log, group commit) and are read
on demand: committed rows merged with rows still queued (``scan_with_pending``), so a client reads
its own writes at once, and never folded into the in-memory state, which holds only what every
request needs. The trace-level tables are read whole through the store's read cache, which after
the first read takes only the files appended since; spans are read one trace at a time, pruned by
bucket and statistics.

How the stock client records a trace: as each span ends, its tracing SDK posts it to ``/v1/traces``
(OpenTelemetry protobuf, ``log_spans``); when the root span ends it posts the trace's info to
``/api/3.0/mlflow/traces`` (``start_trace``). The answer carries the tag
``mlflow.trace.spansLocation = TRACKING_STORE``, so the client uploads no copy of the spans as an
artifact. A trace sent by a plain OpenTelemetry exporter has spans only: its info is derived from
its root span (operation ``spans``), and a ``start`` row, whenever it arrives, ranks above it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, EqualTo, In

from catalog.tables import ASSESSMENT_CHANGES, SPANS, TRACE_INFO_CHANGES, TRACE_TAG_CHANGES, TableDef
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.search import compile_trace_filter, decode_token, encode_token, search_trace_frame
from lakeops.stores.epochs import epoch_ints
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import TrackingState

if TYPE_CHECKING:
    # polars is imported where traces are searched, not with the module: a server that is never asked
    # for a trace does not pay its import (~0.6 CPU-s) at start-up.
    import polars as pl

SPANS_LOCATION_TAG = "mlflow.trace.spansLocation"
TRACKING_STORE = "TRACKING_STORE"
TRACE_NAME_TAG = "mlflow.traceName"
SOURCE_RUN_KEY = "mlflow.sourceRun"
SPAN_TYPE_ATTRIBUTE = "mlflow.spanType"
INPUTS_ATTRIBUTE = "mlflow.spanInputs"
OUTPUTS_ATTRIBUTE = "mlflow.spanOutputs"
TRACE_STATES = ("OK", "ERROR", "IN_PROGRESS", "STATE_UNSPECIFIED")
PREVIEW_LENGTH = 1000
MAX_SEARCH_RESULTS = 50_000
MAX_TAG_KEY_LENGTH = 250
MAX_TAG_VALUE_LENGTH = 8000
# A start row (the client's own account of the trace) outranks one derived from spans, whatever the order.
_RANK = {"spans": 0}
# A link to a run (LinkTracesToRun) is an association, kept beside the trace's state rather than in it.
_LINK = "link"
_KEPT = 8  # folded traces or tags of a set of experiments, kept between searches
_T = TypeVar("_T")


class SpanRow(NamedTuple):
    """One span as received: the ``spans`` table's columns, its OpenTelemetry JSON kept whole."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    span_type: str | None
    status_code: str  # OK, ERROR or UNSET
    status_message: str | None
    start_ns: int
    end_ns: int | None
    attributes_json: str  # a JSON object, MLflow's JSON-text values decoded
    content_json: str  # the span in the protobuf's JSON mapping


@dataclass(frozen=True, slots=True)
class RootSpan:
    """What a root span tells of its trace, for a trace sent as spans alone."""

    row: SpanRow
    inputs: Any
    outputs: Any


@dataclass(slots=True)
class SpanBatch:
    """Spans received together (one OTLP request), a row per span, with their root spans apart."""

    rows: list[SpanRow] = field(default_factory=list)
    roots: list[RootSpan] = field(default_factory=list)

    def add_root(self, row: SpanRow, *, inputs: Any, outputs: Any) -> None:
        """Note ``row`` (already in ``rows``) as a root span, with its inputs and outputs decoded."""
        self.roots.append(RootSpan(row, inputs, outputs))


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceInfo:
    """A trace's info, tags and assessments (MLflow's TraceInfoV3). Times in ms."""

    trace_id: str
    experiment_id: str
    request_time: int
    execution_duration: int | None = None
    state: str = "OK"
    client_request_id: str | None = None
    request_preview: str | None = None
    response_preview: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    assessments: list[Assessment] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        """The trace's name (its root span's)."""
        return self.tags.get(TRACE_NAME_TAG)

    linked_run_ids: tuple[str, ...] = ()

    @property
    def run_id(self) -> str | None:
        """The run the trace was recorded in (metadata ``mlflow.sourceRun``)."""
        return self.metadata.get(SOURCE_RUN_KEY)

    def belongs_to_run(self, run_id: str) -> bool:
        """Recorded in the run, or linked to it since (as MLflow's search by ``run_id`` matches either)."""
        return self.run_id == run_id or run_id in self.linked_run_ids


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """Feedback or an expectation on a trace, in MLflow's JSON shape (``content``) plus what is searched."""

    assessment_id: str
    trace_id: str
    name: str
    kind: str  # feedback or expectation
    value: Any
    is_valid: bool
    content: dict[str, Any]


class TraceService:
    """Record, read, search, tag, link and delete traces; their assessments."""

    def __init__(self, store: IcebergStore, *, actor: str, now_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.actor = actor
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._kept_cache: OrderedDict[tuple[str, ...], tuple[tuple[int | None, int], object]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------------

    def start_trace(self, info: TraceInfo, assessments: Sequence[Mapping[str, Any]] = ()) -> TraceInfo:
        """Record a trace's info (the client calls this when its root span ends); returns it as stored.

        Raises:
            NotFoundError: no such experiment.
            InvalidArgumentError: a malformed id, state or tag, or an experiment that is deleted.
        """
        _check_trace_id(info.trace_id)
        if info.state not in TRACE_STATES:
            raise InvalidArgumentError(f"Invalid trace state {info.state!r}; one of {', '.join(TRACE_STATES)}")
        tags = {**{_check_key(k): _check_value(v) for k, v in info.tags.items()}, SPANS_LOCATION_TAG: TRACKING_STORE}
        now = self._now_ms()
        stored = replace(info, tags=tags, metadata={str(k): str(v) for k, v in info.metadata.items()})
        made = [self._new_assessment(stored, a, now) for a in assessments]

        def build(state: TrackingState) -> Rows:
            _active_experiment(state, info.experiment_id)
            rows = {
                TRACE_INFO_CHANGES.name: self._info_rows([stored], "start", now),
                TRACE_TAG_CHANGES.name: self._tag_rows(info.trace_id, info.experiment_id, tags, now),
            }
            if made:
                rows[ASSESSMENT_CHANGES.name] = self._assessment_rows(stored.experiment_id, made, "create", now)
            return rows

        self.store.write(build)
        return replace(stored, assessments=made)

    def log_spans(self, experiment_id: str, spans: SpanBatch) -> int:
        """Store spans; a root span also records its trace's info if the client sends none. Returns the count.

        Raises:
            NotFoundError: no such experiment.
            InvalidArgumentError: a malformed span, or an experiment that is deleted.
        """
        if not spans.rows:
            return 0
        for trace_id in {row.trace_id for row in spans.rows}:
            _check_trace_id(trace_id)
        now = self._now_ms()
        infos = [_info_from_root(experiment_id, root) for root in spans.roots]

        def build(state: TrackingState) -> Rows:
            _active_experiment(state, experiment_id)
            rows: Rows = {SPANS.name: _span_rows(experiment_id, spans.rows, now)}
            if infos:
                rows[TRACE_INFO_CHANGES.name] = self._info_rows(infos, "spans", now)
                rows[TRACE_TAG_CHANGES.name] = self._tag_rows_of(infos, now)
            return rows

        self.store.write(build)
        return len(spans.rows)

    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        """Set a tag on a trace.

        Raises:
            NotFoundError: no such trace.
            InvalidArgumentError: a bad key or value.
        """
        tags = {_check_key(key): _check_value(value)}
        info = self.get_trace_info(trace_id)
        now = self._now_ms()
        self.store.write(lambda _s: {TRACE_TAG_CHANGES.name: self._tag_rows(trace_id, info.experiment_id, tags, now)})

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        """Remove a tag from a trace.

        Raises:
            NotFoundError: no such trace, or no such tag on it.
        """
        info = self.get_trace_info(trace_id)
        if key not in info.tags:
            raise NotFoundError(f"No tag with key '{key}' on trace '{trace_id}'", details={"key": key})
        now = self._now_ms()
        self.store.write(
            lambda _s: {TRACE_TAG_CHANGES.name: self._tag_rows(trace_id, info.experiment_id, {key: None}, now)}
        )

    def link_traces_to_run(self, trace_ids: Sequence[str], run_id: str) -> None:
        """Link traces to a run, as MLflow's LinkTracesToRun: an association, not a change of the trace.

        A trace keeps the run it was recorded in (metadata ``mlflow.sourceRun``) and may be linked to
        any number of runs besides (``mlflow.genai.evaluate`` of existing traces links them to each
        evaluation run); a search by ``run_id`` finds it under each. A link is a ``link`` row of
        ``trace_info_changes`` whose metadata names the run; it does not count as the trace's state.

        Raises:
            NotFoundError: no such run or trace.
            InvalidArgumentError: more than 100 traces.
        """
        if len(trace_ids) > 100:
            raise InvalidArgumentError(f"At most 100 traces can be linked at once, got {len(trace_ids)}")
        found = {i.trace_id: i for i in self._infos(trace_ids=list(trace_ids))}
        for trace_id in trace_ids:
            if trace_id not in found:
                raise NotFoundError(f"Trace with ID '{trace_id}' not found.", details={"trace_id": trace_id})
        now = self._now_ms()
        links = [replace(i, metadata={SOURCE_RUN_KEY: run_id}) for i in found.values() if not i.belongs_to_run(run_id)]

        def build(state: TrackingState) -> Rows:
            if run_id not in state.runs:
                raise NotFoundError(f"Run with id={run_id} not found", details={"run_id": run_id})
            return {TRACE_INFO_CHANGES.name: self._info_rows(links, _LINK, now)} if links else {}

        self.store.write(build)

    def delete_traces(
        self,
        experiment_id: str,
        *,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
        trace_ids: Sequence[str] | None = None,
    ) -> int:
        """Delete traces of an experiment: those listed, or the oldest (up to ``max_traces``) before a time.

        Raises:
            InvalidArgumentError: neither trace ids nor a time given, or both.
        """
        if bool(trace_ids) == (max_timestamp_millis is not None):
            raise InvalidArgumentError("Pass either request_ids or max_timestamp_millis (with max_traces), not both")
        infos = self._infos(experiment_ids=[experiment_id])
        if trace_ids:
            wanted = set(trace_ids)
            doomed = [i for i in infos if i.trace_id in wanted]
        else:
            doomed = sorted(
                (i for i in infos if i.request_time <= (max_timestamp_millis or 0)), key=lambda i: i.request_time
            )
            if max_traces is not None:
                doomed = doomed[: max(0, max_traces)]
        if not doomed:
            return 0
        now = self._now_ms()
        self.store.write(lambda _s: {TRACE_INFO_CHANGES.name: self._info_rows(doomed, "delete", now, deleted=True)})
        return len(doomed)

    # -- reading ---------------------------------------------------------------------------------

    def get_trace_info(self, trace_id: str) -> TraceInfo:
        """A trace's info with its tags and assessments.

        Raises:
            NotFoundError: no such trace (or it is deleted).
        """
        found = self._infos(trace_ids=[trace_id])
        if not found:
            raise NotFoundError(f"Trace with ID '{trace_id}' not found.", details={"trace_id": trace_id})
        return found[0]

    def batch_get_trace_infos(self, trace_ids: Sequence[str]) -> list[TraceInfo]:
        """The infos of those of ``trace_ids`` that exist, in the order asked."""
        found = {i.trace_id: i for i in self._infos(trace_ids=list(trace_ids))}
        return [found[t] for t in dict.fromkeys(trace_ids) if t in found]

    def get_spans(self, trace_id: str) -> list[dict[str, Any]]:
        """A trace's spans as received (OpenTelemetry JSON), ordered by start time."""
        rows = self.store.scan_with_pending(
            SPANS.name,
            _equal_to("trace_id", trace_id),
            lambda t: pc.equal(t["trace_id"], trace_id),
        )
        if rows.num_rows == 0:
            return []
        # The same span may arrive twice (a client retry): keep its latest copy.
        rows = rows.sort_by([("ingested_at", "ascending")])
        latest: dict[str, str] = dict(
            zip(rows.column("span_id").to_pylist(), rows.column("content_json").to_pylist(), strict=True)
        )
        starts = dict(zip(rows.column("span_id").to_pylist(), epoch_ints(rows.column("started_at"), "ns"), strict=True))
        return [json.loads(latest[s]) for s in sorted(latest, key=lambda s: (starts[s] or 0, s))]

    def _spans_of(self, experiment_ids: Sequence[str], trace_ids: set[str]) -> list[dict[str, Any]]:
        """The spans of some experiments' current traces (one row per span), for aggregation."""
        values = pa.array([str(e) for e in experiment_ids], pa.string())
        rows = self.store.scan_with_pending(
            SPANS.name,
            _in("experiment_id", [str(e) for e in experiment_ids]),
            lambda t: pc.is_in(t["experiment_id"], value_set=values),
        )
        rows = rows.filter(pc.is_in(rows["trace_id"], value_set=pa.array(sorted(trace_ids), pa.string())))
        data = rows.select(["trace_id", "span_id", "name", "span_type", "status_code", "attributes_json"]).to_pydict()
        starts = epoch_ints(rows.column("started_at"), "us", null=0)
        ends = epoch_ints(rows.column("ended_at"), "us")
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for i, span_id in enumerate(data["span_id"]):
            end = ends[i]
            latest[(data["trace_id"][i], span_id)] = {
                "name": data["name"][i],
                "span_type": data["span_type"][i],
                "status_code": data["status_code"][i],
                "attributes_json": data["attributes_json"][i],
                "start_ms": starts[i] // 1000,
                "duration_ms": None if end is None else (end - starts[i]) / 1000,
            }
        return list(latest.values())

    def search_traces(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[TraceInfo], str | None]:
        """Traces of the experiments matching MLflow's trace filter, newest first by default; one page.

        Raises:
            InvalidArgumentError: a bad filter, order, page token or page size.
        """
        if isinstance(max_results, bool) or not 1 <= max_results <= MAX_SEARCH_RESULTS:
            raise InvalidArgumentError(
                f"Invalid max_results {max_results!r}: must be between 1 and {MAX_SEARCH_RESULTS}"
            )
        conditions = compile_trace_filter(filter_string)
        offset = int(decode_token(page_token).get("offset", 0))
        current = self._current_of_experiments(experiment_ids)
        found, total = search_trace_frame(
            current.frame, conditions, order_by, _TraceLookup(self, current), offset=offset, limit=max_results
        )
        page = self._to_infos(_CurrentTraces(found, current.rows))
        nxt = encode_token({"offset": offset + max_results}) if offset + max_results < total else None
        return page, nxt

    # -- assessments -----------------------------------------------------------------------------

    def create_assessment(self, trace_id: str, content: Mapping[str, Any]) -> Assessment:
        """Log feedback or an expectation on a trace; an ``overrides`` makes the overridden one invalid.

        Raises:
            NotFoundError: no such trace, or no such assessment to override.
            InvalidArgumentError: no name, or neither (or both) of feedback and expectation.
        """
        info = self.get_trace_info(trace_id)
        now = self._now_ms()
        made = self._new_assessment(info, content, now)
        rows: list[Assessment] = [made]
        overridden = made.content.get("overrides")
        if overridden:
            old = self.get_assessment(trace_id, overridden)
            rows.append(replace(old, is_valid=False, content={**old.content, "valid": False}))
        self.store.write(
            lambda _s: {ASSESSMENT_CHANGES.name: self._assessment_rows(info.experiment_id, rows, "create", now)}
        )
        return made

    def get_assessment(self, trace_id: str, assessment_id: str) -> Assessment:
        """One assessment of a trace.

        Raises:
            NotFoundError: no such assessment on that trace.
        """
        found = self._assessments(trace_ids=[trace_id]).get(trace_id, [])
        for a in found:
            if a.assessment_id == assessment_id:
                return a
        raise NotFoundError(
            f"Assessment with ID '{assessment_id}' not found for trace '{trace_id}'",
            details={"assessment_id": assessment_id},
        )

    def update_assessment(self, trace_id: str, assessment_id: str, changes: Mapping[str, Any]) -> Assessment:
        """Change an assessment's name, value, rationale or metadata (the fields present in ``changes``).

        Raises:
            NotFoundError: no such assessment on that trace.
            InvalidArgumentError: a change of kind (feedback to expectation) or an empty name.
        """
        old = self.get_assessment(trace_id, assessment_id)
        content = dict(old.content)
        for key in ("assessment_name", "rationale"):
            if key in changes:
                content[key] = changes[key]
        if "metadata" in changes:
            content["metadata"] = {**content.get("metadata", {}), **dict(changes["metadata"] or {})}
        for kind in ("feedback", "expectation"):
            if kind in changes:
                if kind != old.kind:
                    raise InvalidArgumentError(f"Cannot turn a {old.kind} into a {kind}")
                content[kind] = changes[kind]
        if not content.get("assessment_name"):
            raise InvalidArgumentError("An assessment needs a name")
        now = self._now_ms()
        content["last_update_time"] = _rfc3339(now)
        updated = _assessment_from_content(content)
        info = self.get_trace_info(trace_id)
        self.store.write(
            lambda _s: {ASSESSMENT_CHANGES.name: self._assessment_rows(info.experiment_id, [updated], "update", now)}
        )
        return updated

    def delete_assessment(self, trace_id: str, assessment_id: str) -> None:
        """Delete an assessment; one it overrode becomes valid again, as in MLflow.

        Raises:
            NotFoundError: no such assessment on that trace.
        """
        old = self.get_assessment(trace_id, assessment_id)
        info = self.get_trace_info(trace_id)
        now = self._now_ms()
        restored: list[Assessment] = []
        overridden = old.content.get("overrides")
        if overridden:
            previous = next(
                (a for a in self._assessments(trace_ids=[trace_id]).get(trace_id, []) if a.assessment_id == overridden),
                None,
            )
            if previous is not None:
                restored.append(replace(previous, is_valid=True, content={**previous.content, "valid": True}))

        def build(_s: TrackingState) -> Rows:
            batches = [self._assessment_rows(info.experiment_id, [old], "delete", now, deleted=True)]
            if restored:
                batches.append(self._assessment_rows(info.experiment_id, restored, "restore", now))
            return {ASSESSMENT_CHANGES.name: pa.concat_batches(batches)}

        self.store.write(build)

    # -- internals -------------------------------------------------------------------------------

    def _infos(
        self, *, experiment_ids: Sequence[str] | None = None, trace_ids: Sequence[str] | None = None
    ) -> list[TraceInfo]:
        """Current (not deleted) traces of some experiments or with some ids, with tags and assessments."""
        if trace_ids is not None:
            return self._to_infos(self._current("trace_id", trace_ids))
        return self._to_infos(self._current("experiment_id", experiment_ids or []))

    def _current_of_experiments(self, experiment_ids: Sequence[str]) -> _CurrentTraces:
        """``_current`` of some experiments, kept while ``trace_info_changes`` does not change."""
        key = tuple(sorted({str(e) for e in experiment_ids}))
        return self._kept(TRACE_INFO_CHANGES, ("current", *key), lambda: self._current("experiment_id", key))

    def _kept(self, table: TableDef, key: tuple[str, ...], derive: Callable[[], _T]) -> _T:
        """What ``derive`` makes of ``table``'s rows, kept while the table does not change (the UI pages and
        refreshes searches over the same traces); the latest few are kept."""
        version = self.store.table_version(table.name)  # read before the rows: they are at least this new
        with self._cache_lock:
            cached = self._kept_cache.get(key)
        if cached is not None and cached[0] == version:
            return cast(_T, cached[1])
        made = derive()
        with self._cache_lock:
            self._kept_cache[key] = (version, made)
            self._kept_cache.move_to_end(key)
            while len(self._kept_cache) > _KEPT:
                self._kept_cache.popitem(last=False)
        return made

    def _current(self, column: str, wanted: Sequence[str]) -> _CurrentTraces:
        """Current (not deleted) traces whose ``column`` is one of ``wanted``, folded from
        ``trace_info_changes`` in columns.

        The frame holds a row per trace with what searches filter and order on (times in ms, the runs
        a trace is linked to in ``linked_run_ids``) and ``_row``, its row in the Arrow table read; the
        long text columns (previews, metadata) are taken from that table only for the rows asked for.
        """
        import polars as pl  # deferred: see the imports at the top

        rows = self._read(TRACE_INFO_CHANGES, column, pa.array([str(v) for v in wanted], pa.string()))
        keys = rows.select(
            [
                "trace_id",
                "experiment_id",
                "request_time",
                "execution_duration_ms",
                "state",
                "client_request_id",
                "operation",
                "is_deleted",
                "changed_at",
                "writer_id",
                "wal_seq",
            ]
        )
        frame = pl.from_arrow(keys.append_column("_row", pa.array(np.arange(rows.num_rows, dtype=np.int64))))
        assert isinstance(frame, pl.DataFrame)
        is_link = pl.col("operation") == _LINK
        link_rows = frame.filter(is_link).select("trace_id", "_row")
        links = (
            link_rows.with_columns(run=_metadata_value(rows, link_rows.get_column("_row"), SOURCE_RUN_KEY))
            .filter(pl.col("run").is_not_null() & (pl.col("run") != ""))
            .group_by("trace_id")
            .agg(pl.col("run").unique().alias("linked_run_ids"))
        )
        deleted = frame.filter(pl.col("is_deleted")).get_column("trace_id")  # a deleted trace stays deleted
        current = (
            frame.filter(~is_link & ~pl.col("trace_id").is_in(deleted.implode()))
            .with_columns(pl.col("operation").replace_strict(_RANK, default=1, return_dtype=pl.Int8).alias("_rank"))
            .sort(["_rank", "changed_at", "writer_id", "wal_seq"])
            .group_by("trace_id", maintain_order=True)
            .last()
            .select(
                "trace_id",
                "experiment_id",
                pl.col("request_time").dt.epoch("ms").fill_null(0).alias("request_time"),
                pl.col("execution_duration_ms").alias("execution_duration"),
                "state",
                "client_request_id",
                "_row",
            )
            .join(links, on="trace_id", how="left", maintain_order="left")
        )
        return _CurrentTraces(current, rows)

    def _to_infos(self, found: _CurrentTraces) -> list[TraceInfo]:
        """``TraceInfo``s of the rows of ``found.frame``, in their order, with their tags and assessments."""
        if found.frame.is_empty():
            return []
        data = found.frame.to_dict(as_series=False)
        texts = found.rows.select(["request_preview", "response_preview", "metadata_json"]).take(data["_row"])
        requests, responses, metadata = (texts.column(c).to_pylist() for c in texts.column_names)
        ids = data["trace_id"]
        tags = self._tags(ids)
        assessments = self._assessments(trace_ids=ids)
        return [
            TraceInfo(
                trace_id=trace_id,
                experiment_id=data["experiment_id"][i],
                request_time=data["request_time"][i],
                execution_duration=data["execution_duration"][i],
                state=data["state"][i],
                client_request_id=data["client_request_id"][i],
                request_preview=requests[i],
                response_preview=responses[i],
                metadata=json.loads(metadata[i]),
                tags=tags.get(trace_id, {}),
                assessments=assessments.get(trace_id, []),
                linked_run_ids=tuple(data["linked_run_ids"][i] or ()),
            )
            for i, trace_id in enumerate(ids)
        ]

    def _tag_values(self, experiment_ids: Sequence[str], key: str) -> pl.DataFrame:
        """``trace_id`` and ``value`` of the current tag ``key`` of the traces of some experiments."""
        import polars as pl  # deferred: see the imports at the top

        rows = self._read(TRACE_TAG_CHANGES, "experiment_id", pa.array([str(e) for e in experiment_ids], pa.string()))
        rows = rows.filter(pc.equal(rows["key"], key))
        frame = pl.from_arrow(rows.select(["trace_id", "value", "is_deleted", "changed_at", "writer_id", "wal_seq"]))
        assert isinstance(frame, pl.DataFrame)
        return (
            frame.sort(["changed_at", "writer_id", "wal_seq"])
            .group_by("trace_id", maintain_order=True)
            .last()
            .filter(~pl.col("is_deleted"))
            .select("trace_id", "value")
        )

    def _read(self, table: TableDef, column: str, values: pa.Array) -> pa.Table:
        """Committed and queued rows of a trace-level table whose ``column`` is one of ``values``.

        The committed part is read whole through the store's read cache (later reads take only the
        files appended since), then filtered here.
        """
        rows = self.store.scan_with_pending(
            table.name, AlwaysTrue(), lambda t: pc.is_in(t[column], value_set=values), cache_key="all"
        )
        return rows.filter(pc.is_in(rows[column], value_set=values))

    def _tags(self, trace_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        rows = self._read(TRACE_TAG_CHANGES, "trace_id", pa.array(list(trace_ids), pa.string()))
        rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
        found: dict[str, dict[str, str]] = {}
        data = rows.select(["trace_id", "key", "value", "is_deleted"]).to_pydict()
        for trace_id, key, value, deleted in zip(
            data["trace_id"], data["key"], data["value"], data["is_deleted"], strict=True
        ):
            tags = found.setdefault(trace_id, {})
            if deleted:
                tags.pop(key, None)
            else:
                tags[key] = value
        return found

    def _assessments(self, *, trace_ids: Sequence[str]) -> dict[str, list[Assessment]]:
        rows = self._read(ASSESSMENT_CHANGES, "trace_id", pa.array(list(trace_ids), pa.string()))
        rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
        latest: dict[str, Assessment | None] = {}
        data = rows.select(["assessment_id", "content_json", "is_deleted"]).to_pydict()
        for assessment_id, content, deleted in zip(
            data["assessment_id"], data["content_json"], data["is_deleted"], strict=True
        ):
            latest[assessment_id] = None if deleted else _assessment_from_content(json.loads(content))
        found: dict[str, list[Assessment]] = {}
        for a in latest.values():
            if a is not None:
                found.setdefault(a.trace_id, []).append(a)
        for items in found.values():
            items.sort(key=lambda a: (str(a.content.get("create_time", "")), a.assessment_id))
        return found

    def _new_assessment(self, info: TraceInfo, content: Mapping[str, Any], now: int) -> Assessment:
        body = {k: v for k, v in content.items() if v is not None}
        name = body.get("assessment_name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("An assessment needs a name (assessment_name)")
        if ("feedback" in body) == ("expectation" in body):
            raise InvalidArgumentError("An assessment is either a feedback or an expectation (exactly one of them)")
        body.update(
            assessment_id=f"a-{uuid.uuid4().hex}",
            trace_id=info.trace_id,
            create_time=body.get("create_time") or _rfc3339(now),
            last_update_time=_rfc3339(now),
            valid=True,
        )
        body.setdefault("source", {"source_type": "SOURCE_TYPE_UNSPECIFIED"})
        return _assessment_from_content(body)

    def _change(self, operation: str, now: int, n: int) -> dict[str, list[Any]]:
        return {
            "changed_at": [now * 1000] * n,
            "actor": [self.actor] * n,
            "operation": [operation] * n,
            "writer_id": [self.store.writer_id] * n,
            "wal_seq": [0] * n,
        }

    def _info_rows(
        self, infos: Sequence[TraceInfo], operation: str, now: int, *, deleted: bool = False
    ) -> pa.RecordBatch:
        columns = {
            "trace_id": [i.trace_id for i in infos],
            "experiment_id": [i.experiment_id for i in infos],
            "client_request_id": [i.client_request_id for i in infos],
            "request_time": [i.request_time * 1000 for i in infos],
            "execution_duration_ms": [i.execution_duration for i in infos],
            "state": [i.state for i in infos],
            "request_preview": [i.request_preview for i in infos],
            "response_preview": [i.response_preview for i in infos],
            "trace_name": [i.name for i in infos],
            "metadata_json": [json.dumps(i.metadata, sort_keys=True) for i in infos],
            "is_deleted": [deleted] * len(infos),
            **self._change(operation, now, len(infos)),
        }
        return pa.RecordBatch.from_pydict(columns, schema=TRACE_INFO_CHANGES.arrow_schema)

    def _tag_rows(self, trace_id: str, experiment_id: str, tags: Mapping[str, str | None], now: int) -> pa.RecordBatch:
        return self._tag_batch(
            [trace_id] * len(tags), [experiment_id] * len(tags), list(tags), list(tags.values()), now
        )

    def _tag_rows_of(self, infos: Sequence[TraceInfo], now: int) -> pa.RecordBatch:
        """The tags of many traces, in one batch."""
        tagged = [(i.trace_id, i.experiment_id, k, v) for i in infos for k, v in i.tags.items()]
        trace_ids, experiment_ids, keys, values = (list(c) for c in zip(*tagged, strict=True)) if tagged else ([],) * 4
        return self._tag_batch(trace_ids, experiment_ids, keys, values, now)

    def _tag_batch(
        self, trace_ids: list[str], experiment_ids: list[str], keys: list[str], values: list[str | None], now: int
    ) -> pa.RecordBatch:
        columns = {
            "trace_id": trace_ids,
            "experiment_id": experiment_ids,
            "key": keys,
            "value": values,
            "is_deleted": [v is None for v in values],
            **self._change("set", now, len(keys)),
        }
        return pa.RecordBatch.from_pydict(columns, schema=TRACE_TAG_CHANGES.arrow_schema)

    def _assessment_rows(
        self, experiment_id: str, items: Sequence[Assessment], operation: str, now: int, *, deleted: bool = False
    ) -> pa.RecordBatch:
        columns = {
            "assessment_id": [a.assessment_id for a in items],
            "trace_id": [a.trace_id for a in items],
            "experiment_id": [experiment_id] * len(items),
            "name": [a.name for a in items],
            "kind": [a.kind for a in items],
            "value_json": [None if a.value is None else json.dumps(a.value) for a in items],
            "source_type": [a.content.get("source", {}).get("source_type") for a in items],
            "source_id": [a.content.get("source", {}).get("source_id") for a in items],
            "span_id": [a.content.get("span_id") for a in items],
            "overrides": [a.content.get("overrides") for a in items],
            "is_valid": [a.is_valid for a in items],
            "content_json": [json.dumps(a.content, sort_keys=True) for a in items],
            "created_at": [_parse_time_ms(a.content.get("create_time"), default=now) * 1000 for a in items],
            "is_deleted": [deleted] * len(items),
            **self._change(operation, now, len(items)),
        }
        return pa.RecordBatch.from_pydict(columns, schema=ASSESSMENT_CHANGES.arrow_schema)


@dataclass(frozen=True, slots=True)
class _CurrentTraces:
    """A frame of current traces (``TraceService._current``) and the ``trace_info_changes`` rows it indexes."""

    frame: pl.DataFrame
    rows: pa.Table


def _metadata_value(rows: pa.Table, at: pl.Series, key: str) -> pl.Series:
    """The metadata entry ``key`` of ``rows`` at positions ``at`` (null where absent)."""
    import polars as pl  # deferred: see the imports at the top

    texts = pl.Series(rows.column("metadata_json").take(at.to_arrow()), dtype=pl.String)
    if "'" in key or "\\" in key:  # beyond what a JSONPath literal here spells: decode each
        return pl.Series([json.loads(t).get(key) for t in texts], dtype=pl.String)
    return texts.str.json_path_match(f"$['{key}']")


class _TraceLookup:
    """Tags, metadata and assessments of a search's traces, read only for the keys its filter and order name."""

    def __init__(self, service: TraceService, current: _CurrentTraces) -> None:
        self._service = service
        self._current = current
        self._experiment_ids = current.frame.get_column("experiment_id").unique().to_list()
        self._tags: dict[str, pl.DataFrame] = {}

    def tag(self, key: str) -> pl.DataFrame:
        if key not in self._tags:
            self._tags[key] = self._service._kept(
                TRACE_TAG_CHANGES,
                ("tag", key, *sorted(self._experiment_ids)),
                lambda: self._service._tag_values(self._experiment_ids, key),
            )
        return self._tags[key]

    def metadata(self, key: str) -> pl.DataFrame:
        import polars as pl  # deferred: see the imports at the top

        frame = self._current.frame
        values = _metadata_value(self._current.rows, frame.get_column("_row"), key)
        return pl.DataFrame({"trace_id": frame.get_column("trace_id"), "value": values}).filter(
            pl.col("value").is_not_null()
        )

    def assessment(self, kind: str, name: str) -> list[tuple[str, Any]]:
        ids = self._current.frame.get_column("trace_id").to_list()
        found = []
        for trace_id, items in self._service._assessments(trace_ids=ids).items():
            for a in items:
                if a.kind == kind and a.name == name and a.is_valid:
                    found.append((trace_id, a.value if isinstance(a.value, str | int | float) else json.dumps(a.value)))
                    break
        return found


# -- helpers ---------------------------------------------------------------------------------------


# pyiceberg's pydantic-generated signatures for EqualTo and In confuse mypy; this is their documented call form.
_equal_to = cast(Callable[[str, Any], BooleanExpression], EqualTo)
_in = cast(Callable[[str, Any], BooleanExpression], In)


def _check_trace_id(trace_id: object) -> str:
    if not isinstance(trace_id, str) or not trace_id or len(trace_id) > 128:
        raise InvalidArgumentError(f"Invalid trace id {trace_id!r}")
    return trace_id


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_TAG_KEY_LENGTH:
        raise InvalidArgumentError(f"Invalid tag key {key!r}: 1 to {MAX_TAG_KEY_LENGTH} characters")
    return key


def _check_value(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgumentError(f"Invalid tag value: a string of at most {MAX_TAG_VALUE_LENGTH} characters")
    return value


def _active_experiment(state: TrackingState, experiment_id: str) -> None:
    exp = state.experiments.get(str(experiment_id))
    if exp is None:
        raise NotFoundError(f"No Experiment with id={experiment_id} exists", details={"experiment_id": experiment_id})
    if exp.lifecycle_stage != "active":
        raise InvalidArgumentError(f"The experiment {experiment_id} must be active to record traces in it")


def _preview(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:PREVIEW_LENGTH]


def _info_from_root(experiment_id: str, root: RootSpan) -> TraceInfo:
    """A trace's info as its root span tells it (for traces sent as OpenTelemetry spans alone)."""
    span = root.row
    start_ms = span.start_ns // 1_000_000
    duration = (span.end_ns - span.start_ns) // 1_000_000 if span.end_ns is not None else None
    state = {"OK": "OK", "ERROR": "ERROR"}.get(span.status_code, "OK" if span.end_ns is not None else "IN_PROGRESS")
    return TraceInfo(
        trace_id=span.trace_id,
        experiment_id=experiment_id,
        request_time=start_ms,
        execution_duration=duration,
        state=state,
        request_preview=_preview(root.inputs),
        response_preview=_preview(root.outputs),
        tags={TRACE_NAME_TAG: span.name, SPANS_LOCATION_TAG: TRACKING_STORE},
    )


_MICROS = pa.timestamp("us", tz="UTC")


def _span_rows(experiment_id: str, spans: Sequence[SpanRow], now: int) -> pa.RecordBatch:
    """The ``spans`` rows, built column by column."""
    n = len(spans)
    (
        trace_id,
        span_id,
        parent_span_id,
        name,
        span_type,
        status_code,
        status_message,
        start_ns,
        end_ns,
        attributes_json,
        content_json,
    ) = zip(*spans, strict=True)
    string = pa.large_string()
    columns = [
        pa.array(trace_id, string),
        pa.array(span_id, string),
        pa.array(parent_span_id, string),
        pa.repeat(pa.scalar(experiment_id, string), n),
        pa.array(name, string),
        pa.array(span_type, string),
        pa.array(status_code, string),
        pa.array(status_message, string),
        pa.array([s // 1000 for s in start_ns], _MICROS),
        pa.array([None if e is None else e // 1000 for e in end_ns], _MICROS),
        pa.array(attributes_json, string),
        pa.array(content_json, string),
        pa.repeat(pa.scalar(now * 1000, _MICROS), n),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SPANS.arrow_schema)


def _assessment_from_content(content: Mapping[str, Any]) -> Assessment:
    kind = "feedback" if "feedback" in content else "expectation"
    body = content.get(kind) or {}
    value = body.get("value")
    if value is None and isinstance(body.get("serialized_value"), dict):
        value = body["serialized_value"].get("value")
    return Assessment(
        assessment_id=str(content["assessment_id"]),
        trace_id=str(content["trace_id"]),
        name=str(content.get("assessment_name", "")),
        kind=kind,
        value=value,
        is_valid=bool(content.get("valid", True)),
        content=dict(content),
    )


def _rfc3339(ms: int) -> str:
    """Milliseconds as protobuf's JSON Timestamp (``2024-01-02T03:04:05.678Z``)."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _parse_time_ms(text: object, *, default: int) -> int:
    from datetime import datetime

    if not isinstance(text, str):
        return default
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return default


# -- trace metrics (the UI's charts: MLflow's QueryTraceMetrics) ----------------------------------------

TRACE_METRICS = (
    "trace_count",
    "latency",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
SPAN_METRICS = ("span_count", "latency", "total_cost", "input_cost", "output_cost")
_TRACE_DIMENSIONS = ("trace_status", "trace_name")
_SPAN_DIMENSIONS = ("span_name", "span_type", "span_status", "span_model_name")
_AGGREGATIONS = ("COUNT", "SUM", "AVG", "MIN", "MAX", "PERCENTILE")


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One aggregated value set: its dimensions (a time bucket among them when asked) and values by aggregation."""

    metric_name: str
    dimensions: dict[str, str]
    values: dict[str, float]


def query_trace_metrics(
    service: TraceService,
    experiment_ids: Sequence[str],
    *,
    view_type: str,
    metric_name: str,
    aggregations: Sequence[tuple[str, float | None]],
    dimensions: Sequence[str] = (),
    time_interval_seconds: int | None = None,
    start_time_ms: int | None = None,
    end_time_ms: int | None = None,
) -> list[MetricPoint]:
    """Aggregate traces (view ``TRACES``) or their spans (``SPANS``) of some experiments, as MLflow's
    QueryTraceMetrics: values keyed ``COUNT``, ``SUM``, ``AVG``, ``MIN``, ``MAX``, ``P<n>``, grouped by
    the dimensions asked and, with an interval, by ``time_bucket`` (ISO 8601).

    Raises:
        InvalidArgumentError: an unknown view, metric, dimension or aggregation.
    """

    view = view_type.upper()
    known_metrics, known_dims = (
        (TRACE_METRICS, _TRACE_DIMENSIONS) if view == "TRACES" else (SPAN_METRICS, _SPAN_DIMENSIONS)
    )
    if view not in ("TRACES", "SPANS"):
        raise InvalidArgumentError(f"Trace metrics of view {view_type!r} are not served; use TRACES or SPANS")
    if metric_name not in known_metrics:
        raise InvalidArgumentError(f"Unknown {view} metric {metric_name!r}; known: {', '.join(known_metrics)}")
    for dim in dimensions:
        if dim not in known_dims:
            raise InvalidArgumentError(f"Unknown {view} dimension {dim!r}; known: {', '.join(known_dims)}")
    for kind, _p in aggregations:
        if kind not in _AGGREGATIONS:
            raise InvalidArgumentError(f"Unknown aggregation {kind!r}; known: {', '.join(_AGGREGATIONS)}")
    infos = [
        i
        for i in service._infos(experiment_ids=list(experiment_ids))
        if (start_time_ms is None or i.request_time >= start_time_ms)
        and (end_time_ms is None or i.request_time <= end_time_ms)
    ]
    rows: list[tuple[int, dict[str, str], float | None]] = []  # (time ms, dimensions, value)
    if view == "TRACES":
        for info in infos:
            usage = _json_object(info.metadata.get("mlflow.trace.tokenUsage"))
            value: float | None = {
                "trace_count": 1.0,
                "latency": None if info.execution_duration is None else float(info.execution_duration),
            }.get(metric_name, _number(usage.get(metric_name)))
            dims = {"trace_status": info.state, "trace_name": info.name or ""}
            rows.append((info.request_time, {d: dims[d] for d in dimensions}, value))
    else:
        wanted = {i.trace_id for i in infos}
        for span in service._spans_of(list(experiment_ids), wanted):
            attributes = json.loads(span["attributes_json"])
            cost = attributes.get("mlflow.llm.cost") if isinstance(attributes.get("mlflow.llm.cost"), dict) else {}
            value = {
                "span_count": 1.0,
                "latency": span["duration_ms"],
            }.get(metric_name, _number(cost.get(metric_name)))
            dims = {
                "span_name": span["name"],
                "span_type": span["span_type"] or "",
                "span_status": span["status_code"],
                "span_model_name": str(attributes.get("mlflow.llm.model") or ""),
            }
            rows.append((span["start_ms"], {d: dims[d] for d in dimensions}, value))
    groups: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for at, dims, value in rows:
        if value is None:
            continue
        if time_interval_seconds:
            step = time_interval_seconds * 1000
            dims = {**dims, "time_bucket": datetime.fromtimestamp((at // step) * step / 1000, tz=UTC).isoformat()}
        groups.setdefault(tuple(sorted(dims.items())), []).append(value)
    points = []
    for key, values in sorted(groups.items()):
        data = np.array(values, dtype=float)
        out: dict[str, float] = {}
        for kind, percentile in aggregations:
            if kind == "PERCENTILE":
                out[f"P{_percentile_label(percentile)}"] = float(np.percentile(data, percentile or 50))
            else:
                out[kind] = float(
                    {"COUNT": len(data), "SUM": data.sum(), "AVG": data.mean(), "MIN": data.min(), "MAX": data.max()}[
                        kind
                    ]
                )
        points.append(MetricPoint(metric_name, dict(key), out))
    return points


def _percentile_label(value: float | None) -> str:
    number = 50.0 if value is None else float(value)
    return str(number)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
