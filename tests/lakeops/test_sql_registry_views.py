"""The registry, dataset and quality views answer what the domain API answers — on file, s3 and rest.

Registry state is built through ``RegistryService`` (datasets, suites, validations and OpenLineage
events through their services) and every view is checked against the service's own answer, again
after an alias moves, a model is renamed and things are deleted. ``activity`` must list each change
with its actor and operation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from openlineage_events import PRODUCER, ol_event

from lakeops.datasets import DatasetService
from lakeops.quality.suites import QualityService
from lakeops.registry import RegistryService
from lakeops.services.artifacts import ArtifactService
from lakeops.services.openlineage import OpenLineageService
from lakeops.settings import LakeopsSettings
from lakeops.sql import SqlEngine
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService


class Clock:
    """A clock in epoch milliseconds that moves one second per reading."""

    def __init__(self, start: int = 1_750_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1000
        return self.now


class FailingRunsGate:
    """An AliasGate that refuses versions trained by the listed runs."""

    def __init__(self) -> None:
        self.failing: dict[str, str] = {}

    def check_model_version(self, *, source_run_id: str | None, model_id: str | None) -> list[str]:
        reason = self.failing.get(source_run_id or "")
        return [reason] if reason else []


@pytest.fixture
def engine(store: IcebergStore, lake_settings: LakeopsSettings) -> Iterator[SqlEngine]:
    eng = SqlEngine(lake_settings, store=store)
    yield eng
    eng.close()


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _rows(engine: SqlEngine, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = engine.query(sql, params=params).to_pylist()
    return rows


def _check_views(engine: SqlEngine, registry: RegistryService) -> None:
    """Every registry view against the domain API, as the registry stands now."""
    models = registry.search_registered_models(max_results=1000).registered_models
    versions = registry.search_model_versions(max_results=10_000).model_versions

    rows = {r["registered_model_id"]: r for r in _rows(engine, "SELECT * FROM registered_models")}
    assert set(rows) == {m.registered_model_id for m in models}
    for m in models:
        row = rows[m.registered_model_id]
        mine = [v.version for v in versions if v.registered_model_id == m.registered_model_id]
        assert (row["name"], row["description"]) == (m.name, m.description)
        assert _ms(row["created_at"]) == m.creation_timestamp
        assert (row["version_count"], row["latest_version"]) == (len(mine), max(mine, default=None))

    rows = {(r["name"], r["version"]): r for r in _rows(engine, "SELECT * FROM model_versions")}
    assert set(rows) == {(v.name, v.version) for v in versions}
    for v in versions:
        row = rows[(v.name, v.version)]
        assert row["registered_model_id"] == v.registered_model_id
        assert (row["stage"], row["status"], row["description"]) == (v.current_stage, v.status, v.description)
        assert (row["source"], row["storage_location"]) == (v.source, v.storage_location)
        assert (row["source_run_id"], row["model_id"], row["user_id"]) == (v.run_id, v.model_id, v.user_id)
        assert row["aliases"] == v.aliases
        assert (_ms(row["created_at"]), _ms(row["updated_at"])) == (v.creation_timestamp, v.last_updated_timestamp)

    tags = _rows(engine, "SELECT name, version, key, value FROM registry_tags")
    expected_tags: set[tuple[str, int | None, str, str]] = {
        (m.name, None, k, val) for m in models for k, val in m.tags.items()
    }
    expected_tags |= {(v.name, v.version, k, val) for v in versions for k, val in v.tags.items()}
    assert {(t["name"], t["version"], t["key"], t["value"]) for t in tags} == expected_tags

    aliases = _rows(engine, "SELECT * FROM model_aliases")
    assert {(a["name"], a["alias"], a["version"]) for a in aliases} == {
        (m.name, alias, number) for m in models for alias, number in m.aliases.items()
    }
    for a in aliases:
        last = registry.alias_history(a["name"], a["alias"])[-1]
        assert (a["is_forced"], a["force_reason"], a["set_by"]) == (last.is_forced, last.force_reason, last.actor)
        assert _ms(a["set_at"]) == last.changed_at

    history = _rows(engine, "SELECT * FROM model_alias_history WHERE NOT is_model_deleted")
    for m in models:
        for alias in {h["alias"] for h in history if h["registered_model_id"] == m.registered_model_id}:
            moves = [h for h in history if h["registered_model_id"] == m.registered_model_id and h["alias"] == alias]
            api = registry.alias_history(m.name, alias)
            assert [
                (h["version"], _ms(h["changed_at"]), h["actor"], h["operation"], h["is_forced"], h["force_reason"])
                for h in moves
            ] == [(c.version, c.changed_at, c.actor, c.operation, c.is_forced, c.force_reason) for c in api]
            assert [json.loads(h["gate_reasons"]) if h["gate_reasons"] else [] for h in moves] == [
                c.gate_reasons for c in api
            ]
            assert [_ms(h["valid_until"]) for h in moves] == [c.changed_at for c in api[1:]] + [None]

    current = _rows(engine, "SELECT * FROM deployments ORDER BY environment, model_name")
    assert [
        (
            d["environment"],
            d["model_name"],
            d["version"],
            d["deployment_id"],
            d["application_version"],
            d["target"],
            _ms(d["since"]),
            _ms(d["deployed_at"]),
            d["deployed_by"],
        )
        for d in current
    ] == [
        (
            d.environment,
            d.model_name,
            d.version,
            d.deployment_id,
            d.application_version,
            d.target,
            d.since,
            d.deployed_at,
            d.deployed_by,
        )
        for d in registry.current_deployments()
    ]

    for m in models:
        events = _rows(
            engine, "SELECT * FROM deployment_history WHERE registered_model_id = ?", [m.registered_model_id]
        )
        assert [
            (
                e["deployment_id"],
                e["model_name"],
                e["version"],
                e["environment"],
                e["is_retired"],
                _ms(e["deployed_at"]),
            )
            for e in events
        ] == [
            (d.deployment_id, d.model_name, d.version, d.environment, d.is_retired, d.deployed_at)
            for d in registry.deployment_history(m.name)
        ]


def _build_registry(tracking: TrackingService, registry: RegistryService, gate: FailingRunsGate) -> dict[str, str]:
    exp = tracking.create_experiment("registry-sql")
    runs = {name: tracking.create_run(exp, run_name=name).info.run_id for name in ("good", "bad", "other")}
    gate.failing[runs["bad"]] = "dataset 'customers' failed its latest validation"
    registry.create_registered_model("churn", description="who leaves", tags={"team": "risk", "tier": "1"})
    registry.create_model_version("churn", f"runs:/{runs['good']}/model", tags={"framework": "sklearn"})
    registry.create_model_version("churn", f"runs:/{runs['bad']}/model", description="retrained")
    registry.create_model_version("churn", "s3://elsewhere/model", run_id=runs["other"])
    registry.set_registered_model_alias("churn", "production", 1)
    registry.set_registered_model_alias("churn", "champion", 3)
    registry.transition_model_version_stage("churn", 1, "Production")
    registry.set_model_version_tag("churn", 2, "note", "bad data?")
    registry.create_registered_model("fraud")
    registry.create_model_version("fraud", f"runs:/{runs['good']}/fraud")
    registry.set_registered_model_alias("fraud", "champion", 1)
    registry.record_deployment("churn", 1, environment="production", application_version="app-1.0", target="eu")
    registry.record_deployment("churn", 1, environment="production", application_version="app-1.1", target="eu")
    registry.record_deployment("churn", 3, environment="staging", application_version="app-1.1")
    registry.record_deployment("fraud", 1, environment="production", application_version="app-1.1")
    return runs


def test_registry_views_match_the_domain_api_through_moves_renames_and_deletes(
    store: IcebergStore, tracking: TrackingService, engine: SqlEngine
) -> None:
    gate = FailingRunsGate()
    clock = Clock()
    registry = RegistryService(store, gate=gate, actor="ana", now_ms=clock)
    _build_registry(tracking, registry, gate)
    _check_views(engine, registry)
    production = _rows(engine, "SELECT name, version FROM model_aliases WHERE alias = 'production' ORDER BY name")
    assert production == [{"name": "churn", "version": 1}]
    first, again = registry.deployment_history("churn")[:2]
    [streak] = _rows(
        engine, "SELECT since, deployed_at FROM deployments WHERE environment = 'production' AND model_name = 'churn'"
    )
    # redeploying the same version keeps `since`
    assert (_ms(streak["since"]), _ms(streak["deployed_at"])) == (first.deployed_at, again.deployed_at)
    before_move = clock.now

    # the alias moves over the gate's refusal, forced, by someone else
    bob = RegistryService(store, gate=gate, actor="bob", now_ms=clock)
    bob.set_registered_model_alias("churn", "production", 2, force=True, reason="hotfix for incident 7")
    bob.transition_model_version_stage("churn", 2, "Production", archive_existing_versions=True)
    bob.record_deployment("churn", 2, environment="production", application_version="app-1.2", target="eu")
    _check_views(engine, registry)
    forced = _rows(
        engine, "SELECT version, is_forced, force_reason, set_by FROM model_aliases WHERE alias = 'production'"
    )
    assert forced == [{"version": 2, "is_forced": True, "force_reason": "hotfix for incident 7", "set_by": "bob"}]
    [held] = _rows(
        engine,
        "SELECT version FROM model_alias_history WHERE name = 'churn' AND alias = 'production' AND NOT is_deleted"
        " AND epoch_ms(changed_at) <= ? AND (valid_until IS NULL OR epoch_ms(valid_until) > ?)",
        [before_move, before_move],
    )
    assert held["version"] == registry.get_model_version_by_alias("churn", "production", as_of=before_move).version == 1
    [moved] = _rows(
        engine,
        "SELECT version, since, deployed_at FROM deployments WHERE environment = 'production' AND model_name = 'churn'",
    )
    assert moved["version"] == 2 and moved["since"] == moved["deployed_at"]  # another version starts a new streak

    # a rename: the same model under its new name everywhere
    model_id = registry.get_registered_model("churn").registered_model_id
    registry.rename_registered_model("churn", "churn-v2")
    _check_views(engine, registry)
    names = _rows(engine, "SELECT DISTINCT name FROM model_versions WHERE registered_model_id = ?", [model_id])
    assert names == [{"name": "churn-v2"}]
    deployed = _rows(
        engine, "SELECT DISTINCT deployed_name FROM deployment_history WHERE registered_model_id = ?", [model_id]
    )
    assert deployed == [{"deployed_name": "churn"}]

    # deletes: a version (its alias goes with it), a tag, a retirement, a whole model
    registry.retire_deployment("churn-v2", environment="staging")
    registry.delete_model_version("churn-v2", 3)
    registry.delete_registered_model_tag("churn-v2", "tier")
    registry.delete_registered_model("fraud")
    _check_views(engine, registry)
    assert _rows(engine, "SELECT count(*) AS n FROM model_versions WHERE version = 3") == [{"n": 0}]
    assert _rows(engine, "SELECT alias FROM model_aliases ORDER BY alias") == [{"alias": "production"}]
    assert _rows(engine, "SELECT name FROM registered_models") == [{"name": "churn-v2"}]
    assert _rows(engine, "SELECT environment, model_name FROM deployments") == [
        {"environment": "production", "model_name": "churn-v2"}
    ]
    champion = _rows(
        engine,
        "SELECT operation, is_deleted, valid_until FROM model_alias_history WHERE name = 'churn-v2' AND alias = 'champion' ORDER BY changed_at",
    )
    assert [(c["operation"], c["is_deleted"]) for c in champion] == [("set_alias", False), ("delete", True)]
    assert champion[0]["valid_until"] is not None and champion[1]["valid_until"] is None
    gone = _rows(engine, "SELECT DISTINCT alias, is_model_deleted FROM model_alias_history WHERE name = 'fraud'")
    assert gone == [{"alias": "champion", "is_model_deleted": True}]  # history stays, marked as a deleted model's
    history = _rows(engine, "SELECT count(*) AS n FROM deployment_history WHERE model_name = 'fraud'")
    assert history == [{"n": 1}]  # a deleted model's past deployments stay on record

    # a new model may take a deleted model's name: the views show only the live one
    registry.create_registered_model("fraud", description="second life")
    _check_views(engine, registry)
    assert _rows(engine, "SELECT description, version_count FROM registered_models WHERE name = 'fraud'") == [
        {"description": "second life", "version_count": 0}
    ]


def test_activity_lists_registry_changes_with_actor_and_operation(
    store: IcebergStore, tracking: TrackingService, engine: SqlEngine
) -> None:
    gate = FailingRunsGate()
    clock = Clock()
    registry = RegistryService(store, gate=gate, actor="ana", now_ms=clock)
    runs = _build_registry(tracking, registry, gate)
    bob = RegistryService(store, gate=gate, actor="bob", now_ms=clock)
    bob.set_registered_model_alias("churn", "production", 2, force=True, reason="hotfix for incident 7")
    bob.rename_registered_model("churn", "churn-v2")
    bob.retire_deployment("churn-v2", environment="staging", deployed_by="carol")
    bob.delete_model_version("churn-v2", 3)
    bob.delete_model_version_tag("churn-v2", 2, "note")
    bob.delete_registered_model("fraud")

    rows = _rows(engine, "SELECT * FROM activity")
    assert [r["changed_at"] for r in rows] == sorted((r["changed_at"] for r in rows), reverse=True)
    seen = {(r["entity_type"], r["operation"], r["entity_id"], r["actor"]) for r in rows}
    assert {
        ("registered_model", "create", "churn", "ana"),
        ("registered_model", "rename", "churn-v2", "bob"),
        ("registered_model", "create", "fraud", "ana"),
        ("registered_model", "delete", "fraud", "bob"),
        ("registered_model_tag", "set_tag", "churn", "ana"),
        ("model_version", "create", "churn/1", "ana"),
        ("model_version", "transition_stage", "churn/1", "ana"),
        ("model_version", "delete", "churn-v2/3", "bob"),
        ("model_version_tag", "set_tag", "churn/2", "ana"),
        ("model_version_tag", "delete_tag", "churn-v2/2", "bob"),
        ("model_alias", "set_alias", "churn@production", "ana"),
        ("model_alias", "set_alias", "churn@production", "bob"),
        ("model_alias", "delete", "churn-v2@champion", "bob"),  # deleted with version 3
    } <= seen
    [forced] = [
        r for r in rows if r["entity_type"] == "model_alias" and r["actor"] == "bob" and r["operation"] == "set_alias"
    ]
    assert forced["detail"] == "version=2, forced: hotfix for incident 7"
    [rename] = [r for r in rows if r["operation"] == "rename"]
    assert rename["detail"].startswith("renamed from churn to churn-v2")
    [created] = [
        r
        for r in rows
        if r["entity_type"] == "model_version" and r["entity_id"] == "churn/1" and r["operation"] == "create"
    ]
    assert created["run_id"] == runs["good"]

    deployments = [r for r in rows if r["entity_type"] == "deployment"]
    api = registry.deployment_history("churn-v2")
    assert {(r["entity_id"], r["operation"], r["actor"]) for r in deployments} >= {
        (d.deployment_id, "retire" if d.is_retired else "deploy", d.deployed_by) for d in api
    }
    [retired] = [r for r in deployments if r["operation"] == "retire"]
    assert (retired["actor"], retired["detail"]) == ("carol", "churn-v2/3 retired from staging")

    # one activity row per registry change row, no more, no less
    reg = store.state.registry
    counts = {r["entity_type"]: 0 for r in rows}
    for r in rows:
        counts[r["entity_type"]] += 1
    assert counts["registered_model"] == sum(len(h) for h in reg.models.values())
    assert counts["model_version"] == sum(len(h) for by in reg.versions.values() for h in by.values())
    assert counts["model_alias"] == sum(len(h) for by in reg.aliases.values() for h in by.values())
    assert counts["registered_model_tag"] + counts["model_version_tag"] == sum(
        len(h) for by in reg.tags.values() for h in by.values()
    )
    assert counts["deployment"] == len(reg.deployments)


def test_datasets_quality_and_openlineage_views_and_activity(
    store: IcebergStore, tracking: TrackingService, engine: SqlEngine
) -> None:
    objects = store.settings.storage.open_objects(store.settings.home)
    datasets = DatasetService(store, ArtifactService(store, objects, actor="dora"))
    quality = QualityService(store, datasets)
    openlineage = OpenLineageService(store, actor="airflow-bot")
    run_id = tracking.create_run().info.run_id
    good = datasets.log_dataframe("customers", pl.DataFrame({"age": [31, 45]}), run_id=run_id)["dataset_version_id"]
    bad = datasets.log_dataframe("customers", pl.DataFrame({"age": [31, None]}))["dataset_version_id"]
    quality.attach_suite(
        "customers", "basic", [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}]
    )
    [passed] = quality.validate(good)
    [failed] = quality.validate(bad)
    quality.attach_suite("customers", "ages", [{"type": "expect_column_to_exist", "kwargs": {"column": "age"}}])
    quality.detach_suite("customers", "ages")
    ol_run = str(uuid.uuid4())
    openlineage.ingest(ol_event("START", ol_run, inputs=[("postgres://db:5432", "shop.orders", "v1")]))
    openlineage.ingest(ol_event("COMPLETE", ol_run, inputs=[("postgres://db:5432", "shop.orders", "v1")]))

    versions = {v["dataset_version_id"]: v for v in _rows(engine, "SELECT * FROM datasets")}
    api_versions = [v for name in datasets.list_names() for v in datasets.list_versions(name)]
    assert set(versions) == {v["dataset_version_id"] for v in api_versions}
    for version_id, validation in ((good, passed), (bad, failed)):
        row = versions[version_id]
        assert (row["last_validation_suite"], row["last_validation_success"]) == ("basic", validation["success"])
        assert _ms(row["last_validated_at"]) == validation["validated_at"]
    assert (passed["success"], failed["success"]) == (True, False)

    rows = _rows(engine, "SELECT * FROM activity")
    logged = {r["entity_id"]: r for r in rows if r["entity_type"] == "dataset_version"}
    assert set(logged) == set(versions)
    assert {logged[good]["actor"], logged[good]["operation"]} == {"dora", "log"}
    validations = {r["entity_id"]: r for r in rows if r["entity_type"] == "validation"}
    assert set(validations) == {passed["validation_id"], failed["validation_id"]}
    assert validations[passed["validation_id"]]["detail"].endswith("against suite basic: passed")
    assert validations[failed["validation_id"]]["detail"].endswith("against suite basic: failed")
    assert {r["actor"] for r in validations.values()} == {"dora"}
    suites = [(r["entity_id"], r["operation"], r["detail"]) for r in rows if r["entity_type"] == "expectation_suite"]
    assert sorted(suites) == [
        ("customers/ages", "create", "1 expectations"),
        ("customers/ages", "delete", "detached"),
        ("customers/basic", "create", "1 expectations"),
    ]
    events = [(r["operation"], r["actor"], r["entity_id"]) for r in rows if r["entity_type"] == "openlineage_run"]
    assert sorted(events) == [("complete", PRODUCER, ol_run), ("start", PRODUCER, ol_run)]
    links = [r for r in rows if r["entity_type"] == "lineage_edge"]
    assert {(r["entity_id"], r["run_id"], r["actor"]) for r in links if r["run_id"] == run_id} == {
        (f"dataset_version:{good} -input-> run:{run_id}", run_id, "dora")
    }
    assert any(r["actor"] == "airflow-bot" and "-executes-> run:" in r["entity_id"] for r in links)


def test_registry_views_travel_in_time(store: IcebergStore, tracking: TrackingService, engine: SqlEngine) -> None:
    registry = RegistryService(store, actor="ana")
    run_id = tracking.create_run().info.run_id
    registry.create_registered_model("churn")
    for _ in range(2):
        registry.create_model_version("churn", f"runs:/{run_id}/model")
    registry.set_registered_model_alias("churn", "production", 1)
    store.commit()
    snapshot = store.table("model_alias_changes").metadata.current_snapshot()
    assert snapshot is not None
    between = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, tz=UTC)
    registry.set_registered_model_alias("churn", "production", 2)
    registry.rename_registered_model("churn", "churn-v2")
    store.commit()

    sql = "SELECT name, version FROM model_aliases WHERE alias = 'production'"
    assert _rows(engine, sql) == [{"name": "churn-v2", "version": 2}]
    then = engine.query(sql, as_of=between).to_pylist()
    first_set = registry.alias_history("churn-v2", "production")[0].changed_at  # the API's own clock, in ms
    api_then = registry.get_model_version_by_alias("churn", "production", as_of=first_set)
    assert then == [{"name": api_then.name, "version": api_then.version}] == [{"name": "churn", "version": 1}]
