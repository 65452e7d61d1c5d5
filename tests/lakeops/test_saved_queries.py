"""Saved queries: stored as Iceberg change rows, they survive a restart and run in the sandbox."""

from __future__ import annotations

import pytest
from lakes import reopen

from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.services.queries import SavedQueryService
from lakeops.settings import LakeopsSettings
from lakeops.sql import SqlEngine
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService


def test_saved_queries_persist_run_and_keep_their_history(
    store: IcebergStore, tracking: TrackingService, lake_settings: LakeopsSettings
) -> None:
    exp = tracking.create_experiment("saved")
    tracking.create_run(exp, run_name="a")
    engine = SqlEngine(lake_settings, store=store)
    queries = SavedQueryService(store, engine, actor="ana")
    queries.save("runs-of", "SELECT run_name FROM runs WHERE experiment_id = ?", description="runs of one experiment")
    with pytest.raises(AlreadyExistsError, match="Saved query 'runs-of' already exists"):
        queries.save("runs-of", "SELECT 1")
    with pytest.raises(InvalidArgumentError, match="ATTACH is not allowed"):
        queries.save("escape", "ATTACH ':memory:' AS x")
    with pytest.raises(InvalidArgumentError, match="Invalid saved query name"):
        queries.save("../etc", "SELECT 1")
    queries.save("answer", "SELECT 41 AS n")
    queries.save("answer", "SELECT 42 AS n", replace=True)
    assert queries.run("runs-of", params=[exp]).column("run_name").to_pylist() == ["a"]
    engine.close()

    store, tracking = reopen(store)
    try:
        engine = SqlEngine(lake_settings, store=store)
        queries = SavedQueryService(store, engine, actor="bo")
        assert [q.name for q in queries.list()] == ["answer", "runs-of"]
        saved = queries.get("runs-of")
        assert (saved.author, saved.description) == ("ana", "runs of one experiment")
        assert queries.run("answer").column("n").to_pylist() == [42]
        queries.delete("answer")
        with pytest.raises(NotFoundError, match="No saved query named 'answer'"):
            queries.run("answer")
        with pytest.raises(NotFoundError, match="No saved query named 'answer'"):
            queries.delete("answer")
        history = engine.query(
            "SELECT operation, actor FROM lake.saved_query_changes WHERE name = 'answer' ORDER BY changed_at, wal_seq"
        ).to_pylist()
        assert history == [
            {"operation": "create", "actor": "ana"},
            {"operation": "update", "actor": "ana"},
            {"operation": "delete", "actor": "bo"},
        ]
        assert engine.query("SELECT name FROM saved_queries").column("name").to_pylist() == ["runs-of"]
        engine.close()
    finally:
        store.close()
