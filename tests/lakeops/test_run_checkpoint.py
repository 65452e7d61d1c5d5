"""Start-up from a run checkpoint (lakeops/stores/run_checkpoint.py) gives the state a full fold gives.

A lake is written, opened once (a start-up that folds every table writes a checkpoint), written
again (changes to runs of the checkpoint, new runs, a compaction between them), then opened twice:
from the checkpoint and with checkpoints off. Every run must match field by field, dict order
included, and searches must answer the same. Then the cases where a checkpoint cannot be used
(a part lost, its snapshot expired) must fall back to the full fold, and maintenance must keep or
renew the checkpoint across snapshot expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from catalog.versions import open_version_store
from lakeops.settings import LakeopsSettings
from lakeops.stores import IcebergStore, open_store, run_checkpoint
from lakeops.tracking import TrackingService

pytestmark = pytest.mark.slow


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest) -> str:
    """file and s3 (the REST catalog stores the same objects through the same code)."""
    kind: str = request.param
    return kind


def _checkpoints(settings: LakeopsSettings) -> Any:
    return open_version_store(
        settings.warehouse(), settings.storage.to_properties(), directory=run_checkpoint.DIRECTORY
    )


def _state(store: IcebergStore) -> dict[str, Any]:
    state = store.state
    service = TrackingService(store)
    experiment_ids = sorted(state.experiments)
    return {
        "runs": [
            (
                run_id,
                run.row,
                run.experiment_id,
                run.run_name,
                run.status,
                run.start_time,
                run.end_time,
                run.lifecycle_stage,
                run.artifact_uri,
                run.parent_run_id,
                # params and metrics list in the order their rows were scanned, which a compaction
                # changes for the full fold too: compared as sets; tags are ordered by their change time
                sorted(run.params.items()),
                list(run.tags.items()),
                sorted(run.metrics.items()),
            )
            for run_id, run in state.runs.items()
        ],
        "experiment_tags": {e: list(state.experiments[e].tags.items()) for e in experiment_ids},
        "deleted": sorted(state.runs.deleted_run_ids()),
        "search": [
            [r.info.run_id for r in service.search_runs(experiment_ids, filter_string=f, order_by=o).runs]
            for f, o in [
                ("metrics.loss < 0.5", ["metrics.loss DESC"]),
                ("params.lr = '0.1'", ["attributes.start_time ASC"]),
                ("tags.team = 'b'", None),
                ("", ["metrics.acc ASC"]),
            ]
        ],
    }


def _write_base(t: TrackingService, runs: int) -> tuple[str, list[str]]:
    experiment_id = t.create_experiment("sweep")
    t.set_experiment_tag(experiment_id, "owner", "ana")
    ids = []
    for i in range(runs):
        run = t.create_run(experiment_id, run_name=f"r{i}", start_time=1_700_000_000_000 + i)
        ids.append(run.info.run_id)
        t.log_batch(
            run.info.run_id,
            params={"lr": str(0.1 * (i % 3)), "depth": str(i)},
            tags={"team": "ab"[i % 2], "note": f"n{i}"},
            metrics=[("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, 0), ("acc", i / runs, 1_700_000_000_000 + i, 0)],
        )
        if i % 4 == 0:
            t.update_run(run.info.run_id, status="FINISHED", end_time=1_700_000_100_000 + i)
    t.delete_tag(ids[1], "note")
    t.delete_run(ids[2])
    return experiment_id, ids


def _write_more(t: TrackingService, experiment_id: str, ids: list[str], tag: str) -> None:
    """Changes to runs the checkpoint holds, and new runs."""
    t.log_param(ids[0], f"late-{tag}", "x")
    t.set_tag(ids[3], "team", f"b{tag}")
    t.set_tag(ids[4], "gone", tag)
    t.delete_tag(ids[4], "gone")
    t.set_tag(ids[1], "note", f"again-{tag}")  # deleted before the checkpoint, set again after
    t.log_metric(ids[5], "loss", 0.01, timestamp=1_800_000_000_000, step=9)  # a newer latest point
    t.log_metric(ids[6], "loss", 9.0, timestamp=1_600_000_000_000, step=0)  # older: not the latest
    t.update_run(ids[7], status="FAILED", end_time=1_700_000_200_000)
    t.delete_run(ids[8])
    t.set_experiment_tag(experiment_id, f"stage-{tag}", "late")
    new = t.create_run(experiment_id, run_name=f"new-{tag}", start_time=1_700_000_300_000)
    t.log_batch(
        new.info.run_id, params={"lr": "0.1"}, tags={"team": "b"}, metrics=[("loss", 0.3, 1_700_000_300_000, 0)]
    )


def _checkpointed(settings: LakeopsSettings, runs: int) -> tuple[str, list[str], run_checkpoint.Checkpoint]:
    """A lake of ``runs`` runs, opened once so that its full fold wrote the first checkpoint."""
    with _open(settings) as store:
        experiment_id, ids = _write_base(TrackingService(store), runs)
    with _open(settings):
        pass
    first = run_checkpoint.latest(_checkpoints(settings))
    assert first is not None
    return experiment_id, ids, first


def _open(settings: LakeopsSettings) -> IcebergStore:
    return open_store(settings, start_committer=False)


def _from_checkpoint_and_folded(settings: LakeopsSettings, number: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The lake's state opened from checkpoint ``number``, and opened with checkpoints off."""
    with _open(settings) as store:
        assert store.started_from_checkpoint == number
        from_checkpoint = _state(store)
    without = settings.model_copy(update={"write": settings.write.model_copy(update={"run_checkpoints": False})})
    with _open(without) as store:
        assert store.started_from_checkpoint is None
        return from_checkpoint, _state(store)


def test_start_up_from_a_checkpoint_gives_the_state_of_a_full_fold(
    lake_factory: Callable[..., LakeopsSettings],
) -> None:
    settings = lake_factory(run_checkpoint_min_runs=0)
    with _open(settings) as store:
        experiment_id, ids = _write_base(TrackingService(store), 24)
    assert run_checkpoint.latest(_checkpoints(settings)) is None  # a lake's first start-up had no runs to fold
    with _open(settings) as store:
        assert store.started_from_checkpoint is None  # folded every table: writes one when it can
    first = run_checkpoint.latest(_checkpoints(settings))
    assert first is not None and first.runs == 24
    with _open(settings) as store:
        assert store.started_from_checkpoint == first.number
        t = TrackingService(store)
        _write_more(t, experiment_id, ids, "1")
        store.commit()
        store.maintain(expire=False)  # a compaction between the checkpoint and now: its rows are not read twice
        _write_more(t, experiment_id, ids, "2")
    from_checkpoint, folded = _from_checkpoint_and_folded(settings, first.number)
    for a, b in zip(from_checkpoint["runs"], folded["runs"], strict=True):
        assert a == b
    assert from_checkpoint == folded
    assert len(folded["runs"]) == 26
    assert ("note", "again-2") in folded["runs"][1][11] and folded["deleted"]  # what was changed is there


def test_a_checkpoint_renewed_from_the_last_one_gives_the_state_of_a_full_fold(
    lake_factory: Callable[..., LakeopsSettings],
) -> None:
    """Renewal merges the rows after the newest checkpoint into its columns instead of folding every
    row again; what it writes must be what a full fold gives, changed runs, new runs and all."""
    settings = lake_factory(run_checkpoint_min_runs=0)
    experiment_id, ids, first = _checkpointed(settings, 24)
    with _open(settings) as store:
        t = TrackingService(store)
        _write_more(t, experiment_id, ids, "1")
        store.commit()
        store.maintain(expire=False)  # a compaction between the checkpoint and the renewal
        _write_more(t, experiment_id, ids, "2")
        store.commit()
        renewed = store.write_run_checkpoint()
        assert renewed is not None and renewed > first.number
        assert store.renewed_from == first.number  # from the checkpoint, not a full fold
    with _open(settings) as store:
        _write_more(TrackingService(store), experiment_id, ids, "3")  # and rows after the renewed one
    from_checkpoint, folded = _from_checkpoint_and_folded(settings, renewed)
    for a, b in zip(from_checkpoint["runs"], folded["runs"], strict=True):
        assert a == b
    assert from_checkpoint == folded
    assert len(folded["runs"]) == 27


def test_an_unusable_checkpoint_falls_back_to_the_full_fold(lake_factory: Callable[..., LakeopsSettings]) -> None:
    settings = lake_factory(run_checkpoint_min_runs=0)
    with _open(settings) as store:
        _write_base(TrackingService(store), 12)
    with _open(settings):
        pass
    checkpoints = _checkpoints(settings)
    first = run_checkpoint.latest(checkpoints)
    assert first is not None
    checkpoints.delete([f"{first.number:012d}/{first.parts}/params.arrow"])  # a part lost
    with _open(settings) as store:
        assert store.started_from_checkpoint is None
        state = _state(store)
    second = run_checkpoint.latest(checkpoints)
    assert second is not None and second.number > first.number  # the full fold wrote a new one
    with _open(settings) as store:
        assert store.started_from_checkpoint == second.number
        assert _state(store) == state


def test_maintenance_keeps_a_checkpoint_usable_across_snapshot_expiry(
    lake_factory: Callable[..., LakeopsSettings],
) -> None:
    """Expiry keeps the snapshots a checkpoint needs while they are few; beyond that, maintenance
    writes a new checkpoint first. Either way the next start-up reads a checkpoint, not every row."""
    settings = lake_factory(run_checkpoint_min_runs=0, snapshot_retention_s=0, max_snapshots=1)
    experiment_id, ids, first = _checkpointed(settings, 12)
    with _open(settings) as store:
        t = TrackingService(store)
        _write_more(t, experiment_id, ids, "1")
        store.commit()
        store.maintain()  # 2 snapshots after the checkpoint's at most: kept
    with _open(settings) as store:
        assert store.started_from_checkpoint == first.number
        for tag in "abcde":  # more commits than maintenance keeps for a checkpoint
            _write_more(t := TrackingService(store), experiment_id, ids, tag)
            store.commit()
        store.maintain()  # expires them: writes a new checkpoint
    renewed = run_checkpoint.latest(_checkpoints(settings))
    assert renewed is not None and renewed.number > first.number
    from_checkpoint, folded = _from_checkpoint_and_folded(settings, renewed.number)
    assert from_checkpoint == folded
