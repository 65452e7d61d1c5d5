"""Run search and grouping "as of" a past time (lakeops/services/runs_as_of.py), on every backend."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from lakeops.errors import InvalidArgumentError
from lakeops.lake import Lake
from lakeops.settings import LakeopsSettings


def test_search_and_groups_as_of_answer_the_runs_as_they_stood(lake_settings: LakeopsSettings) -> None:
    with Lake(lake_settings, start_committer=False) as lake:
        tracking = lake.tracking
        experiment = tracking.create_experiment("as-of")
        runs = []
        for i in range(5):
            run_id = tracking.create_run(experiment, run_name=f"r{i}").info.run_id
            tracking.log_param(run_id, "group", "a" if i < 3 else "b")
            tracking.log_metric(run_id, "loss", float(i), step=0)
            runs.append(run_id)
        lake.store.commit()
        then = datetime.now(UTC)
        time.sleep(0.01)
        tracking.log_metric(runs[0], "loss", 10.0, step=1)  # r0: loss 0 then, 10 now
        tracking.log_param(runs[1], "late", "x")
        tracking.create_run(experiment, run_name="r5")
        lake.store.commit()

        # Paged two at a time, ordered by the loss then: every run that existed, with its values then.
        seen, token = [], None
        while True:
            page = tracking.search_runs(
                [experiment], order_by=["metrics.loss DESC"], max_results=2, page_token=token, as_of=then
            )
            seen += page.runs
            token = page.next_page_token
            if token is None:
                break
        assert [r.info.run_name for r in seen] == ["r4", "r3", "r2", "r1", "r0"]
        assert seen[-1].metrics["loss"].value == 0.0
        assert "late" not in seen[-2].params
        now = tracking.search_runs([experiment], order_by=["metrics.loss DESC"], max_results=10)
        assert [r.info.run_name for r in now.runs][:1] == ["r0"]
        assert len(now.runs) == 6
        filtered = tracking.search_runs([experiment], filter_string="metrics.loss >= 4", as_of=then)
        assert [r.info.run_name for r in filtered.runs] == ["r4"]

        # A page token belongs to its time: the same search now refuses it.
        first = tracking.search_runs([experiment], max_results=2, as_of=then)
        assert first.next_page_token is not None
        with pytest.raises(InvalidArgumentError, match="different search"):
            tracking.search_runs([experiment], max_results=2, page_token=first.next_page_token)

        groups = tracking.group_runs([experiment], group_by="params.group", metrics=["loss"], as_of=then)
        assert [(g.value, g.count, g.metrics["loss"].max) for g in groups] == [("a", 3, 2.0), ("b", 2, 4.0)]
        groups_now = tracking.group_runs([experiment], group_by="params.group", metrics=["loss"])
        assert [(g.value, g.count) for g in groups_now] == [("a", 3), ("b", 2), (None, 1)]
        assert groups_now[0].metrics["loss"].max == 10.0

        with pytest.raises(InvalidArgumentError, match="before the lake's first commit"):
            tracking.search_runs([experiment], as_of=then - timedelta(days=365))


def test_a_run_without_metrics_is_found_as_of(lake_settings: LakeopsSettings) -> None:
    """A run with params but no metric point at that time has no metric list in the past views."""
    with Lake(lake_settings, start_committer=False) as lake:
        tracking = lake.tracking
        experiment = tracking.create_experiment("as-of-bare")
        bare = tracking.create_run(experiment, run_name="bare").info.run_id
        tracking.log_param(bare, "lr", "0.1")
        lake.store.commit()
        then = datetime.now(UTC)
        page = tracking.search_runs([experiment], as_of=then)
        assert [(r.info.run_name, r.params, r.metrics) for r in page.runs] == [("bare", {"lr": "0.1"}, {})]
