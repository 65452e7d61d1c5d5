"""The runs a process starts with, kept as columns; a ``RunState`` is made when a run is read.

Start-up used to fold every run of the lake into one ``RunState`` a run, with a dict each of
params, tags and latest metrics: ~1.45 KB of Python objects a run, and ~25 us of CPU to build it
(a 1M-run lake: 1.7 GB held, ~25 s to open). Here the runs, params, tags and latest metric points
read at start-up are reduced to their current values with vectorised numpy and Arrow work and
kept as arrays: one row a run, and the params, tags and metrics of run ``r`` at
``offsets[r]:offsets[r + 1]`` of their entry arrays. What was logged since start-up changes
``RunState`` objects as before: a run is made from its row the first time a change touches it,
and from then on lives in ``Runs``' overlay (``for_update``). Reads of a run not changed since
start-up make a fresh ``RunState`` from its row (``get``): nothing is kept for them, so memory
stays O(runs) in arrays plus O(runs changed since start-up) in objects.

The reduction gives the state the row-by-row fold gives (tests/lakeops/test_state_bulk.py folds
the same rows all three ways and compares every run, field by field and in dict order): a run's
last change row sets its attributes; a param's first value stays; a tag's last row wins and a
deleted tag is gone (a key set again after a delete lists where it was set again); a metric keeps
its latest point by ``metric_rank`` (a tie keeps the first row). Rows of runs the base does not
hold are handed back, to wait for their run as the fold's rows do.

Written by hand rather than kept in polars or DuckDB tables: a read of one run must cost
microseconds (get_run, every write's checks), and the reduction has to reproduce the fold's
dict order exactly, which the group-by engines do not promise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakeops.stores.epochs import epoch_array

if TYPE_CHECKING:
    from lakeops.stores.run_index import RunIndex
    from lakeops.stores.state import RunState

# (timestamp ms, value, step): the packed latest point of lakeops/stores/run_index.py, as numpy.
LATEST_DTYPE = np.dtype([("timestamp", "<i8"), ("value", "<f8"), ("step", "<i8")])
# What a run keeps of its artifact URI (``TrackingState._artifact_root``): (run id, experiment id,
# the URI, whether it is the usual one) -> the URI, or the experiment's location standing for it.
ArtifactRoot = Callable[[str, str, str | None, bool], str | None]


def combined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def epochs_with_nulls(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A nullable timestamp column as (epoch ms, present)."""
    array = combined(column)
    present = array.is_valid().to_numpy(zero_copy_only=False)
    filled = pc.fill_null(array, pa.scalar(0, array.type))
    return epoch_array(filled, "ms"), present


@dataclass(slots=True)
class Entries:
    """Key-value entries of every run: run ``r``'s are ``offsets[r]:offsets[r + 1]``, in the order
    its dict lists them. ``values`` are Arrow strings (params, tags) or packed points (metrics)."""

    offsets: np.ndarray  # int64, one more than runs
    keys: list[str]  # distinct keys; ``codes`` index it
    codes: np.ndarray  # int32, one per entry
    values: pa.Array | bytes  # strings, or LATEST_DTYPE records as bytes (24 bytes an entry)

    @classmethod
    def empty(cls, runs: int) -> Entries:
        return cls(np.zeros(runs + 1, dtype=np.int64), [], np.zeros(0, dtype=np.int32), pa.array([], pa.string()))

    def key_code(self, key: str) -> int:
        try:
            return self.keys.index(key)
        except ValueError:
            return -1

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(run rows, entry positions) of ``key``'s entries."""
        code = self.key_code(key)
        if code < 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        positions = np.flatnonzero(self.codes == code)
        rows = np.searchsorted(self.offsets, positions, side="right") - 1
        return rows, positions


def _grouped(runs: np.ndarray, codes: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries (a run, a key code and the row placing the key in the run's dict, each) sorted by run,
    then place: (the permutation, the runs and the key codes in that order)."""
    permutation = np.lexsort((order, runs))
    return permutation, runs[permutation], codes[permutation]


def _fixed_width(ids: pa.Array) -> np.ndarray:
    """Strings as a numpy bytes array (``S<longest>``): read straight from the Arrow buffer when every
    id has the same length (run ids are 32 hex digits), else through Python strings."""
    if not len(ids):
        return np.zeros(0, dtype="S32")
    lengths = pc.binary_length(ids)
    bounds = pc.min_max(lengths).as_py()
    width = bounds["max"]
    offset_type = {pa.string(): np.int32, pa.large_string(): np.int64}.get(ids.type)
    if ids.null_count == 0 and bounds["min"] == width and width > 0 and offset_type is not None:
        offsets = np.frombuffer(ids.buffers()[1], dtype=offset_type)[ids.offset : ids.offset + len(ids) + 1]
        data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        return data.view(f"S{width}").copy()
    return np.array(ids.to_pylist(), dtype=bytes)


def _dictionary(
    column: pa.ChunkedArray | pa.Array, share: Callable[[list[Any]], list[Any]]
) -> tuple[list[Any], np.ndarray]:
    """A dictionary column (its chunks' dictionaries unified) as (shared texts, codes; -1 for null)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not chunks:
        return [], np.zeros(0, dtype=np.int32)
    texts = share(chunks[0].dictionary.to_pylist())
    indices = combined(pa.chunked_array([c.indices for c in chunks], chunks[0].indices.type))
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    return texts, np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int32)


def _offsets_of(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _offsets(runs_of_entries: np.ndarray, size: int) -> np.ndarray:
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(runs_of_entries, minlength=size), out=offsets[1:])
    return offsets


class RunBase:
    """Every run read at start-up, as columns (see the module's docstring)."""

    def __init__(
        self, rows: pa.Table, share: Callable[[list[Any]], list[Any]], usual: pa.Array, artifact_root: ArtifactRoot
    ) -> None:
        """``rows``: one change row a run (its last), in run-row order; ``usual``: per row, whether the
        artifact URI is the usual one under its experiment's location (not stored: ``artifact_root``
        gives what a run keeps of it, as the state's fold does)."""
        self._artifact_root = artifact_root
        self.size = rows.num_rows
        ids = combined(rows.column("run_id"))
        self.ids = ids
        run_ids = _fixed_width(ids)
        # Sorted, for ``find`` (the index keeps them in row order: ``run_ids``).
        self._sorter = np.argsort(run_ids, kind="stable")
        self._sorted = run_ids[self._sorter]
        self.shared: dict[str, tuple[list[Any], np.ndarray]] = {}
        for name in ("experiment_id", "user_id", "status", "lifecycle_stage"):
            encoded = pc.dictionary_encode(combined(rows.column(name)))
            texts = share(encoded.dictionary.to_pylist())
            texts.append(None)
            codes = pc.fill_null(encoded.indices, len(texts) - 1).to_numpy(zero_copy_only=False).astype(np.int32)
            self.shared[name] = (texts, codes)
        self.run_name = combined(rows.column("run_name"))
        self.parent_run_id = combined(rows.column("parent_run_id"))
        self.usual = usual.to_numpy(zero_copy_only=False)
        self.artifact_uri = pc.if_else(usual, None, combined(rows.column("artifact_uri")))
        self.start_time, self.start_present = epochs_with_nulls(rows.column("started_at"))
        self.end_time, self.end_present = epochs_with_nulls(rows.column("ended_at"))
        self.params = Entries.empty(self.size)
        self.tags = Entries.empty(self.size)
        self.metrics = Entries(np.zeros(self.size + 1, dtype=np.int64), [], np.zeros(0, dtype=np.int32), b"")

    # -- checkpoints (lakeops/stores/run_checkpoint.py) ---------------------------------------

    def to_tables(self) -> dict[str, pa.Table]:
        """The columns as Arrow tables: ``runs`` (a row a run, with how many params, tags and metrics
        each has) and ``params``, ``tags``, ``metrics`` (their entries, run after run, in dict order).
        Shared texts and keys are dictionary columns: a reader without lakeops sees plain strings."""
        runs: dict[str, pa.Array] = {
            "run_id": self.ids,
            "run_name": self.run_name,
            "parent_run_id": self.parent_run_id,
            "artifact_uri": self.artifact_uri,  # null where ``usual``: made from the experiment's location
            "usual": pa.array(self.usual, pa.bool_()),
            "start_time": pa.array(self.start_time, pa.int64()),
            "start_present": pa.array(self.start_present, pa.bool_()),
            "end_time": pa.array(self.end_time, pa.int64()),
            "end_present": pa.array(self.end_present, pa.bool_()),
            "sorted_order": pa.array(self._sorter, pa.int64()),
        }
        for name, (texts, codes) in self.shared.items():
            # ``texts`` ends with the None that null rows point at
            indices = pa.array(codes, pa.int32(), mask=codes == len(texts) - 1)
            runs[name] = pa.DictionaryArray.from_arrays(indices, pa.array(texts[:-1], pa.string()))
        tables = {}
        for kind, entries in (("params", self.params), ("tags", self.tags), ("metrics", self.metrics)):
            runs[f"{kind}_count"] = pa.array(np.diff(entries.offsets), pa.int64())
            key = pa.DictionaryArray.from_arrays(
                pa.array(entries.codes, pa.int32()), pa.array(entries.keys, pa.string())
            )
            if isinstance(entries.values, bytes):
                points = np.frombuffer(entries.values, dtype=LATEST_DTYPE)
                tables[kind] = pa.table(
                    {
                        "key": key,
                        "timestamp": pa.array(points["timestamp"]),
                        "value": pa.array(points["value"]),
                        "step": pa.array(points["step"]),
                    }
                )
            else:
                tables[kind] = pa.table({"key": key, "value": entries.values})
        tables["runs"] = pa.table(runs)
        return tables

    @classmethod
    def restore(
        cls, tables: dict[str, pa.Table], share: Callable[[list[Any]], list[Any]], artifact_root: ArtifactRoot
    ) -> RunBase:
        """The columns ``to_tables`` gave, back (no reduction: a checkpoint is read in the time its
        columns take to decode)."""
        base = cls.__new__(cls)
        base._artifact_root = artifact_root
        runs = tables["runs"].unify_dictionaries()
        base.size = runs.num_rows
        base.ids = combined(runs.column("run_id"))
        base._sorter = np.asarray(combined(runs.column("sorted_order")).to_numpy(), dtype=np.int64)
        base._sorted = _fixed_width(base.ids)[base._sorter]
        base.shared = {}
        for name in ("experiment_id", "user_id", "status", "lifecycle_stage"):
            texts, codes = _dictionary(runs.column(name), share)
            texts.append(None)
            base.shared[name] = (texts, np.where(codes < 0, len(texts) - 1, codes).astype(np.int32))
        base.run_name = combined(runs.column("run_name"))
        base.parent_run_id = combined(runs.column("parent_run_id"))
        base.usual = combined(runs.column("usual")).to_numpy(zero_copy_only=False)
        base.artifact_uri = combined(runs.column("artifact_uri"))
        base.start_time = combined(runs.column("start_time")).to_numpy(zero_copy_only=False)
        base.start_present = combined(runs.column("start_present")).to_numpy(zero_copy_only=False)
        base.end_time = combined(runs.column("end_time")).to_numpy(zero_copy_only=False)
        base.end_present = combined(runs.column("end_present")).to_numpy(zero_copy_only=False)
        entries = {}
        for kind in ("params", "tags", "metrics"):
            table = tables[kind].unify_dictionaries()
            offsets = _offsets_of(combined(runs.column(f"{kind}_count")).to_numpy(zero_copy_only=False))
            keys, codes = _dictionary(table.column("key"), share)
            values: pa.Array | bytes
            if kind == "metrics":
                points = np.empty(table.num_rows, dtype=LATEST_DTYPE)
                for field in ("timestamp", "value", "step"):
                    points[field] = combined(table.column(field)).to_numpy(zero_copy_only=False)
                values = points.tobytes()
            else:
                values = combined(table.column("value"))
            entries[kind] = Entries(offsets, keys, codes, values)
        base.params, base.tags, base.metrics = entries["params"], entries["tags"], entries["metrics"]
        return base

    def to_tables_with(self, changed: list[RunState]) -> dict[str, pa.Table]:
        """``to_tables`` with the ``changed`` runs' objects in place of their rows, and the runs the
        base does not hold after its rows (in the order given): the columns of the state the base and
        the objects make together, which is what a fold of all the rows gives. Renewing a checkpoint
        this way copies the base's columns once, spliced with the changed runs' values (made in
        Python: O(changed runs)), instead of folding every change row again
        (lakeops/stores/iceberg.py ``write_run_checkpoint``)."""
        from lakeops.stores.state import RunsUnder  # the state module imports this one

        tables = self.to_tables()
        if not changed:
            return tables
        found = self.find_many([run.run_id for run in changed])
        in_place = np.flatnonzero(found >= 0)
        in_place = in_place[np.argsort(found[in_place], kind="stable")]  # by their row
        replaced = found[in_place]
        added = np.flatnonzero(found < 0)

        def splice(bounds: np.ndarray, extra_bounds: np.ndarray) -> list[tuple[bool, int, int]]:
            """(from the changed runs' values?, start, stop) pieces of the result, in order: the base's
            rows between replaced ones, each replaced run's own, then the added runs'."""
            pieces, at = [], 0
            for row, j in zip(replaced.tolist(), in_place.tolist(), strict=True):
                pieces += [(False, at, int(bounds[row])), (True, int(extra_bounds[j]), int(extra_bounds[j + 1]))]
                at = int(bounds[row + 1])
            pieces.append((False, at, int(bounds[-1])))
            pieces += [(True, int(extra_bounds[j]), int(extra_bounds[j + 1])) for j in added.tolist()]
            return [piece for piece in pieces if piece[2] > piece[1]]

        def numbers(base: np.ndarray, extra: np.ndarray, pieces: list[tuple[bool, int, int]]) -> np.ndarray:
            return np.concatenate([base[:0], *[(extra if own else base)[a:b] for own, a, b in pieces]])

        def arrow(base: pa.Array, extra: pa.Array, pieces: list[tuple[bool, int, int]]) -> pa.Array:
            return pa.concat_arrays(
                [base.slice(0, 0), *[(extra if own else base).slice(a, b - a) for own, a, b in pieces]]
            )

        out: dict[str, pa.Table] = {}
        extra_counts: dict[str, list[int]] = {}
        for kind in ("params", "tags", "metrics"):
            entries: Entries = getattr(self, kind)
            items = [item for run in changed for item in getattr(run, kind).items()]
            extra_counts[kind] = [len(getattr(run, kind)) for run in changed]
            pieces = splice(entries.offsets, _offsets_of(np.asarray(extra_counts[kind], dtype=np.int64)))
            keys = list(entries.keys)
            code_of = {key: code for code, key in enumerate(keys)}
            extra_codes = np.array([code_of.setdefault(key, len(code_of)) for key, _value in items], dtype=np.int32)
            keys.extend(list(code_of)[len(keys) :])
            codes = numbers(entries.codes, extra_codes, pieces)
            key = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(keys, pa.string()))
            if isinstance(entries.values, bytes):
                points = numbers(
                    np.frombuffer(entries.values, dtype=LATEST_DTYPE),
                    np.frombuffer(b"".join(value for _key, value in items), dtype=LATEST_DTYPE),
                    pieces,
                )
                out[kind] = pa.table({"key": key, **{f: pa.array(points[f]) for f in ("timestamp", "value", "step")}})
            else:
                values = combined(tables[kind].column("value"))
                extra_values = pa.array([value for _key, value in items], values.type)
                out[kind] = pa.table({"key": key, "value": arrow(values, extra_values, pieces)})
        usual = [type(run.artifact_root) is RunsUnder for run in changed]
        extra_runs: dict[str, Any] = {
            "run_id": [run.run_id for run in changed],
            "run_name": [run.run_name for run in changed],
            "parent_run_id": [run.parent_run_id for run in changed],
            "artifact_uri": [None if u else run.artifact_root for run, u in zip(changed, usual, strict=True)],
            "usual": usual,
            "start_time": [run.start_time or 0 for run in changed],
            "start_present": [run.start_time is not None for run in changed],
            "end_time": [run.end_time or 0 for run in changed],
            "end_present": [run.end_time is not None for run in changed],
            "sorted_order": [0] * len(changed),  # made again below, for every row
            "experiment_id": [run.experiment_id for run in changed],
            "user_id": [run.user_id for run in changed],
            "status": [run.status for run in changed],
            "lifecycle_stage": [run.lifecycle_stage for run in changed],
            **{f"{kind}_count": counts for kind, counts in extra_counts.items()},
        }
        runs = tables["runs"]
        extra_table = pa.table({name: extra_runs[name] for name in runs.column_names}, schema=runs.schema)
        # The runs' rows: one take (18 columns spliced piece by piece would cost more).
        source = np.arange(self.size + len(added), dtype=np.int64)
        source[replaced] = self.size + in_place
        source[self.size :] = self.size + added
        both = pa.concat_tables([runs, extra_table]).unify_dictionaries().combine_chunks().take(pa.array(source))
        columns = dict(zip(both.column_names, [combined(c) for c in both.columns], strict=True))
        order = np.argsort(_fixed_width(columns["run_id"]), kind="stable")
        columns["sorted_order"] = pa.array(order, pa.int64())
        out["runs"] = pa.table(columns, schema=runs.schema)
        return out

    # -- finding and making runs --------------------------------------------------------------

    def run_ids(self) -> np.ndarray:
        """The run ids as UTF-8 bytes, in row order."""
        ids = np.empty_like(self._sorted)
        ids[self._sorter] = self._sorted
        return ids

    def find(self, run_id: str) -> int:
        """The row of ``run_id``, or -1."""
        encoded = run_id.encode()
        if not self.size or len(encoded) > self._sorted.dtype.itemsize or encoded.endswith(b"\0"):
            return -1  # numpy bytes drop trailing NULs: "<id>\0" would compare equal to "<id>"
        at = int(np.searchsorted(self._sorted, encoded))
        if at < self.size and self._sorted[at] == encoded:
            return int(self._sorter[at])
        return -1

    def find_many(self, run_ids: list[str]) -> np.ndarray:
        """``find`` of each id, vectorised."""
        if not self.size or not run_ids:
            return np.full(len(run_ids), -1, dtype=np.int64)
        wanted = np.array([r.encode() for r in run_ids])
        if wanted.dtype.itemsize > self._sorted.dtype.itemsize:  # longer than every id: not here
            fits = np.array([len(w) <= self._sorted.dtype.itemsize for w in wanted])
            wanted = np.where(fits, wanted, b"").astype(self._sorted.dtype)
        else:
            fits = np.ones(len(wanted), dtype=bool)
        at = np.minimum(np.searchsorted(self._sorted, wanted), self.size - 1)
        plain = np.array([not r.endswith("\0") for r in run_ids], dtype=bool)  # see ``find``
        hit = fits & plain & (self._sorted[at] == wanted)
        return np.where(hit, self._sorter[at], -1).astype(np.int64)

    def rows_of(self, ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """The row of each id (-1: not a run of the base), vectorised."""
        found = pc.index_in(ids, value_set=self.ids)  # chunks and all: no copy of the ids
        rows: np.ndarray = pc.fill_null(found, -1).to_numpy().astype(np.int64)
        return rows

    def attribute(self, name: str, row: int) -> Any:
        texts, codes = self.shared[name]
        return texts[codes[row]]

    def strings(self, name: str) -> pa.Array:
        """An attribute's value for every row, as Arrow strings (search columns are built from it)."""
        if name in self.shared:
            texts, codes = self.shared[name]
            return pa.array(texts, pa.string()).take(pa.array(codes))
        if name == "run_id":
            return self.ids
        if name == "artifact_uri":
            return self._artifact_uris()
        return {"run_name": self.run_name, "parent_run_id": self.parent_run_id}[name]

    def _artifact_uris(self) -> pa.Array:
        """Every run's artifact URI: the usual ones made from their experiment's location."""
        texts, codes = self.shared["experiment_id"]
        locations = []
        for experiment_id in texts:
            root = None if experiment_id is None else self._artifact_root("", experiment_id, None, True)
            locations.append(str(root) if root is not None else None)
        text = pa.large_string()
        location = pa.array(locations, text).take(pa.array(codes))
        usual = pc.binary_join_element_wise(
            location, self.ids.cast(text), pa.scalar("artifacts", text), pa.scalar("/", text)
        )
        return pc.if_else(pa.array(self.usual), usual, self.artifact_uri.cast(text)).cast(pa.string())

    def numbers(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, present) of ``start_time`` or ``end_time``."""
        if name == "start_time":
            return self.start_time, self.start_present
        return self.end_time, self.end_present

    def make(self, row: int) -> RunState:
        """The run at ``row`` as a ``RunState`` of its own (a change to it does not reach the base),
        with scalar reads: ~25 us."""
        usual = bool(self.usual[row])
        return self._state(
            row,
            self.ids[row].as_py(),
            self.run_name[row].as_py(),
            self.parent_run_id[row].as_py(),
            None if usual else self.artifact_uri[row].as_py(),
            usual,
            {name: texts[codes[row]] for name, (texts, codes) in self.shared.items()},
            int(self.start_time[row]) if self.start_present[row] else None,
            int(self.end_time[row]) if self.end_present[row] else None,
            self._dict(self.params, row),
            self._dict(self.tags, row),
            self._dict(self.metrics, row),
        )

    def make_many(self, rows: list[int]) -> list[RunState]:
        """``make`` of each row, with one Arrow take per column for all of them (a page of runs: an
        Arrow take costs ~20 us whatever its length)."""
        if len(rows) <= 4:
            return [self.make(row) for row in rows]
        at = np.asarray(rows, dtype=np.int64)
        taken = pa.array(at)
        ids = self.ids.take(taken).to_pylist()
        names = self.run_name.take(taken).to_pylist()
        parents = self.parent_run_id.take(taken).to_pylist()
        uris = self.artifact_uri.take(taken).to_pylist()
        shared = {name: [texts[c] for c in codes[at].tolist()] for name, (texts, codes) in self.shared.items()}
        starts = self.start_time[at].tolist()
        started = self.start_present[at].tolist()
        ends = self.end_time[at].tolist()
        ended = self.end_present[at].tolist()
        usual = self.usual[at].tolist()
        params = self._dicts(self.params, at)
        tags = self._dicts(self.tags, at)
        metrics = self._dicts(self.metrics, at)
        return [
            self._state(
                row,
                ids[i],
                names[i],
                parents[i],
                uris[i],
                usual[i],
                {name: values[i] for name, values in shared.items()},
                starts[i] if started[i] else None,
                ends[i] if ended[i] else None,
                params[i],
                tags[i],
                metrics[i],
            )
            for i, row in enumerate(rows)
        ]

    def _state(
        self,
        row: int,
        run_id: str,
        run_name: str | None,
        parent_run_id: str | None,
        artifact_uri: str | None,
        usual: bool,
        shared: dict[str, Any],
        start_time: int | None,
        end_time: int | None,
        params: dict[str, Any],
        tags: dict[str, Any],
        metrics: dict[str, Any],
    ) -> RunState:
        from lakeops.stores.state import RunState  # the state module imports this one

        experiment_id = shared["experiment_id"]
        return RunState(
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=run_name,
            user_id=shared["user_id"],
            status=shared["status"],
            start_time=start_time,
            end_time=end_time,
            lifecycle_stage=shared["lifecycle_stage"],
            artifact_root=self._artifact_root(run_id, experiment_id, artifact_uri, usual),
            parent_run_id=parent_run_id,
            params=params,
            tags=tags,
            metrics=metrics,
            row=row,
        )

    @staticmethod
    def _dict(entries: Entries, row: int) -> dict[str, Any]:
        """One row's entries as a dict (metrics: packed latest points)."""
        a, b = int(entries.offsets[row]), int(entries.offsets[row + 1])
        if b == a:
            return {}
        keys = entries.keys
        names = [keys[c] for c in entries.codes[a:b].tolist()]
        if isinstance(entries.values, bytes):
            width = LATEST_DTYPE.itemsize
            raw = entries.values
            return dict(zip(names, [raw[p * width : (p + 1) * width] for p in range(a, b)], strict=True))
        return dict(zip(names, entries.values.slice(a, b - a).to_pylist(), strict=True))

    @staticmethod
    def _dicts(entries: Entries, rows: np.ndarray) -> list[dict[str, Any]]:
        """``_dict`` of each row, vectorised."""
        firsts, lasts = entries.offsets[rows], entries.offsets[rows + 1]
        counts = lasts - firsts
        total = int(counts.sum())
        if not total:
            return [{} for _ in range(len(rows))]
        # The positions of every row's entries, one after the other.
        positions = np.repeat(firsts - np.cumsum(counts) + counts, counts) + np.arange(total)
        keys = entries.keys
        names = [keys[c] for c in entries.codes[positions].tolist()]
        values: list[Any]
        if isinstance(entries.values, bytes):
            width = LATEST_DTYPE.itemsize
            raw = entries.values
            values = [raw[p * width : (p + 1) * width] for p in positions.tolist()]
        else:
            values = entries.values.take(pa.array(positions)).to_pylist()
        out = []
        at = 0
        for count in counts.tolist():
            out.append(dict(zip(names[at : at + count], values[at : at + count], strict=True)) if count else {})
            at += count
        return out

    # -- loading params, tags and metrics ------------------------------------------------------

    def _known(
        self, rows: pa.Table, id_column: str, share: Callable[[list[Any]], list[Any]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
        """(positions of rows whose run is known, their runs, their key codes, the keys, positions of
        the rest)."""
        runs = self.rows_of(rows.column(id_column))
        known = runs >= 0
        positions = np.flatnonzero(known)
        encoded = pc.dictionary_encode(combined(rows.column("key")))
        keys: list[str] = share(encoded.dictionary.to_pylist())
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)[positions]
        return positions, runs[positions], codes, keys, np.flatnonzero(~known)

    def load_params(self, rows: pa.Table, share: Callable[[list[Any]], list[Any]]) -> np.ndarray:
        """Params in row order: the first value of each (run, key) stays. Returns the positions of
        rows whose run is not in the base."""
        positions, runs, codes, keys, missing = self._known(rows, "run_id", share)
        combined_key = runs * max(len(keys), 1) + codes
        _unique, first = np.unique(combined_key, return_index=True)  # each pair's first row
        permutation, entry_runs, entry_codes = _grouped(runs[first], codes[first], first)
        taken = first[permutation]
        values = combined(rows.column("value")).take(pa.array(positions[taken]))
        self.params = Entries(_offsets(entry_runs, self.size), keys, entry_codes, values)
        return missing

    def load_tags(self, rows: pa.Table, share: Callable[[list[Any]], list[Any]]) -> np.ndarray:
        """Run tags in row order: each (run, key)'s last row wins, a deleted tag is gone, and a tag set
        again after its delete is listed where it was set again. Returns the rows of unknown runs."""
        positions, runs, codes, keys, missing = self._known(rows, "entity_id", share)
        deleted = combined(rows.column("is_deleted")).to_numpy(zero_copy_only=False)[positions]
        combined_key = runs * max(len(keys), 1) + codes
        order = np.argsort(combined_key, kind="stable")  # pairs together, each in row order
        pairs = combined_key[order]
        starts = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]]) if len(pairs) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(pairs)].astype(np.int64)
        alive = ~deleted[order[ends - 1]]
        last_delete = (
            np.maximum.reduceat(np.where(deleted[order], np.arange(len(order)), -1), starts)
            if len(starts)
            else np.zeros(0, np.int64)
        )
        placed = order[np.where(last_delete >= 0, last_delete + 1, starts)[alive]]  # row setting its dict place
        last = order[ends - 1][alive]  # row giving its value
        permutation, entry_runs, entry_codes = _grouped(runs[placed], codes[placed], placed)
        values = pc.fill_null(combined(rows.column("value")).take(pa.array(positions[last[permutation]])), "")
        self.tags = Entries(_offsets(entry_runs, self.size), keys, entry_codes, values)
        return missing

    def load_metrics(self, rows: pa.Table, share: Callable[[list[Any]], list[Any]]) -> np.ndarray:
        """Latest points (no null time, value or step): each (run, key) keeps its greatest
        ``metric_rank``, the first row of a tie; keys listed in the order first seen."""
        positions, runs, codes, keys, missing = self._known(rows, "run_id", share)
        values = combined(rows.column("value")).to_numpy(zero_copy_only=False)[positions]
        steps = combined(rows.column("step")).to_numpy(zero_copy_only=False)[positions]
        stamps = epoch_array(combined(rows.column("recorded_at")), "ms")[positions]
        combined_key = runs * max(len(keys), 1) + codes
        order = np.argsort(combined_key, kind="stable")
        pairs = combined_key[order]
        if len(pairs) and bool((pairs[1:] == pairs[:-1]).any()):  # several points of a pair: rank them
            number = ~np.isnan(values)
            # Ascending within each pair; the last of a pair is its latest point (a tie: its first row).
            order = np.lexsort(
                (-np.arange(len(values)), steps, np.where(number, values, 0.0), number, stamps, combined_key)
            )
            pairs = combined_key[order]
        starts = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]]) if len(pairs) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(pairs)].astype(np.int64)
        latest = order[ends - 1]
        placed = np.minimum.reduceat(order, starts) if len(starts) else np.zeros(0, np.int64)
        permutation, entry_runs, entry_codes = _grouped(runs[latest], codes[latest], placed)
        chosen = latest[permutation]
        points = np.empty(len(chosen), dtype=LATEST_DTYPE)
        points["timestamp"], points["value"], points["step"] = stamps[chosen], values[chosen], steps[chosen]
        self.metrics = Entries(_offsets(entry_runs, self.size), keys, entry_codes, points.tobytes())
        return missing

    def metric_values(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(run rows, latest values) of metric ``key``."""
        rows, positions = self.metrics.column(key)
        raw = self.metrics.values
        assert isinstance(raw, bytes)
        points = np.frombuffer(raw, dtype=LATEST_DTYPE)
        return rows, points["value"][positions]

    def string_values(self, entity: str, key: str) -> tuple[np.ndarray, pa.Array]:
        """(run rows, values) of param or tag ``key``."""
        entries = self.params if entity == "param" else self.tags
        rows, positions = entries.column(key)
        values = entries.values
        assert isinstance(values, pa.Array)
        return rows, values.take(pa.array(positions, pa.int64()))

    def deleted_run_ids(self) -> list[str]:
        texts, codes = self.shared["lifecycle_stage"]
        if "deleted" not in texts:
            return []
        deleted: list[str] = self.ids.take(pa.array(np.flatnonzero(codes == texts.index("deleted")))).to_pylist()
        return deleted


class Runs:
    """Runs by id: the start-up base's rows, and ``RunState`` objects of the runs changed since.

    ``get``, ``in`` and ``[]`` read; the fold changes runs through ``for_update`` (which keeps the
    object it makes) and ``[run_id] = run``. Iteration makes every base run: for tests and small
    lakes, not for serving paths.
    """

    def __init__(self, index: RunIndex) -> None:
        self.base: RunBase | None = None
        self.objects: dict[str, RunState] = {}  # runs made or changed since start-up
        self._index = index  # reads a run's values from its object once it has one
        self._added = 0  # objects of runs the base does not hold

    def get_many(self, run_ids: list[str]) -> list[RunState]:
        """The runs of ``run_ids`` that exist, in that order (a page: the base's made together)."""
        found: list[RunState | None] = [self.objects.get(run_id) for run_id in run_ids]
        base = self.base
        if base is not None:
            missing = [i for i, run in enumerate(found) if run is None]
            rows = base.find_many([run_ids[i] for i in missing]).tolist()
            hits = [(i, row) for i, row in zip(missing, rows, strict=True) if row >= 0]
            for (i, _row), run in zip(hits, base.make_many([row for _i, row in hits]), strict=True):
                found[i] = run
        return [run for run in found if run is not None]

    def get(self, run_id: str, default: RunState | None = None) -> RunState | None:
        run = self.objects.get(run_id)
        if run is not None:
            return run
        base = self.base
        if base is not None and (row := base.find(run_id)) >= 0:
            return base.make(row)
        return default

    def for_update(self, run_id: str) -> RunState | None:
        """The run's object, made from the base and kept from now on (the caller holds the fold's lock)."""
        run = self.objects.get(run_id)
        if run is None and self.base is not None and (row := self.base.find(run_id)) >= 0:
            run = self.objects[run_id] = self._index.runs[row] = self.base.make(row)
        return run

    def __contains__(self, run_id: object) -> bool:
        if run_id in self.objects:
            return True
        return isinstance(run_id, str) and self.base is not None and self.base.find(run_id) >= 0

    def __getitem__(self, run_id: str) -> RunState:
        run = self.get(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    def __setitem__(self, run_id: str, run: RunState) -> None:
        if run_id not in self.objects and (self.base is None or self.base.find(run_id) < 0):
            self._added += 1
        self.objects[run_id] = run

    def __len__(self) -> int:
        return (self.base.size if self.base is not None else 0) + self._added

    def __iter__(self) -> Iterator[str]:
        return (run_id for run_id, _run in self.items())

    def items(self) -> Iterator[tuple[str, RunState]]:
        """Every run in the order runs were first seen (base rows, then runs added since)."""
        base = self.base
        if base is None:
            yield from list(self.objects.items())
            return
        for row in range(base.size):
            run_id = base.ids[row].as_py()
            run = self.objects.get(run_id)
            yield run_id, run if run is not None else base.make(row)
        added = [run for run in list(self.objects.values()) if run.row < 0 or run.row >= base.size]
        for run in sorted(added, key=lambda r: r.row):
            yield run.run_id, run

    def values(self) -> Iterator[RunState]:
        return (run for _id, run in self.items())

    def deleted_run_ids(self) -> set[str]:
        """Ids of the runs whose lifecycle stage is ``deleted``, without making the base's runs."""
        deleted = {run.run_id for run in list(self.objects.values()) if run.lifecycle_stage == "deleted"}
        base = self.base
        if base is not None:
            deleted.update(r for r in base.deleted_run_ids() if r not in self.objects)
        return deleted
