"""Progress bars of long operations: ``lakeops maintain`` (imports and uploads: tests/lakeops/client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from catalog.tables import TABLES
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService


def _maintain(store: IcebergStore, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEOPS_")}
    env["LAKEOPS_HOME"] = str(store.settings.home)
    return subprocess.run(
        [sys.executable, "-m", "lakeops.cli", "maintain", *flags],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_maintain_shows_a_bar_over_the_tables(store: IcebergStore, tracking: TrackingService) -> None:
    run_id = tracking.create_run(tracking.create_experiment("bars")).info.run_id
    for b in range(10):
        tracking.log_metric(run_id, "m", float(b), timestamp=b, step=b)
        store.commit()
    store.close()

    shown = _maintain(store, "--progress")
    assert "maintaining" in shown.stderr
    assert f"{len(TABLES)}/{len(TABLES)}" in shown.stderr
    assert json.loads(shown.stdout)["metrics"]["files_rewritten"] == 10

    # stderr is not a terminal here: no bar by default (nothing left to do: skip the work itself)
    hidden = _maintain(store, "--no-compact", "--no-expire")
    assert "maintaining" not in hidden.stderr
    assert set(json.loads(hidden.stdout)) == {t.name for t in TABLES}
