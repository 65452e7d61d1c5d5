"""Maintenance: compaction and snapshot expiry keep data intact and read paths flat."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from lakes import reopen, settings_json

from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService


def _data_files(store: IcebergStore, name: str) -> int:
    return len(store.table(name).inspect.files())


def test_compaction_and_expiry_keep_every_row(store: IcebergStore, tracking: TrackingService) -> None:
    run_id = tracking.create_run(tracking.create_experiment("maint")).info.run_id
    for b in range(12):  # 12 commits -> 12 small files per touched partition
        tracking.log_batch(run_id, metrics=[("loss", float(b * 10 + i), 1_000 + b, b * 10 + i) for i in range(10)])
        store.commit()
    before_files = _data_files(store, "metrics")
    snapshots_before = len(store.table("metrics").metadata.snapshots)
    assert before_files >= 12

    report = store.maintain()
    assert report["metrics"]["files_rewritten"] == before_files
    assert report["metrics"]["files_written"] == 1
    assert _data_files(store, "metrics") == 1
    # Retention is an hour, so expiry kept the young snapshots; with retention 0 they go (see below).
    assert len(store.table("metrics").metadata.snapshots) == snapshots_before + 1
    history = tracking.get_metric_history(run_id, "loss").metrics
    assert [m.step for m in history] == list(range(120))

    # Snapshots older than the retention go, keeping the newest few; data stays.
    from datetime import UTC, datetime, timedelta

    from catalog.maintenance import expire_snapshots

    expired = expire_snapshots(store.table("metrics"), older_than=datetime.now(UTC) + timedelta(hours=1))
    assert expired > 0
    store, tracking = reopen(store)
    try:
        assert len(store.table("metrics").metadata.snapshots) <= 5
        assert [m.step for m in tracking.get_metric_history(run_id, "loss").metrics] == list(range(120))
        assert tracking.get_run(run_id).metrics["loss"].value == 119.0
        # Compaction snapshots are not mistaken for new rows by a replica's refresh.
        assert store.refresh() == 0
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_lakeops_maintain_command(store: IcebergStore, tracking: TrackingService) -> None:
    run_id = tracking.create_run(tracking.create_experiment("cli")).info.run_id
    for b in range(10):
        tracking.log_metric(run_id, "m", float(b), timestamp=b, step=b)
        store.commit()
    store.close()
    env = {**os.environ, "LAKEOPS_HOME": str(store.settings.home)}
    out = subprocess.run(
        [sys.executable, "-m", "lakeops.cli", "maintain"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert '"files_rewritten": 10' in out.stdout, out.stdout + out.stderr
    assert settings_json(store.settings)  # settings survive a JSON round trip for child processes
