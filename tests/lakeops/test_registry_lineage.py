"""The registry and the data side together: lineage from dataset to deployment, and the real quality gate."""

from __future__ import annotations

import polars as pl
import pytest

from lakeops.datasets import DatasetService
from lakeops.errors import DataQualityError
from lakeops.lineage import LineageService
from lakeops.quality.gate import QualityGate
from lakeops.quality.suites import QualityService
from lakeops.registry import RegistryService
from lakeops.services.artifacts import ArtifactService
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService

SUITE = [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0, "max_value": 120}}]


@pytest.fixture
def quality(store: IcebergStore) -> QualityService:
    objects = store.settings.storage.open_objects(store.settings.home)
    return QualityService(store, DatasetService(store, ArtifactService(store, objects, actor="tester")))


def test_dataset_to_deployment_lineage_and_the_quality_gate(
    store: IcebergStore, tracking: TrackingService, quality: QualityService
) -> None:
    registry = RegistryService(store, gate=QualityGate(store), protected_aliases=["production"], actor="ana")
    lineage = LineageService(store)
    datasets = quality.datasets

    good = datasets.log_dataframe("customers", pl.DataFrame({"age": [31, 45]}))["dataset_version_id"]
    bad = datasets.log_dataframe("customers", pl.DataFrame({"age": [31, 250]}))["dataset_version_id"]
    run_good, run_bad = (tracking.create_run().info.run_id for _ in range(2))
    datasets.link(good, run_good)
    datasets.link(bad, run_bad)
    registry.create_registered_model("churn")
    v1 = registry.create_model_version("churn", f"runs:/{run_good}/model", run_id=run_good).version
    v2 = registry.create_model_version("churn", f"runs:/{run_bad}/model", run_id=run_bad).version

    # Never validated: a protected alias is refused, an unprotected one is not; nothing is stored on refusal.
    with pytest.raises(DataQualityError, match="never validated"):
        registry.set_registered_model_alias("churn", "production", v1)
    assert registry.alias_history("churn", "production") == []
    registry.set_registered_model_alias("churn", "staging", v1)

    quality.attach_suite("customers", "ages", SUITE)
    assert quality.validate(good)[0]["success"] is True
    assert quality.validate(bad)[0]["success"] is False
    registry.set_registered_model_alias("churn", "production", v1)
    assert registry.get_model_version_by_alias("churn", "production").version == v1
    with pytest.raises(DataQualityError, match="failed"):
        registry.set_registered_model_alias("churn", "production", v2)
    assert registry.get_model_version_by_alias("churn", "production").version == v1

    # Forced over the gate: recorded with its reason and the gate's reasons.
    registry.set_registered_model_alias("churn", "production", v2, force=True, reason="hotfix, data fixed upstream")
    last = registry.alias_history("churn", "production")[-1]
    assert last.version == v2 and last.is_forced and last.force_reason == "hotfix, data fixed upstream"
    assert any("failed" in r for r in last.gate_reasons)

    # Lineage: dataset version -> run -> model version -> deployment, written by the registry itself.
    deployment = registry.record_deployment("churn", v1, environment="production", application_version="app-1.4")
    graph = lineage.query("deployment", deployment.deployment_id, direction="upstream", depth=3)
    nodes = {(n["kind"], n["id"]): n["distance"] for n in graph["nodes"]}
    assert nodes[("model_version", f"churn/{v1}")] == 1
    assert nodes[("run", run_good)] == 2
    assert nodes[("dataset_version", good)] == 3
    assert ("dataset_version", bad) not in nodes
    down = lineage.query("dataset_version", bad, direction="downstream", depth=5)
    assert {(n["kind"], n["id"]) for n in down["nodes"]} == {
        ("dataset_version", bad),
        ("run", run_bad),
        ("model_version", f"churn/{v2}"),
    }
