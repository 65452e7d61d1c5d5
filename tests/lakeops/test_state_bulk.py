"""Large batches fold per run (the bulk paths in lakeops/stores/state.py); the state must be the one
the row-by-row fold gives.

Two states take the same calls: one folds every batch row by row (``bulk_rows=None``), the other
every batch through the bulk paths (``bulk_rows=1``). The rows are built to hit what the bulk
paths reorder or skip: a run changed several times in one batch, params set twice (the first
value stays), tags deleted and set again, null and long tag values, metric points that tie on
timestamp or are NaN, rows of runs not yet known (left waiting, then applied), experiment and
logged-model tags among run tags, and search columns cached before the fold.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pytest

from catalog.tables import (
    EXPERIMENT_CHANGES,
    METRIC_LATEST,
    METRICS,
    PARAMS,
    RUN_CHANGES,
    RUN_IO,
    TAG_CHANGES,
    TableDef,
)
from lakeops.stores.state import TrackingState

T0 = 1_700_000_000_000_000  # µs


def _rows(table: TableDef, records: list[Mapping[str, Any]]) -> pa.Table:
    defaults = {"changed_at": T0, "actor": "t", "operation": "x", "writer_id": "w", "wal_seq": 0}
    columns = {f.name: [r.get(f.name, defaults.get(f.name)) for r in records] for f in table.arrow_schema}
    return pa.Table.from_pydict(columns, schema=table.arrow_schema)


def _workload(seed: int) -> list[tuple[str, pa.Table]]:
    """Calls of ``TrackingState.apply``, in order: three rounds over every table."""
    rng = random.Random(seed)
    experiments = _rows(
        EXPERIMENT_CHANGES,
        [
            {
                "experiment_id": e,
                "name": f"exp{e}",
                "artifact_location": location,
                "lifecycle_stage": "active",
                "created_at": T0,
                "operation": "create",
            }
            for e, location in (("0", "mlflow-artifacts:/0"), ("1", None))
        ],
    )
    run_ids = [f"{rng.getrandbits(128):032x}" for _ in range(400)]
    late = set(run_ids[300:])  # created only in the last round: their earlier rows wait
    calls: list[tuple[str, pa.Table]] = [(EXPERIMENT_CHANGES.name, experiments)]
    for round_ in range(3):
        runs = [
            {
                "run_id": r,
                "experiment_id": rng.choice("01"),
                "run_name": rng.choice([None, f"n{i}"]),
                "user_id": "u",
                "status": rng.choice(["RUNNING", "FINISHED", "FAILED"]),
                "started_at": rng.choice([None, T0 + i, T0 - 5_000]),
                "ended_at": rng.choice([None, T0 + 10 * i]),
                "lifecycle_stage": rng.choice(["active", "active", "deleted"]),
                # the usual URI under experiment 0's location (kept as that location), or another
                "artifact_uri": rng.choice([f"mlflow-artifacts:/0/{r}/artifacts", f"a/{r}", None]),
                "parent_run_id": rng.choice([None, run_ids[0]]),
            }
            for i, r in enumerate(run_ids)
            if (r in late) == (round_ == 2)
            # one to three changes when the run is created (round 0, or 2 for late runs), then zero or one
            for _ in range(rng.choice([1, 1, 2, 3] if round_ in (0, 2) else [0, 0, 1]))
        ]
        rng.shuffle(runs)
        tags = [
            {
                "entity_type": kind,
                "entity_id": entity,
                "key": rng.choice(["team", "mlflow.runName", "note"]),
                "value": rng.choice([None, "", "a", "b", "x" * 40]),
                "is_deleted": rng.random() < 0.2,
            }
            for _ in range(900)
            for kind, entity in [
                rng.choice(
                    [("run", rng.choice(run_ids)), ("run", rng.choice(run_ids)), ("experiment", rng.choice("01"))]
                )
            ]
        ]
        params = [
            {
                "run_id": rng.choice(run_ids),
                "key": rng.choice(["lr", "depth", "opt"]),
                "value": rng.choice(["1", "2", "y" * 40]),
                "logged_at": T0,
            }
            for _ in range(900)
        ]
        metrics = [
            {
                "run_id": rng.choice(run_ids),
                "key": rng.choice(["loss", "acc"]),
                "value": rng.choice([math.nan, 0.5, 0.25, rng.random(), -math.inf, 0.0, -0.0]),  # 0.0 and -0.0 tie
                "recorded_at": T0 + rng.choice([0, 1_000, 2_000, 2_500]),
                "step": rng.choice([0, 1, 2]),
            }
            for _ in range(900)
        ]
        latest = [dict(m, min_value=None, max_value=None, points=1) for m in metrics[:300]]
        calls += [
            (RUN_CHANGES.name, _rows(RUN_CHANGES, runs)),
            (TAG_CHANGES.name, _rows(TAG_CHANGES, tags)),
            (PARAMS.name, _rows(PARAMS, params)),
            (METRICS.name, _rows(METRICS, metrics)),
            (METRIC_LATEST.name, _rows(METRIC_LATEST, latest)),
        ]
    return calls


def _fold(calls: list[tuple[str, pa.Table]], bulk_rows: int | None, *, starting: int = 0) -> TrackingState:
    """The state after ``calls``; the first ``starting`` of them as start-up's (``TrackingState.starting``:
    the runs, params, tags and metrics they carry go into columns, lakeops/stores/run_base.py)."""
    state = TrackingState(bulk_rows=bulk_rows)
    for entity, key in [("param", "lr"), ("tag", "team"), ("metric", "loss"), ("attribute", "status")]:
        state.run_index.column(entity, key)  # cached columns the folds must keep current
    with state.starting():
        for table, rows in calls[:starting]:
            state.apply(table, rows)
    for i, (table, rows) in enumerate(calls[starting:], starting):
        state.apply(table, rows)
        if i == len(calls) // 2:
            state.retry_orphans()
    state.retry_orphans()
    return state


def _plain(value: Any) -> Any:
    """NaN as a string: NaN equals nothing, not even another NaN."""
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def _snapshot(state: TrackingState) -> dict[str, Any]:
    index = state.run_index
    size = index.size
    columns = {}
    for entity, key in [
        ("param", "lr"),
        ("tag", "team"),
        ("metric", "loss"),
        ("attribute", "status"),
        ("param", "opt"),
    ]:
        column = index.column(entity, key)
        if hasattr(column, "codes"):
            columns[(entity, key)] = [None if c < 0 else column.values[c] for c in column.codes[:size]]
        else:
            columns[(entity, key)] = [
                v if p else None for v, p in zip(column.values[:size], column.present[:size], strict=True)
            ]
    return {
        # Field by field, and the dicts' order (what a run's params and tags list in).
        "runs": [
            (run_id, run, run.artifact_uri, list(run.params.items()), list(run.tags.items()), list(run.metrics.items()))
            for run_id, run in state.runs.items()
        ],
        "experiment_tags": {e: list(x.tags.items()) for e, x in state.experiments.items()},
        "index_ids": index.run_ids[:size].tolist(),
        # the objects the index reads are the state's own (changes made to one reach the other)
        "index_runs": all(
            state.runs.objects.get(run.run_id) is run and run.row == row for row, run in index.runs.items()
        ),
        "experiments": [index.experiments.values[c] for c in index.experiments.codes[:size]],
        "lifecycle": index.lifecycle[:size].tolist(),
        "start_time": [
            v if p else None
            for v, p in zip(index.start_time.values[:size], index.start_time.present[:size], strict=True)
        ],
        "columns": {k: [_plain(v) for v in vs] for k, vs in columns.items()},
        "waiting": [
            (table, [{k: _plain(v) for k, v in row.items()} for row in rows.to_pylist()])
            for table, rows in state._orphans
        ],
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_fold_gives_the_row_by_row_state(seed: int) -> None:
    calls = _workload(seed)
    by_row, in_bulk = _fold(calls, None), _fold(calls, 1)
    assert len(by_row.runs) == 400
    assert _snapshot(in_bulk) == _snapshot(by_row)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("starting", [6, 8, 11, 16])
@pytest.mark.parametrize("bulk_rows", [1, 4096])
def test_start_up_columns_give_the_row_by_row_state(seed: int, starting: int, bulk_rows: int) -> None:
    """Start-up's tables kept as columns, then later rows folding into objects made from them (in
    bulk or row by row): the same runs (all of round 0's calls, or fewer: some kinds then fold as
    objects at start-up)."""
    calls = _workload(seed)
    by_row, from_base = _fold(calls, None), _fold(calls, bulk_rows, starting=starting)
    assert from_base.runs.base is not None and from_base.runs.base.size > 0
    assert len(from_base.runs) == 400
    assert _snapshot(from_base) == _snapshot(by_row)


def test_start_up_columns_alone() -> None:
    """Only start-up's rows: every run read from the columns, none made into an object kept."""
    calls = _workload(4)[:5]  # experiments, then runs, tags, params and metrics once each
    by_row, from_base = _fold(calls, None, starting=5), _fold(calls, 1, starting=5)
    assert not from_base.runs.objects
    assert _snapshot(from_base) == _snapshot(by_row)
    deleted = {r for r, run in by_row.runs.items() if run.lifecycle_stage == "deleted"}
    assert deleted and from_base.runs.deleted_run_ids() == deleted


def test_rows_of_unknown_runs_wait_in_bulk_too() -> None:
    state = TrackingState(bulk_rows=1)
    params = _rows(PARAMS, [{"run_id": "r1", "key": "lr", "value": "1", "logged_at": T0}] * 3)
    state.apply(PARAMS.name, params)
    assert state.retry_orphans() == 3
    state.apply(
        RUN_CHANGES.name,
        _rows(RUN_CHANGES, [{"run_id": "r1", "experiment_id": "0", "status": "RUNNING", "lifecycle_stage": "active"}]),
    )
    assert state.retry_orphans() == 0
    assert state.runs["r1"].params == {"lr": "1"}


def test_a_run_keeps_its_artifact_uri() -> None:
    """The usual URI is kept as the experiment's location; every URI reads back as it was written."""
    for bulk_rows in (None, 1):
        state = TrackingState(bulk_rows=bulk_rows)
        experiment = {"name": "e", "lifecycle_stage": "active", "created_at": T0}
        state.apply(
            EXPERIMENT_CHANGES.name,
            _rows(EXPERIMENT_CHANGES, [dict(experiment, experiment_id="0", artifact_location="s3://b/0")]),
        )
        uris = {"r1": "s3://b/0/r1/artifacts", "r2": "s3://b/0/r1/artifacts", "r3": "s3://other/r3", "r4": None}
        runs = [
            {"run_id": r, "experiment_id": "0", "status": "RUNNING", "lifecycle_stage": "active", "artifact_uri": u}
            for r, u in uris.items()
        ]
        state.apply(RUN_CHANGES.name, _rows(RUN_CHANGES, runs))
        assert {r: state.runs[r].artifact_uri for r in uris} == uris
        assert state.runs["r1"].artifact_root == "s3://b/0"  # shared, not one string per run


def test_run_io_waits_for_the_run_index_lock() -> None:
    """A search building a column holds the run index's lock while it reads ``run_index.runs``; a run
    read from the start-up columns gets its object (and its entry there) on its first change, so
    the run_io fold, like the others, must make it under that lock (else the build's reads of the
    dict race it: "dictionary changed size during iteration", or rows and values of two lengths)."""
    calls = _workload(5)[:5]
    state = _fold(calls, 1, starting=5)
    assert not state.runs.objects and not state.run_index.runs
    run_id = next(iter(state.runs))
    link = {"run_id": run_id, "direction": "input", "kind": "dataset", "dataset_name": "d", "logged_at": T0}
    io = pa.Table.from_pylist([link], schema=RUN_IO.arrow_schema)
    folding = threading.Thread(target=state.apply, args=(RUN_IO.name, io))
    with state.run_index.lock:  # as RunIndex.column holds it around _build
        folding.start()
        folding.join(timeout=10)  # the fold may not finish while the lock is held
        assert not state.run_index.runs, "the run_io fold changed the run index's runs without its lock"
    folding.join()
    run = state.runs[run_id]
    assert run.inputs and run.inputs[0]["dataset_name"] == "d"
    assert state.run_index.runs[run.row] is run


def test_an_id_with_trailing_nuls_is_not_a_run_of_the_columns() -> None:
    """numpy's bytes strings drop trailing NULs, so ``<run id>\\0`` once compared equal to the run id in
    the start-up columns: a get, ``in`` or page lookup of such an id (a request's run_id) found the
    run, and a write to it would have folded under the wrong id."""
    state = _fold(_workload(6)[:5], 1, starting=5)
    run_id = next(iter(state.runs))
    for odd in (run_id + "\x00", run_id[:-1] + "\x00", run_id + "\x00\x00"):
        assert state.runs.get(odd) is None
        assert odd not in state.runs
        assert [r.run_id for r in state.runs.get_many([odd, run_id])] == [run_id]
        assert state.runs.for_update(odd) is None
    assert state.runs.get(run_id) is not None
