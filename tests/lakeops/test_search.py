"""Run search: MLflow's filter language and ordering against a plain-Python reference."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from lakes import reopen

from lakeops.entities import Run, RunStatus, ViewType
from lakeops.errors import InvalidArgumentError
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService

N_RUNS = 240


def _generate(tracking: TrackingService) -> str:
    rng = random.Random(7)
    exp = tracking.create_experiment("search")
    plans = []
    for i in range(N_RUNS):
        user_id, start_time = rng.choice(["ana", "bo", "cy"]), 1_000 + rng.randint(0, 50)
        params = {"opt": rng.choice(["adam", "sgd", "Adam"]), "depth": str(rng.randint(1, 5))}
        if rng.random() < 0.8:
            params["lr"] = rng.choice(["0.1", "0.01", "0.001"])
        metrics = [("acc", rng.choice([rng.random(), rng.random(), math.nan]), 5, 0)]
        if rng.random() < 0.7:
            metrics.append(("loss", rng.uniform(-1, 3), 5, 0))
        tags = {"team": rng.choice(["vision", "nlp", "speech"])} if rng.random() < 0.6 else {}
        plans.append((i, user_id, start_time, params, metrics, tags))

    def write(plan: tuple[int, str, int, dict[str, str], list[Any], dict[str, str]]) -> None:
        i, user_id, start_time, params, metrics, tags = plan
        rid = tracking.create_run(exp, run_name=f"run-{i:03d}", user_id=user_id, start_time=start_time).info.run_id
        tracking.log_batch(rid, params=params, metrics=metrics, tags=tags)
        if i % 4 == 0:
            tracking.update_run(rid, status=RunStatus.FINISHED, end_time=2_000 + i)
        if i % 17 == 0:
            tracking.delete_run(rid)

    # Written by 16 threads, as by concurrent clients: their constrained writes share commit rounds
    # (one at a time, the 240 runs cost ~40 CPU-s of commits). Same data: every random draw is made above.
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(write, plans))
    return exp


def _metric(r: Run, k: str) -> float | None:
    return r.metrics[k].value if k in r.metrics else None


def _like(pattern: str, text: str | None, flags: int = 0) -> bool:
    if text is None:
        return False
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, flags | re.DOTALL) is not None


# (filter string, reference predicate over a Run)
CASES: list[tuple[str, Callable[[Run], bool]]] = [
    ("", lambda r: True),
    ("metrics.acc > 0.5", lambda r: (v := _metric(r, "acc")) is not None and v > 0.5),
    ("metrics.acc <= 0.25", lambda r: (v := _metric(r, "acc")) is not None and v <= 0.25),
    ("metrics.loss != 1", lambda r: (v := _metric(r, "loss")) is not None and v != 1),
    (
        "metrics.loss >= 0 AND metrics.acc < 0.9",
        lambda r: (_metric(r, "loss") or -1) >= 0 and (v := _metric(r, "acc")) is not None and v < 0.9,
    ),
    ("params.opt = 'adam'", lambda r: r.params.get("opt") == "adam"),
    ("params.opt != 'adam'", lambda r: r.params.get("opt") not in (None, "adam")),
    ("params.opt LIKE 'a%'", lambda r: _like("a%", r.params.get("opt"))),
    ("params.opt ILIKE 'a%'", lambda r: _like("a%", r.params.get("opt"), re.IGNORECASE)),
    ("params.lr IS NULL", lambda r: "lr" not in r.params),
    (
        "params.lr IS NOT NULL AND params.depth IN ('1', '2')",
        lambda r: "lr" in r.params and r.params["depth"] in ("1", "2"),
    ),
    ("params.depth NOT IN ('1', '2')", lambda r: r.params["depth"] not in ("1", "2")),
    ("tags.team = 'vision'", lambda r: r.tags.get("team") == "vision"),
    ("tags.team IS NULL", lambda r: "team" not in r.tags),
    ("tags.`team` ILIKE '%N%'", lambda r: _like("%n%", (r.tags.get("team") or "").lower()) and "team" in r.tags),
    ("attributes.status = 'FINISHED'", lambda r: r.info.status == RunStatus.FINISHED),
    ("attributes.user_id IN ('ana', 'bo')", lambda r: r.info.user_id in ("ana", "bo")),
    ("attributes.run_name LIKE 'run-1%'", lambda r: _like("run-1%", r.info.run_name)),
    ("run_name = 'run-007'", lambda r: r.info.run_name == "run-007"),
    ("attributes.start_time >= 1025", lambda r: (r.info.start_time or 0) >= 1025),
    ("attributes.end_time IS NULL", lambda r: r.info.end_time is None),
    (
        "metrics.\"acc\" > 0.1 AND params.opt = 'sgd' AND tags.team != 'nlp'",
        lambda r: (
            (v := _metric(r, "acc")) is not None
            and v > 0.1
            and r.params.get("opt") == "sgd"
            and r.tags.get("team") not in (None, "nlp")
        ),
    ),
]


def _order_key(values: list[Any], ascending: bool) -> list[int]:
    """Indices sorted: present values by value (NaN above numbers), missing last."""

    def norm(v: Any) -> Any:
        return (1, 0.0) if isinstance(v, float) and math.isnan(v) else ((0, v) if isinstance(v, int | float) else v)

    present = sorted(
        (i for i, v in enumerate(values) if v is not None), key=lambda i: norm(values[i]), reverse=not ascending
    )
    return present + [i for i, v in enumerate(values) if v is None]


def _reference(runs: list[Run], predicate: Callable[[Run], bool], order: tuple[str, bool] | None) -> list[str]:
    chosen = sorted((r for r in runs if predicate(r)), key=lambda r: r.info.run_id)
    orderings: list[tuple[Callable[[Run], Any], bool]] = []
    if order is not None:
        kind, key = order[0].split(".", 1)
        getters: dict[str, Callable[[Run], Any]] = {
            "metrics": lambda r: _metric(r, key),
            "params": lambda r: r.params.get(key),
            "attributes": lambda r: getattr(r.info, key),
        }
        orderings.append((getters[kind], order[1]))
    orderings.append((lambda r: r.info.start_time, False))
    for getter, ascending in reversed(orderings):
        idx = _order_key([getter(r) for r in chosen], ascending)
        chosen = [chosen[i] for i in idx]
    return [r.info.run_id for r in chosen]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from lakes import make_settings

    from lakeops.stores import open_store

    store = open_store(make_settings("file", tmp_path_factory.mktemp("search"), None))
    tracking = TrackingService(store)
    exp = _generate(tracking)
    store, tracking = reopen(store)  # search what was reloaded from Iceberg and replayed from the log
    yield tracking, exp
    store.close()


@pytest.mark.parametrize(
    "order",
    [None, ("metrics.acc", True), ("metrics.loss", False), ("params.lr", True), ("attributes.run_name", False)],
    ids=str,
)
@pytest.mark.parametrize(("filter_string", "predicate"), CASES, ids=[c[0] or "all" for c in CASES])
def test_search_matches_reference(
    searched, filter_string: str, predicate: Callable[[Run], bool], order: tuple[str, bool] | None
) -> None:  # type: ignore[no-untyped-def]
    tracking, exp = searched
    everything = tracking.search_runs([exp], max_results=50_000).runs
    assert len(everything) == N_RUNS - len(range(0, N_RUNS, 17))
    order_by = [f"{order[0]} {'ASC' if order[1] else 'DESC'}"] if order else None
    got = tracking.search_runs([exp], filter_string=filter_string, order_by=order_by, max_results=50_000).runs
    assert [r.info.run_id for r in got] == _reference(everything, predicate, order)


def test_view_types(searched) -> None:  # type: ignore[no-untyped-def]
    tracking, exp = searched
    active = tracking.search_runs([exp], max_results=1000).runs
    deleted = tracking.search_runs([exp], run_view_type=ViewType.DELETED_ONLY, max_results=1000).runs
    every = tracking.search_runs([exp], run_view_type=ViewType.ALL, max_results=1000).runs
    assert len(deleted) == len(range(0, N_RUNS, 17))
    assert {r.info.run_id for r in every} == {r.info.run_id for r in active} | {r.info.run_id for r in deleted}


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.acc > 'x'",
        "params.lr > 1",
        "foo.bar = 1",
        "metrics.acc > 1 OR metrics.acc < 0",
        "attributes.nope = 'x'",
        "params.lr IN 'x'",
        "metrics.acc",
        "tags.t = 'unterminated",
    ],
)
def test_bad_filters_are_clear_errors(searched, bad: str) -> None:  # type: ignore[no-untyped-def]
    tracking, exp = searched
    with pytest.raises(InvalidArgumentError, match="Invalid"):
        tracking.search_runs([exp], filter_string=bad)


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_page_tokens_stay_stable_while_writes_continue(store: IcebergStore, tracking: TrackingService) -> None:
    exp = tracking.create_experiment("paging")
    for i in range(95):
        run = tracking.create_run(exp, start_time=i)
        tracking.log_metric(run.info.run_id, "acc", i / 100, timestamp=1)
    seen: list[str] = []
    token = None
    page_no = 0
    while True:
        page = tracking.search_runs([exp], order_by=["metrics.acc DESC"], max_results=10, page_token=token)
        seen.extend(r.info.run_id for r in page.runs)
        # Writes between pages: new runs that would sort first, and a metric change that would reorder.
        new = tracking.create_run(exp, start_time=10_000 + page_no)
        tracking.log_metric(new.info.run_id, "acc", 2.0, timestamp=1)
        tracking.log_metric(page.runs[-1].info.run_id, "acc", -1.0, timestamp=2)
        store.commit()
        page_no += 1
        token = page.next_page_token
        if token is None:
            break
    assert len(seen) == 95 and len(set(seen)) == 95
    with pytest.raises(InvalidArgumentError, match="different search"):
        tracking.search_runs(
            [exp],
            filter_string="metrics.acc > 0",
            page_token=tracking.search_runs([exp], max_results=5).next_page_token,
        )
