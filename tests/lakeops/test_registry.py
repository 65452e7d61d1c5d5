"""The registry contract: models, versions, aliases, stages, gate, deployments, as_of — on file, s3 and rest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lakes import reopen

from lakeops.errors import AlreadyExistsError, DataQualityError, InvalidArgumentError, NotFoundError
from lakeops.registry import AliasGate, RegistryService
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService


class Clock:
    """A settable clock in epoch milliseconds."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


class RunListGate:
    """Our AliasGate protocol: refuses versions trained by runs listed as failing validation."""

    def __init__(self, failing: dict[str, str]) -> None:
        self.failing = failing
        self.calls: list[tuple[str | None, str | None]] = []

    def check_model_version(self, *, source_run_id: str | None, model_id: str | None) -> list[str]:
        self.calls.append((source_run_id, model_id))
        reason = self.failing.get(source_run_id or "")
        return [reason] if reason else []


def _registry(store: IcebergStore, clock: Clock | None = None, gate: AliasGate | None = None) -> RegistryService:
    return RegistryService(store, now_ms=clock, gate=gate, actor="ana")


def _run(tracking: TrackingService, name: str = "train") -> str:
    exp = tracking.create_experiment(f"exp-{name}")
    return tracking.create_run(exp, run_name=name).info.run_id


def test_registered_model_lifecycle(store: IcebergStore) -> None:
    registry = _registry(store)
    model = registry.create_registered_model("churn", description="first", tags={"team": "risk"})
    assert (model.name, model.description, model.tags) == ("churn", "first", {"team": "risk"})
    rows_before = len(store.state.registry.models)
    with pytest.raises(AlreadyExistsError, match=r"name=churn\) already exists"):
        registry.create_registered_model("churn")
    assert len(store.state.registry.models) == rows_before  # the refused create stored nothing
    registry.update_registered_model("churn", description="second")
    registry.set_registered_model_tag("churn", "owner", "ana")
    registry.delete_registered_model_tag("churn", "team")
    with pytest.raises(NotFoundError, match="No tag with key 'team'"):
        registry.delete_registered_model_tag("churn", "team")
    renamed = registry.rename_registered_model("churn", "churn-v2")
    assert (renamed.name, renamed.description, renamed.tags) == ("churn-v2", "second", {"owner": "ana"})
    with pytest.raises(NotFoundError, match="name=churn not found"):
        registry.get_registered_model("churn")
    registry.create_registered_model("other")
    with pytest.raises(AlreadyExistsError, match="already exists"):
        registry.rename_registered_model("other", "churn-v2")
    registry.delete_registered_model("other")
    with pytest.raises(NotFoundError, match="name=other not found"):
        registry.get_registered_model("other")
    assert registry.create_registered_model("other").description is None  # the name is free again

    store, _tracking = reopen(store)
    try:
        again = _registry(store).get_registered_model("churn-v2")
        assert (again.description, again.tags) == ("second", {"owner": "ana"})
    finally:
        store.close()


def test_models_as_of_before_rename_and_delete(store: IcebergStore) -> None:
    clock = Clock()
    registry = _registry(store, clock)
    registry.create_registered_model("old-name", description="v0", tags={"t": "1"})
    registry.create_model_version("old-name", "s3://bucket/x/1")
    before = clock.now
    clock.now += 1000
    registry.rename_registered_model("old-name", "new-name")
    registry.update_registered_model("new-name", description="v1")
    registry.set_registered_model_tag("new-name", "t", "2")
    registry.create_model_version("new-name", "s3://bucket/x/2")
    clock.now += 1000
    registry.delete_registered_model("new-name")

    then = registry.get_registered_model("old-name", as_of=before)
    assert (then.name, then.description, then.tags) == ("old-name", "v0", {"t": "1"})
    assert [v.version for v in then.latest_versions] == [1]
    assert [m.name for m in registry.search_registered_models(as_of=before).registered_models] == ["old-name"]
    middle = registry.get_registered_model("new-name", as_of=before + 1000)
    assert (middle.description, middle.tags) == ("v1", {"t": "2"})
    found = registry.search_model_versions("name = 'new-name'", as_of=before + 1000).model_versions
    assert [v.version for v in found] == [2, 1]
    with pytest.raises(NotFoundError, match="name=new-name not found"):
        registry.get_registered_model("new-name")
    with pytest.raises(NotFoundError, match="name=new-name not found at"):
        registry.get_registered_model("new-name", as_of=before)
    assert registry.search_registered_models().registered_models == []


@pytest.mark.parametrize(
    "name", [pytest.param("", id="empty"), pytest.param("a/b", id="slash"), pytest.param("  ", id="blank")]
)
def test_invalid_model_name_is_refused(store: IcebergStore, name: str) -> None:
    registry = _registry(store)
    with pytest.raises(InvalidArgumentError, match="Invalid registered model name"):
        registry.create_registered_model(name)
    assert store.state.registry.models == {}


def test_versions_from_run_and_logged_model(store: IcebergStore, tracking: TrackingService) -> None:
    registry = _registry(store)
    run_id = _run(tracking)
    run = tracking.get_run(run_id)
    logged = tracking.create_logged_model(run.info.experiment_id, name="model", source_run_id=run_id)
    registry.create_registered_model("fraud")

    v1 = registry.create_model_version("fraud", f"runs:/{run_id}/model", tags={"k": "v"}, description="d")
    assert (v1.version, v1.run_id, v1.model_id, v1.tags) == (1, run_id, None, {"k": "v"})
    assert registry.get_model_version_download_uri("fraud", 1) == f"{run.info.artifact_uri}/model"
    v2 = registry.create_model_version("fraud", f"models:/{logged.model_id}", model_id=logged.model_id)
    assert (v2.version, v2.model_id, v2.run_id) == (2, logged.model_id, run_id)  # the run comes from the model
    assert registry.get_model_version_download_uri("fraud", "2") == logged.artifact_location
    v3 = registry.create_model_version("fraud", "models:/fraud/1")  # copy of another version
    assert (v3.storage_location, v3.run_id) == (f"{run.info.artifact_uri}/model", run_id)

    versions_before = dict(store.state.registry.versions)
    with pytest.raises(InvalidArgumentError, match="pass its model_id"):
        registry.create_model_version("fraud", f"models:/{logged.model_id}")
    with pytest.raises(NotFoundError, match="Logged model with ID 'm-nope' not found"):
        registry.create_model_version("fraud", "models:/m-nope", model_id="m-nope")
    with pytest.raises(NotFoundError, match="name=ghost not found"):
        registry.create_model_version("ghost", "s3://bucket/model")
    assert {k: len(v) for k, v in store.state.registry.versions.items()} == {
        k: len(v) for k, v in versions_before.items()
    }

    registry.update_model_version("fraud", 1, description="better")
    registry.set_model_version_tag("fraud", 1, "stage", "qa")
    registry.delete_model_version_tag("fraud", 1, "k")
    assert registry.get_model_version("fraud", 1).tags == {"stage": "qa"}
    registry.delete_model_version("fraud", 3)
    with pytest.raises(NotFoundError, match=r"version=3\) not found"):
        registry.get_model_version("fraud", 3)
    assert registry.create_model_version("fraud", "s3://bucket/m4").version == 4  # numbers are never reused
    with pytest.raises(InvalidArgumentError, match="must be a positive integer"):
        registry.get_model_version("fraud", "one")
    with pytest.raises(NotFoundError, match=r"version=99\) not found"):
        registry.get_model_version("fraud", 99)
    # A run this server does not know is accepted, as MLflow accepts it: the source stays as given.
    foreign = registry.create_model_version("fraud", "runs:/elsewhere/model", run_id="elsewhere")
    assert (foreign.run_id, foreign.source) == ("elsewhere", "runs:/elsewhere/model")
    assert registry.get_model_version_download_uri("fraud", foreign.version) == "runs:/elsewhere/model"


def test_aliases_move_and_time_travel(store: IcebergStore) -> None:
    clock = Clock()
    registry = _registry(store, clock)
    registry.create_registered_model("ranker")
    for i in range(3):
        registry.create_model_version("ranker", f"s3://bucket/ranker/{i + 1}")
    t0 = clock.now
    clock.now += 60_000
    t1 = clock.now
    registry.set_registered_model_alias("ranker", "production", 1)
    clock.now += 60_000
    t2 = clock.now
    registry.set_registered_model_alias("ranker", "production", 2)
    registry.set_registered_model_alias("ranker", "champion", 2)
    clock.now += 60_000
    t3 = clock.now
    registry.delete_registered_model_alias("ranker", "production")

    assert registry.get_model_version_by_alias("ranker", "champion").aliases == ["champion"]
    with pytest.raises(NotFoundError, match="alias production not found"):
        registry.get_model_version_by_alias("ranker", "production")
    assert registry.get_model_version_by_alias("ranker", "production", as_of=t1).version == 1
    assert registry.get_model_version_by_alias("ranker", "production", as_of=t2 + 1).version == 2
    march_1 = datetime.fromtimestamp((t1 + 30_000) / 1000, tz=UTC)
    assert registry.get_model_version_by_alias("ranker", "production", as_of=march_1).version == 1
    with pytest.raises(NotFoundError, match="alias production not found for model ranker at"):
        registry.get_model_version_by_alias("ranker", "production", as_of=t0)
    with pytest.raises(NotFoundError, match="alias production not found"):
        registry.get_model_version_by_alias("ranker", "production", as_of=t3)
    assert registry.get_registered_model("ranker", as_of=t2).aliases == {"production": 2, "champion": 2}
    assert registry.get_registered_model("ranker").aliases == {"champion": 2}
    history = registry.alias_history("ranker", "production")
    assert [(c.operation, c.version, c.changed_at, c.actor) for c in history] == [
        ("set_alias", 1, t1, "ana"),
        ("set_alias", 2, t2, "ana"),
        ("delete_alias", None, t3, "ana"),
    ]
    # search and get answer as of a time too
    page = registry.search_model_versions("name = 'ranker'", as_of=t2)
    assert [(v.version, v.aliases) for v in page.model_versions] == [(3, []), (2, ["champion", "production"]), (1, [])]

    store, _tracking = reopen(store)  # the history comes back from the Iceberg change rows
    try:
        again = _registry(store, clock)
        assert again.get_model_version_by_alias("ranker", "production", as_of=t1).version == 1
        assert again.get_model_version_by_alias("ranker", "production", as_of=t2).version == 2
        assert len(again.alias_history("ranker", "production")) == 3
    finally:
        store.close()


@pytest.mark.parametrize(
    "alias",
    [
        pytest.param("v1", id="version-like"),
        pytest.param("V12", id="version-like-upper"),
        pytest.param("latest", id="latest"),
        pytest.param("Latest", id="latest-case"),
        pytest.param("has space", id="space"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_alias_is_refused(store: IcebergStore, alias: str) -> None:
    registry = _registry(store)
    registry.create_registered_model("m")
    registry.create_model_version("m", "s3://bucket/m/1")
    with pytest.raises(InvalidArgumentError, match="Invalid alias"):
        registry.set_registered_model_alias("m", alias, 1)
    assert store.state.registry.aliases == {}


def test_alias_errors(store: IcebergStore) -> None:
    registry = _registry(store)
    registry.create_registered_model("m")
    registry.create_model_version("m", "s3://bucket/m/1")
    with pytest.raises(NotFoundError, match=r"version=7\) not found"):
        registry.set_registered_model_alias("m", "prod", 7)
    with pytest.raises(NotFoundError, match="name=ghost not found"):
        registry.set_registered_model_alias("ghost", "prod", 1)
    with pytest.raises(NotFoundError, match="alias prod not found"):
        registry.delete_registered_model_alias("m", "prod")
    assert store.state.registry.aliases == {}
    registry.set_registered_model_alias("m", "prod", 1)
    registry.delete_model_version("m", 1)  # deleting the version removes its aliases, recorded as rows
    with pytest.raises(NotFoundError, match="alias prod not found"):
        registry.get_model_version_by_alias("m", "prod")
    assert [c.operation for c in registry.alias_history("m", "prod")] == ["set_alias", "delete"]


def test_stages_with_archive_existing_versions(store: IcebergStore) -> None:
    registry = _registry(store)
    registry.create_registered_model("s")
    for i in range(3):
        registry.create_model_version("s", f"s3://bucket/s/{i + 1}")
    registry.transition_model_version_stage("s", 1, "production")
    registry.transition_model_version_stage("s", 2, "Staging")
    moved = registry.transition_model_version_stage("s", 3, "Production", archive_existing_versions=True)
    assert moved.current_stage == "Production"
    stages = {v.version: v.current_stage for v in registry.search_model_versions("name='s'").model_versions}
    assert stages == {1: "Archived", 2: "Staging", 3: "Production"}
    latest = {v.current_stage: v.version for v in registry.get_registered_model("s").latest_versions}
    assert latest == {"Archived": 1, "Staging": 2, "Production": 3}
    assert [v.version for v in registry.get_latest_versions("s", ["Staging"])] == [2]
    with pytest.raises(InvalidArgumentError, match="Invalid model version stage 'Prod'"):
        registry.transition_model_version_stage("s", 1, "Prod")
    with pytest.raises(InvalidArgumentError, match="archive_existing_versions applies only"):
        registry.transition_model_version_stage("s", 1, "Archived", archive_existing_versions=True)


def test_search_filters_order_and_paging(store: IcebergStore, tracking: TrackingService) -> None:
    registry = _registry(store)
    run_a, run_b = _run(tracking, "a"), _run(tracking, "b")
    for i, name in enumerate(["svc-alpha", "svc-beta", "svc-gamma", "batch-delta", "Svc-Epsilon"]):
        registry.create_registered_model(name, tags={"team": "core" if i % 2 == 0 else "edge"})
        registry.create_model_version(name, f"s3://bucket/{name}/1", run_id=run_a)
        registry.create_model_version(name, f"s3://bucket/{name}/2", run_id=run_b, tags={"quality": "gold"})

    def names(**kw: object) -> list[str]:
        return [m.name for m in registry.search_registered_models(**kw).registered_models]  # type: ignore[arg-type]

    assert names(filter_string="name LIKE 'svc-%'") == ["svc-alpha", "svc-beta", "svc-gamma"]
    assert names(filter_string="name ILIKE 'svc-%'") == ["Svc-Epsilon", "svc-alpha", "svc-beta", "svc-gamma"]
    assert names(filter_string="tags.team = 'edge'") == ["batch-delta", "svc-beta"]
    assert names(filter_string="name = 'svc-beta'") == ["svc-beta"]
    # a missing tag differs from every value, as in MLflow (its client filters prompts out this way)
    assert len(names(filter_string="tags.`mlflow.prompt.is_prompt` != 'true'")) == 5
    assert names(filter_string="tags.team != 'edge' AND name LIKE 'svc-%'") == ["svc-alpha", "svc-gamma"]
    assert names(order_by=["name DESC"])[:2] == ["svc-gamma", "svc-beta"]
    first = registry.search_registered_models(max_results=2)
    assert len(first.registered_models) == 2 and first.next_page_token
    second = registry.search_registered_models(max_results=2, page_token=first.next_page_token)
    third = registry.search_registered_models(max_results=2, page_token=second.next_page_token)
    paged = [m.name for p in (first, second, third) for m in p.registered_models]
    assert paged == names() and third.next_page_token is None

    def versions(text: str, **kw: object) -> list[tuple[str, int]]:
        page = registry.search_model_versions(text, **kw)  # type: ignore[arg-type]
        return [(v.name, v.version) for v in page.model_versions]

    assert versions("name = 'svc-beta'") == [("svc-beta", 2), ("svc-beta", 1)]
    assert versions(f"run_id = '{run_a}' AND name LIKE 'batch%'") == [("batch-delta", 1)]
    assert len(versions(f"run_id IN ('{run_a}', '{run_b}')")) == 10
    assert versions("tags.quality = 'gold' AND name = 'svc-alpha'") == [("svc-alpha", 2)]
    assert versions("version_number > 1 AND source_path LIKE '%gamma%'") == [("svc-gamma", 2)]
    assert versions("name = 'svc-alpha'", order_by=["version_number ASC"]) == [("svc-alpha", 1), ("svc-alpha", 2)]
    page = registry.search_model_versions(max_results=4)
    rest = registry.search_model_versions(max_results=10, page_token=page.next_page_token)
    assert len(page.model_versions) == 4 and len(rest.model_versions) == 6 and rest.next_page_token is None

    with pytest.raises(InvalidArgumentError, match="Invalid attribute 'colour'"):
        registry.search_model_versions("colour = 'red'")
    with pytest.raises(InvalidArgumentError, match="Invalid comparator"):
        registry.search_registered_models("name > 'x'")
    with pytest.raises(InvalidArgumentError, match="Invalid order_by clause"):
        registry.search_registered_models(order_by=["size DESC"])
    with pytest.raises(InvalidArgumentError, match="Invalid max_results"):
        registry.search_registered_models(max_results=5000)
    with pytest.raises(InvalidArgumentError, match="Invalid page token"):
        registry.search_model_versions(page_token="not-a-token!")


def test_quality_gate_refuses_allows_and_is_forced(store: IcebergStore, tracking: TrackingService) -> None:
    bad_run, good_run = _run(tracking, "bad"), _run(tracking, "good")
    gate = RunListGate({bad_run: "dataset churn@3f2a failed validation 'no_nulls'"})
    registry = _registry(store, gate=gate)
    registry.create_registered_model("g")
    registry.create_model_version("g", "s3://bucket/g/1", run_id=bad_run)
    registry.create_model_version("g", "s3://bucket/g/2", run_id=good_run)

    with pytest.raises(DataQualityError, match=r"may not get protected alias 'production': dataset churn@3f2a failed"):
        registry.set_registered_model_alias("g", "production", 1)
    assert store.state.registry.aliases == {}  # refused: nothing stored
    with pytest.raises(InvalidArgumentError, match="needs a reason"):
        registry.set_registered_model_alias("g", "production", 1, force=True)
    assert store.state.registry.aliases == {}
    registry.set_registered_model_alias("g", "challenger", 1)  # not protected: no gate
    assert gate.calls == [(bad_run, None)]
    registry.set_registered_model_alias("g", "production", 2)  # passes the gate
    registry.set_registered_model_alias("g", "production", 1, force=True, reason="hotfix INC-42, data fixed upstream")
    assert registry.get_model_version_by_alias("g", "production").version == 1
    history = registry.alias_history("g", "production")
    assert [(c.version, c.is_forced, c.force_reason) for c in history] == [
        (2, False, None),
        (1, True, "hotfix INC-42, data fixed upstream"),
    ]
    assert history[-1].gate_reasons == ["dataset churn@3f2a failed validation 'no_nulls'"]

    store, _tracking = reopen(store)  # the force and its reason are in the change rows
    try:
        again = _registry(store).alias_history("g", "production")
        assert (again[-1].is_forced, again[-1].force_reason) == (True, "hotfix INC-42, data fixed upstream")
        # without a gate, protected aliases are allowed
        _registry(store).set_registered_model_alias("g", "production", 2)
    finally:
        store.close()


def test_deployments(store: IcebergStore) -> None:
    clock = Clock()
    registry = _registry(store, clock)
    registry.create_registered_model("recsys")
    for i in range(2):
        registry.create_model_version("recsys", f"s3://bucket/recsys/{i + 1}")
    t1 = clock.now
    registry.record_deployment("recsys", 1, environment="production", application_version="shop-1.0", target="eu-1")
    registry.record_deployment("recsys", 1, environment="staging", application_version="shop-1.0")
    clock.now += 1000
    t2 = clock.now
    registry.record_deployment("recsys", 2, environment="production", application_version="shop-1.1", deployed_by="bo")
    clock.now += 1000
    registry.record_deployment("recsys", 2, environment="production", application_version="shop-1.2")

    prod = registry.current_deployments(environment="production")
    assert [(d.model_name, d.version, d.since, d.application_version, d.deployed_at) for d in prod] == [
        ("recsys", 2, t2, "shop-1.2", clock.now)
    ]
    at_t1 = registry.current_deployments(environment="production", as_of=t1)
    assert [(d.version, d.since, d.target, d.deployed_by) for d in at_t1] == [(1, t1, "eu-1", "ana")]
    assert {d.environment for d in registry.current_deployments()} == {"production", "staging"}
    apps = registry.application_versions("recsys")
    assert [(a.application_version, a.environment, a.versions) for a in apps] == [
        ("shop-1.0", "production", [1]),
        ("shop-1.0", "staging", [1]),
        ("shop-1.1", "production", [2]),
        ("shop-1.2", "production", [2]),
    ]
    assert [a.application_version for a in registry.application_versions("recsys", version=2)] == [
        "shop-1.1",
        "shop-1.2",
    ]
    assert registry.deployment_history("recsys", version=2)[0].deployed_by == "bo"
    retired = registry.retire_deployment("recsys", environment="staging")
    assert retired.is_retired
    assert {d.environment for d in registry.current_deployments()} == {"production"}

    events = len(store.state.registry.deployments)
    with pytest.raises(NotFoundError, match=r"version=9\) not found"):
        registry.record_deployment("recsys", 9, environment="production")
    with pytest.raises(InvalidArgumentError, match="Invalid environment"):
        registry.record_deployment("recsys", 1, environment=" ")
    with pytest.raises(NotFoundError, match="is not deployed to staging"):
        registry.retire_deployment("recsys", environment="staging")
    assert len(store.state.registry.deployments) == events


def test_a_replica_sees_alias_moves_after_refresh(store: IcebergStore) -> None:
    clock = Clock()
    registry = _registry(store, clock)
    registry.create_registered_model("shared")
    registry.create_model_version("shared", "s3://bucket/shared/1")
    registry.create_model_version("shared", "s3://bucket/shared/2")
    registry.set_registered_model_alias("shared", "production", 1)
    first_move = clock.now
    store.commit()
    # a second process on the same lake; no background refresh, so the explicit one below finds the move
    replica = open_store(store.settings, start_committer=False)
    try:
        other = _registry(replica, clock)
        assert other.get_model_version_by_alias("shared", "production").version == 1
        clock.now += 1000
        registry.set_registered_model_alias("shared", "production", 2)
        store.commit()
        assert replica.refresh() >= 1
        assert other.get_model_version_by_alias("shared", "production").version == 2
        assert other.get_model_version_by_alias("shared", "production", as_of=first_move).version == 1
        assert [c.version for c in other.alias_history("shared", "production")] == [1, 2]
    finally:
        replica.close()
