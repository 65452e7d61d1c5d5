"""The run index's top-k pages against a full Python sort, on enough runs for the partition path.

tests/lakeops/test_search.py checks filters and orders end to end on a reloaded lake (240 runs,
where a page is cut from a full sort); here 12,000 runs with many ties, NaNs and missing values
go through the columns directly, so that the top-k narrowing (partition, then ties narrowed by
the next clause) is what answers.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from lakeops.search import RankedRuns, parse_filter, parse_order_by, search_run_index
from lakeops.stores.run_index import RunIndex, pack_latest, unpack_latest
from lakeops.stores.state import RunState

N = 12_000


def _index(max_columns: int = 64) -> tuple[RunIndex, list[RunState]]:
    rng = random.Random(11)
    index = RunIndex(max_columns=max_columns)
    runs: list[RunState] = []
    with index.lock:
        for i in range(N):
            run = RunState(
                run_id=f"{rng.getrandbits(128):032x}",
                experiment_id=str(i % 3),
                run_name=f"r{i % 500}",
                user_id=None,
                status="FINISHED",
                start_time=rng.choice([None, 1, 2, 3]) if i % 7 else rng.randint(0, 10),
                end_time=None,
                lifecycle_stage="deleted" if i % 13 == 0 else "active",
                artifact_root=None,
                parent_run_id=None,
            )
            index.upsert_run(run)
            if rng.random() < 0.9:
                value = rng.choice([math.nan, 0.5, 0.25, -0.0, 0.0, rng.random()])
                run.metrics["acc"] = pack_latest(1, value, 0)
                index.set_value("metric", "acc", run, value)
            if rng.random() < 0.7:
                lr = rng.choice(["0.1", "0.01", "1e-3", "Z", "a"])
                run.params["lr"] = lr
                index.set_value("param", "lr", run, lr)
            runs.append(run)
    return index, runs


def _reference(runs: list[RunState], order: list[tuple[str, bool]]) -> list[str]:
    """MLflow's order as the old Python search computed it: stable sorts, missing last."""

    def get(run: RunState, what: str) -> Any:
        kind, key = what.split(".", 1)
        if kind == "metrics":
            return unpack_latest(run.metrics[key])[1] if key in run.metrics else None
        if kind == "params":
            return run.params.get(key)
        return getattr(run, key)

    def norm(v: Any) -> Any:
        return (1, 0.0) if isinstance(v, float) and math.isnan(v) else ((0, v) if isinstance(v, int | float) else v)

    out = sorted(runs, key=lambda r: r.run_id)
    for what, ascending in reversed([*order, ("attributes.start_time", False)]):
        valued = [r for r in out if get(r, what) is not None]
        valued.sort(key=lambda r: norm(get(r, what)), reverse=not ascending)
        out = valued + [r for r in out if get(r, what) is None]
    return [r.run_id for r in out]


ORDERS = [
    [],
    [("metrics.acc", True)],
    [("metrics.acc", False)],
    [("params.lr", True), ("metrics.acc", False)],
    [("params.lr", False)],
    [("attributes.run_name", True)],
]


@pytest.fixture(scope="module")
def indexed() -> tuple[RunIndex, list[RunState]]:
    return _index()


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_top_k_pages_match_a_full_sort(indexed: tuple[RunIndex, list[RunState]], order: list[tuple[str, bool]]) -> None:
    index, runs = indexed
    active = [r for r in runs if r.experiment_id in ("0", "2") and r.lifecycle_stage == "active"]
    want = _reference(active, order)
    clauses = parse_order_by([f"{what} {'ASC' if asc else 'DESC'}" for what, asc in order])
    for offset, limit in [(0, 1), (0, 100), (100, 100), (2_950, 50), (0, 1000), (7_000, 1_000)]:
        ranked = search_run_index(index, ["0", "2"], {"active"}, [], clauses)
        assert len(ranked) == len(want)
        assert ranked.page(offset, limit) == want[offset : offset + limit], (offset, limit)


def test_filters_with_top_k(indexed: tuple[RunIndex, list[RunState]]) -> None:
    index, runs = indexed
    ranked = search_run_index(
        index,
        ["0", "1", "2"],
        {"active", "deleted"},
        parse_filter("metrics.acc >= 0 AND params.lr IN ('0.1', 'Z')"),
        parse_order_by(["metrics.acc DESC"]),
    )
    chosen = [
        r
        for r in runs
        if r.params.get("lr") in ("0.1", "Z") and "acc" in r.metrics and unpack_latest(r.metrics["acc"])[1] >= 0
    ]
    assert ranked.page(0, 100) == _reference(chosen, [("metrics.acc", False)])[:100]


def test_columns_follow_writes_and_evicted_columns_come_back() -> None:
    index, runs = _index(max_columns=1)
    by_acc = parse_order_by(["metrics.acc ASC"])
    first = search_run_index(index, ["0"], {"active"}, [], by_acc).page(0, 1)[0]
    target = next(r for r in runs if r.experiment_id == "0" and r.lifecycle_stage == "active" and r.run_id != first)
    with index.lock:  # as the state's fold does: the object, then the column
        target.metrics["acc"] = pack_latest(2, -5.0, 0)
        index.set_value("metric", "acc", target, -5.0)
    assert search_run_index(index, ["0"], {"active"}, [], by_acc).page(0, 1) == [target.run_id]
    search_run_index(index, ["0"], {"active"}, parse_filter("params.lr = 'Z'"), [])  # evicts the acc column
    with index.lock:
        target.metrics["acc"] = pack_latest(3, 5.0, 0)
        index.set_value("metric", "acc", target, 5.0)  # no column to update: rebuilt from the runs
    assert search_run_index(index, ["0"], {"active"}, [], by_acc).page(0, 1) == [first]


def test_a_ranked_snapshot_ignores_later_writes() -> None:
    index, runs = _index()
    ranked: RankedRuns = search_run_index(index, ["1"], {"active"}, [], parse_order_by(["metrics.acc ASC"]))
    before = ranked.page(0, 5_000)
    run = next(r for r in runs if r.run_id == before[0])
    with index.lock:
        run.metrics["acc"] = pack_latest(9, 99.0, 0)
        index.set_value("metric", "acc", run, 99.0)
    assert ranked.page(0, 5_000) == before  # later pages of a search slice what it found
    fresh = search_run_index(index, ["1"], {"active"}, [], parse_order_by(["metrics.acc ASC"])).page(0, 5_000)
    assert fresh[0] != before[0]


def test_searches_during_writes_see_each_run_before_or_after() -> None:
    """New distinct values and new runs arrive while searches read the columns without a lock."""
    import threading

    index, runs = _index()
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        i = 0
        while not stop.is_set() and i < 20_000:
            run = runs[i % len(runs)]
            with index.lock:
                value = f"v{i}"  # a new distinct value each time
                run.tags["t"] = value
                index.set_value("tag", "t", run, value)
            i += 1

    def search() -> None:
        try:
            for _ in range(40):
                for text in ("tags.t != 'v1'", "tags.t LIKE 'v1%'", "tags.t IN ('v3', 'v5')", "tags.t = 'v7'"):
                    search_run_index(index, ["0", "1", "2"], {"active"}, parse_filter(text), []).page(0, 50)
        except BaseException as exc:  # reported below
            errors.append(exc)

    writer = threading.Thread(target=write)
    readers = [threading.Thread(target=search) for _ in range(2)]
    writer.start()
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    stop.set()
    writer.join()
    assert errors == []
    final = search_run_index(index, ["0", "1", "2"], {"active", "deleted"}, parse_filter("tags.t LIKE 'v1%'"), [])
    want = {r.run_id for r in runs if str(r.tags.get("t", "")).startswith("v1")}
    assert set(final.page(0, N)) == want
