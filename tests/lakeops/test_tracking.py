"""The tracking contract: every behaviour on every backend (file, s3, rest)."""

from __future__ import annotations

import math

import pytest
from lakes import reopen

from lakeops.entities import LifecycleStage, RunStatus, ViewType
from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService


def test_experiments_lifecycle(store: IcebergStore, tracking: TrackingService) -> None:
    exp_id = tracking.create_experiment("exp-a", tags={"team": "vision"})
    assert tracking.get_experiment(exp_id).name == "exp-a"
    assert tracking.get_experiment_by_name("exp-a").experiment_id == exp_id
    assert tracking.get_experiment(exp_id).tags == {"team": "vision"}
    with pytest.raises(AlreadyExistsError, match="already exists"):
        tracking.create_experiment("exp-a")
    tracking.rename_experiment(exp_id, "exp-b")
    with pytest.raises(NotFoundError, match="exp-a"):
        tracking.get_experiment_by_name("exp-a")
    tracking.set_experiment_tag(exp_id, "owner", "ana")
    tracking.delete_experiment_tag(exp_id, "team")
    tracking.delete_experiment(exp_id)
    assert tracking.get_experiment(exp_id).lifecycle_stage == LifecycleStage.DELETED
    active = {e.name for e in tracking.search_experiments().experiments}
    assert "exp-b" not in active and "Default" in active
    deleted = {e.name for e in tracking.search_experiments(view_type=ViewType.DELETED_ONLY).experiments}
    assert deleted == {"exp-b"}
    tracking.restore_experiment(exp_id)

    store, tracking = reopen(store)
    try:
        exp = tracking.get_experiment(exp_id)
        assert (exp.name, exp.lifecycle_stage, exp.tags) == ("exp-b", LifecycleStage.ACTIVE, {"owner": "ana"})
        found = tracking.search_experiments(filter_string="name LIKE 'exp-%' AND tags.owner = 'ana'").experiments
        assert [e.experiment_id for e in found] == [exp_id]
    finally:
        store.close()


def test_runs_lifecycle_and_tags(store: IcebergStore, tracking: TrackingService) -> None:
    exp_id = tracking.create_experiment("runs")
    parent = tracking.create_run(exp_id, run_name="parent", user_id="ana", start_time=1_000)
    child = tracking.create_run(exp_id, run_name="child", parent_run_id=parent.info.run_id)
    assert child.info.parent_run_id == parent.info.run_id
    assert child.tags["mlflow.parentRunId"] == parent.info.run_id
    tracking.set_tag(parent.info.run_id, "stage", "train")
    tracking.set_tag(parent.info.run_id, "stage", "eval")
    tracking.set_tag(parent.info.run_id, "gone", "x")
    tracking.delete_tag(parent.info.run_id, "gone")
    info = tracking.update_run(parent.info.run_id, status=RunStatus.FINISHED, end_time=2_000)
    assert (info.status, info.end_time) == (RunStatus.FINISHED, 2_000)
    tracking.delete_run(child.info.run_id)
    with pytest.raises(InvalidArgumentError, match="active"):
        tracking.log_metric(child.info.run_id, "loss", 1.0)

    store, tracking = reopen(store)
    try:
        run = tracking.get_run(parent.info.run_id)
        assert run.info.run_name == "parent" and run.info.user_id == "ana"
        assert (run.info.status, run.info.start_time, run.info.end_time) == (RunStatus.FINISHED, 1_000, 2_000)
        assert run.tags["stage"] == "eval" and "gone" not in run.tags
        assert tracking.get_run(child.info.run_id).info.lifecycle_stage == LifecycleStage.DELETED
        tracking.restore_run(child.info.run_id)
        assert tracking.get_run(child.info.run_id).info.lifecycle_stage == LifecycleStage.ACTIVE
    finally:
        store.close()


def test_params_are_immutable(store: IcebergStore, tracking: TrackingService) -> None:
    run_id = tracking.create_run(tracking.create_experiment("p")).info.run_id
    tracking.log_param(run_id, "lr", 0.1)
    tracking.log_param(run_id, "lr", "0.1")  # the same value again is accepted
    with pytest.raises(InvalidArgumentError, match="Changing param values is not allowed"):
        tracking.log_param(run_id, "lr", 0.2)
    # A batch with one conflicting param stores nothing at all.
    with pytest.raises(InvalidArgumentError, match="Changing param values"):
        tracking.log_batch(run_id, params={"new": "1", "lr": "0.3"}, metrics=[("m", 1.0, 5, 0)])
    run = tracking.get_run(run_id)
    assert run.params == {"lr": "0.1"} and run.metrics == {}
    store, tracking = reopen(store)
    try:
        assert tracking.get_run(run_id).params == {"lr": "0.1"}
        with pytest.raises(InvalidArgumentError, match="Changing param values"):
            tracking.log_param(run_id, "lr", "0.5")
    finally:
        store.close()


def test_metrics_special_values_and_latest_rule(store: IcebergStore, tracking: TrackingService) -> None:
    run_id = tracking.create_run(tracking.create_experiment("m")).info.run_id
    tracking.log_batch(
        run_id,
        metrics=[
            ("nan", math.nan, 10, 0),
            ("pinf", math.inf, 10, 0),
            ("ninf", -math.inf, 10, 0),
            # latest = max timestamp, then max value; step does not matter
            ("acc", 0.5, 100, 7),
            ("acc", 0.9, 50, 9),
            ("acc", 0.4, 100, 1),
            ("acc", 0.7, 100, 2),
        ],
    )

    def check(t: TrackingService) -> None:
        metrics = t.get_run(run_id).metrics
        assert math.isnan(metrics["nan"].value)
        assert metrics["pinf"].value == math.inf and metrics["ninf"].value == -math.inf
        assert (metrics["acc"].value, metrics["acc"].timestamp, metrics["acc"].step) == (0.7, 100, 2)
        history = t.get_metric_history(run_id, "acc").metrics
        assert [(m.step, m.value) for m in history] == [(1, 0.4), (2, 0.7), (7, 0.5), (9, 0.9)]

    check(tracking)
    store, tracking = reopen(store)
    try:
        check(tracking)
    finally:
        store.close()


def test_metric_history_reads_own_writes_and_pages(store: IcebergStore, tracking: TrackingService) -> None:
    run_id = tracking.create_run(tracking.create_experiment("h")).info.run_id
    tracking.log_batch(run_id, metrics=[("loss", 1.0 / (i + 1), 1_000 + i, i) for i in range(0, 300, 2)])
    store.commit()  # half committed ...
    tracking.log_batch(run_id, metrics=[("loss", 1.0 / (i + 1), 1_000 + i, i) for i in range(1, 300, 2)])
    assert store.queued_rows() > 0  # ... half only in the log and the queue
    history = tracking.get_metric_history(run_id, "loss").metrics
    assert [m.step for m in history] == list(range(300))
    steps: list[int] = []
    token = None
    while True:
        page = tracking.get_metric_history(run_id, "loss", max_results=70, page_token=token)
        steps.extend(m.step for m in page.metrics)
        token = page.next_page_token
        if token is None:
            break
    assert steps == list(range(300))
    assert tracking.get_metric_history(run_id, "other").metrics == []


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        pytest.param(lambda t, r: t.log_metric(r, "", 1.0), InvalidArgumentError, "non-empty", id="empty-key"),
        pytest.param(
            lambda t, r: t.log_metric(r, "k" * 251, 1.0), InvalidArgumentError, "longer than 250", id="long-key"
        ),
        pytest.param(lambda t, r: t.log_metric(r, "a/../b", 1.0), InvalidArgumentError, r"\.\.", id="dotdot-key"),
        pytest.param(
            lambda t, r: t.log_metric(r, "loss", "high"), InvalidArgumentError, "must be a number", id="text-value"
        ),
        pytest.param(
            lambda t, r: t.log_metric(r, "loss", True), InvalidArgumentError, "must be a number", id="bool-value"
        ),
        pytest.param(
            lambda t, r: t.log_metric(r, "loss", 1.0, step=1.5), InvalidArgumentError, "step", id="float-step"
        ),
        pytest.param(
            lambda t, r: t.log_param(r, "p", "x" * 6001), InvalidArgumentError, "at most 6000", id="long-param"
        ),
        pytest.param(lambda t, r: t.log_metric("nope", "loss", 1.0), NotFoundError, "not found", id="unknown-run"),
        pytest.param(lambda t, r: t.create_run("404"), NotFoundError, "No Experiment", id="unknown-experiment"),
        pytest.param(
            lambda t, r: t.update_run(r, status="DONE"), InvalidArgumentError, "Invalid run status", id="bad-status"
        ),
        pytest.param(
            lambda t, r: t.search_runs(["0"], filter_string="metrics.x >"),
            InvalidArgumentError,
            "Invalid",
            id="bad-filter",
        ),
        pytest.param(
            lambda t, r: t.search_runs(["0"], max_results=0), InvalidArgumentError, "max_results", id="bad-max"
        ),
        pytest.param(
            lambda t, r: t.search_runs(["0"], page_token="%%%"), InvalidArgumentError, "page token", id="bad-token"
        ),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(
    store: IcebergStore, tracking: TrackingService, call: object, error: type[Exception], match: str
) -> None:
    run_id = tracking.create_run(tracking.create_experiment("bad")).info.run_id
    tracking.log_batch(run_id, metrics=[("loss", 0.5, 1, 0)], params={"p": "1"})
    store.commit()  # nothing queued from here on, so the background committer cannot race the count below
    before = tracking.get_run(run_id)
    with pytest.raises(error, match=match):
        call(tracking, run_id)  # type: ignore[operator]
    assert tracking.get_run(run_id) == before
    assert store.queued_rows() == 0


def test_history_reads_stay_exact_across_commits_and_compaction(store: IcebergStore, tracking: TrackingService) -> None:
    """Warm history reads add only newly appended files; a compaction in between forces a full read."""
    runs = [tracking.create_run(tracking.create_experiment("inc")).info.run_id for _ in range(1)]
    runs += [tracking.create_run("0").info.run_id for _ in range(5)]  # neighbours in other (and maybe the same) buckets
    expected: dict[str, list[int]] = {r: [] for r in runs}
    for round_no in range(6):
        for r in runs:
            steps = list(range(round_no * 10, round_no * 10 + 10))
            tracking.log_batch(r, metrics=[("m", float(s), 1, s) for s in steps])
            expected[r].extend(steps)
        store.commit()
        for r in runs:
            assert [m.step for m in tracking.get_metric_history(r, "m").metrics] == expected[r]
        if round_no == 3:
            store.maintain(expire=False)
