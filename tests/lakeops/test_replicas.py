"""One truth across replicas: constraints hold across processes sharing one lake.

A "replica" here is a second store opened on the same lake (its own write-ahead log and writer
id), exactly as a second ``lakeops serve`` process is. Constrained writes (params, experiment
names, registered models, model versions, aliases) are checked against every replica's commits
before they are acknowledged, so a stale replica refuses what the other already stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.registry import RegistryService
from lakeops.settings import LakeopsSettings
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService


@pytest.fixture
def replicas(lake_settings: LakeopsSettings) -> Iterator[tuple[IcebergStore, IcebergStore]]:
    a = open_store(lake_settings)
    b = open_store(lake_settings)
    yield a, b
    b.close()
    a.close()


def _both(*calls: Callable[[], object]) -> list[object]:
    """Run the calls at the same moment on threads; each result or the exception it raised."""
    results: list[object] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def go(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # the refused one
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_an_immutable_param_has_one_value_across_replicas(replicas: tuple[IcebergStore, IcebergStore]) -> None:
    a, b = replicas
    ta, tb = TrackingService(a), TrackingService(b)
    run_id = ta.create_run(ta.create_experiment("params")).info.run_id
    a.commit()
    b.refresh()  # b knows the run, but has not seen the param a logs next
    ta.log_param(run_id, "lr", "0.1")
    with pytest.raises(InvalidArgumentError, match="lr"):
        tb.log_param(run_id, "lr", "0.2")  # the same error a single process gives
    tb.log_param(run_id, "lr", "0.1")  # the same value again is fine
    assert tb.get_run(run_id).params["lr"] == "0.1"
    for i in range(10):  # at the same moment: exactly one is acknowledged
        key = f"p{i}"
        results = _both(lambda: ta.log_param(run_id, key, "a"), lambda: tb.log_param(run_id, key, "b"))  # noqa: B023
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(refused) == 1 and isinstance(refused[0], InvalidArgumentError), results
        assert ta.get_run(run_id).params[key] == tb.get_run(run_id).params[key]
    a.commit()
    b.commit()
    fresh = open_store(a.settings)
    try:
        params = TrackingService(fresh).get_run(run_id).params
        assert params == ta.get_run(run_id).params == tb.get_run(run_id).params
    finally:
        fresh.close()


def test_experiment_names_are_unique_across_replicas(replicas: tuple[IcebergStore, IcebergStore]) -> None:
    a, b = replicas
    ta, tb = TrackingService(a), TrackingService(b)
    ta.create_experiment("shared")
    with pytest.raises(AlreadyExistsError, match="shared"):
        tb.create_experiment("shared")
    results = _both(lambda: ta.create_experiment("race"), lambda: tb.create_experiment("race"))
    assert sum(isinstance(r, AlreadyExistsError) for r in results) == 1, results
    assert ta.get_experiment_by_name("race").experiment_id == tb.get_experiment_by_name("race").experiment_id


def test_model_versions_are_unique_and_gapless_across_replicas(replicas: tuple[IcebergStore, IcebergStore]) -> None:
    a, b = replicas
    ra, rb = RegistryService(a, actor="ana"), RegistryService(b, actor="bo")
    ra.create_registered_model("m")
    with pytest.raises(AlreadyExistsError):
        rb.create_registered_model("m")
    made: list[int] = []
    for _ in range(4):
        results = _both(
            lambda: ra.create_model_version("m", "s3://bucket/m/a").version,
            lambda: rb.create_model_version("m", "s3://bucket/m/b").version,
        )
        assert all(isinstance(r, int) for r in results), results
        made.extend(results)  # type: ignore[arg-type]
    assert sorted(made) == list(range(1, 9))
    ra.set_registered_model_alias("m", "prod", 3)
    rb.set_registered_model_alias("m", "prod", 5)  # checked on a's move first: the history has both, in order
    a.refresh()
    assert [c.version for c in ra.alias_history("m", "prod")] == [3, 5]
    assert [c.version for c in rb.alias_history("m", "prod")] == [3, 5]


def test_a_replica_picks_up_the_others_writes_by_itself(replicas: tuple[IcebergStore, IcebergStore]) -> None:
    a, b = replicas
    ta, tb = TrackingService(a), TrackingService(b)
    run_id = ta.create_run(ta.create_experiment("seen")).info.run_id
    ta.log_batch(run_id, metrics=[("loss", 0.5, 1_000, 1)], params={"lr": "0.1"}, tags={"team": "vision"})
    deadline = time.monotonic() + 30  # a generous bound; the figure itself is benchmarks/bench_scale.py's
    while time.monotonic() < deadline:
        try:
            run = tb.get_run(run_id)
        except NotFoundError:
            run = None
        if run is not None and "loss" in run.metrics and run.tags.get("team") == "vision":
            break
        time.sleep(0.05)
    assert run is not None and run.params == {"lr": "0.1"} and run.metrics["loss"].value == 0.5


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_an_idle_refresh_on_a_sqlite_catalog_loads_no_table(lake_settings: LakeopsSettings) -> None:
    a = open_store(lake_settings, start_committer=False)  # refreshed only when told, below
    b = open_store(lake_settings, start_committer=False)
    try:
        a.refresh()
        assert a._moved_tables() == set()  # one query of the catalog says nothing moved
        TrackingService(b).create_experiment("moved")
        assert a._moved_tables() == {"experiment_changes"}
        a.refresh()
        assert a._moved_tables() == set()
        assert TrackingService(a).get_experiment_by_name("moved").name == "moved"
    finally:
        b.close()
        a.close()


def test_a_replica_sees_the_others_commit_that_its_own_commit_landed_on(lake_settings: LakeopsSettings) -> None:
    # b commits a tag; a then commits a tag to the same table on top of b's snapshot (pyiceberg
    # rebases the append). a's own commit must not hide b's rows from a's next refresh.
    a = open_store(lake_settings, start_committer=False)
    b = open_store(lake_settings, start_committer=False)
    try:
        ta, tb = TrackingService(a), TrackingService(b)
        run_id = ta.create_run(ta.create_experiment("rebased")).info.run_id
        a.commit()
        b.refresh()
        tb.set_tag(run_id, "from_b", "1")
        b.commit()
        ta.set_tag(run_id, "from_a", "1")
        a.commit()
        a.refresh()
        assert ta.get_run(run_id).tags.get("from_b") == "1"
        b.refresh()
        assert tb.get_run(run_id).tags.get("from_a") == "1"
    finally:
        b.close()
        a.close()
