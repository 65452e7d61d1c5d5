"""The committer's health record: what /health and /metrics read from the store."""

from __future__ import annotations

import sqlite3

import pytest

from lakeops.settings import LakeopsSettings
from lakeops.stores import open_store
from lakeops.tracking import TrackingService


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_failures_are_recorded_until_a_commit_lands(lake_settings: LakeopsSettings) -> None:
    store = open_store(lake_settings, start_committer=False)
    try:
        tracking = TrackingService(store)
        fresh = store.commit_health()
        assert (fresh.commits_total, fresh.commit_failures_total, fresh.first_failure_at) == (0, 0, None)
        run_id = tracking.create_run(tracking.create_experiment("health")).info.run_id
        assert store.commit_health().oldest_queued_at is not None
        store.commit()
        ok = store.commit_health()
        assert ok.commits_total == 1 and ok.last_commit_ok_at is not None and ok.oldest_queued_at is None

        tracking.log_batch(run_id, metrics=[("m", 1.0, 1, 0)])
        blocker = sqlite3.connect(lake_settings.home / "catalog.db", timeout=1)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(Exception, match="locked"):
                store.commit()
        finally:
            blocker.rollback()
            blocker.close()
        failing = store.commit_health()
        assert failing.commit_failures_total == 1 and failing.commits_total == 1
        assert failing.first_failure_at is not None and failing.first_failure_at >= ok.at
        assert failing.last_error is not None and "locked" in failing.last_error
        assert failing.oldest_queued_at is not None and failing.commit_started_at is None

        store.commit()
        healed = store.commit_health()
        assert (healed.commits_total, healed.commit_failures_total, healed.first_failure_at) == (2, 1, None)
        assert healed.oldest_queued_at is None
    finally:
        store.close()
