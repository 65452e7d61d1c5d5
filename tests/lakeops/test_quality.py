"""Expectation suites, validations and the alias quality gate — on file, s3 and rest."""

from __future__ import annotations

import polars as pl
import pytest
from lakes import reopen

from lakeops.datasets import DatasetService
from lakeops.errors import DataQualityError, InvalidArgumentError, NotFoundError
from lakeops.quality.gate import QualityGate
from lakeops.quality.suites import QualityService
from lakeops.services.artifacts import ArtifactService
from lakeops.stores import IcebergStore
from lakeops.tracking import TrackingService

SUITE = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0, "max_value": 120}},
]


@pytest.fixture
def quality(store: IcebergStore, tracking: TrackingService) -> QualityService:
    objects = store.settings.storage.open_objects(store.settings.home)
    return QualityService(store, DatasetService(store, ArtifactService(store, objects, actor="tester")))


def test_suites_validations_and_gate_verdicts(
    store: IcebergStore, tracking: TrackingService, quality: QualityService
) -> None:
    datasets = quality.datasets
    gate = QualityGate(store)
    good = datasets.log_dataframe("customers", pl.DataFrame({"age": [31, 45, 27]}))["dataset_version_id"]
    bad = datasets.log_dataframe("customers", pl.DataFrame({"age": [31, None, 250]}))["dataset_version_id"]
    other = datasets.log_dataframe("clicks", pl.DataFrame({"n": [1]}))["dataset_version_id"]
    run_good, run_bad, run_unvalidated, run_none = (tracking.create_run().info.run_id for _ in range(4))
    datasets.link(good, run_good)
    datasets.link(bad, run_bad)
    datasets.link(good, run_unvalidated)
    datasets.link(other, run_unvalidated)

    # no suite attached anywhere yet: every training dataset is "never validated"
    reasons = gate.check_model_version(source_run_id=run_good, model_id=None)
    assert len(reasons) == 1 and "never validated" in reasons[0] and "customers" in reasons[0]

    quality.attach_suite("customers", "basic", SUITE)
    assert [s["suite_name"] for s in quality.list_suites("customers")] == ["basic"]
    # suite attached, version not validated against it yet
    assert gate.check_model_version(source_run_id=run_good, model_id=None) == [
        f"dataset 'customers' version {good} was never validated against suite 'basic'"
    ]

    [passed] = quality.validate(good)
    assert passed["success"] is True
    assert passed["statistics"]["evaluated_expectations"] == 2 and passed["statistics"]["success_percent"] == 100.0
    [failed] = quality.validate(bad, "basic")
    assert failed["success"] is False
    by_type = {r["type"]: r for r in failed["results"]}
    assert by_type["expect_column_values_to_not_be_null"]["result"]["unexpected_count"] == 1
    assert by_type["expect_column_values_to_be_between"]["success"] is False
    assert by_type["expect_column_values_to_be_between"]["kwargs"]["max_value"] == 120

    assert gate.check_model_version(source_run_id=run_good, model_id=None) == []  # passed
    [reason] = gate.check_model_version(source_run_id=run_bad, model_id=None)  # failed
    assert "failed its latest validation against suite 'basic'" in reason and "2 of 2" in reason
    [reason] = gate.check_model_version(source_run_id=run_unvalidated, model_id=None)  # one of two never validated
    assert "'clicks'" in reason and "never validated" in reason
    # no training datasets: allowed by default, refused when the gate is strict
    assert gate.check_model_version(source_run_id=run_none, model_id=None) == []
    assert gate.check_model_version(source_run_id=None, model_id=None) == []
    [reason] = QualityGate(store, require_datasets=True).check_model_version(source_run_id=run_none, model_id=None)
    assert "no training datasets" in reason

    # a logged model's source run counts as well
    model = tracking.create_logged_model("0", name="m", source_run_id=run_bad)
    assert len(gate.check_model_version(source_run_id=None, model_id=model.model_id)) == 1
    assert len(gate.check_model_version(source_run_id=run_good, model_id=model.model_id)) == 1

    # results are Iceberg rows: they survive a restart, and the latest validation decides
    fresh, _ = reopen(store)
    try:
        assert [v["success"] for v in QualityService(fresh, quality.datasets).validations(bad)] == [False]
        assert len(QualityGate(fresh).check_model_version(source_run_id=run_bad, model_id=None)) == 1
        assert QualityGate(fresh).check_model_version(source_run_id=run_good, model_id=None) == []
    finally:
        fresh.close()


def test_bad_suites_and_validations(tracking: TrackingService, quality: QualityService) -> None:
    with pytest.raises(InvalidArgumentError, match="expect_nonsense not found"):
        quality.attach_suite("customers", "basic", [{"type": "expect_nonsense", "kwargs": {}}])
    with pytest.raises(InvalidArgumentError, match="column"):
        quality.attach_suite("customers", "basic", [{"type": "expect_column_values_to_not_be_null", "kwargs": {}}])
    with pytest.raises(InvalidArgumentError, match="non-empty list"):
        quality.attach_suite("customers", "basic", [])
    with pytest.raises(InvalidArgumentError, match="Invalid suite name"):
        quality.attach_suite("customers", "no spaces please", SUITE)
    assert quality.list_suites("customers") == []  # nothing stored
    version = quality.datasets.log_dataframe("customers", pl.DataFrame({"age": [1]}))["dataset_version_id"]
    with pytest.raises(InvalidArgumentError, match="no expectation suite attached"):
        quality.validate(version)
    quality.attach_suite("customers", "basic", SUITE)
    with pytest.raises(NotFoundError, match="No suite 'other'"):
        quality.validate(version, "other")
    with pytest.raises(NotFoundError, match="No dataset version 'nope'"):
        quality.validate("nope")
    run_id = tracking.create_run().info.run_id
    tracking.log_inputs(run_id, datasets=[{"name": "customers", "digest": "abc123"}])
    mlflow_version = quality.datasets.list_versions("customers")[-1]["dataset_version_id"]
    with pytest.raises(InvalidArgumentError, match="holds no table lakeops can read"):
        quality.validate(mlflow_version)
    quality.detach_suite("customers", "basic")
    assert quality.list_suites("customers") == []
    with pytest.raises(NotFoundError, match="No suite 'basic'"):
        quality.detach_suite("customers", "basic")


def test_validated_logging_refuses_bad_data_and_stores_nothing(
    tracking: TrackingService, quality: QualityService
) -> None:
    run_id = tracking.create_run().info.run_id
    with pytest.raises(InvalidArgumentError, match="no expectation suite attached"):
        quality.log_validated_dataframe("patients", pl.DataFrame({"age": [1]}))
    quality.attach_suite("patients", "basic", SUITE)
    with pytest.raises(
        DataQualityError, match=r"failed 2 expectation\(s\): expect_column_values_to_not_be_null\(age\)"
    ) as info:
        quality.log_validated_dataframe("patients", pl.DataFrame({"age": [3, None, 300]}), run_id=run_id)
    assert {p["type"] for p in info.value.details["failed"]} == {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
    }
    assert "patients" not in quality.store.state.lineage.versions_by_name  # nothing stored
    assert tracking.get_run(run_id).inputs == []
    version = quality.log_validated_dataframe("patients", pl.DataFrame({"age": [3, 30]}), run_id=run_id)
    [result] = quality.validations(version["dataset_version_id"])
    assert result["success"] is True and result["suite_name"] == "basic"
    assert QualityGate(quality.store).check_model_version(source_run_id=run_id, model_id=None) == []


def test_gate_is_an_alias_gate() -> None:
    """The registry's AliasGate protocol, restated here (it lives on another branch): keyword-only, list of reasons."""
    import inspect

    params = inspect.signature(QualityGate.check_model_version).parameters
    assert [(n, p.kind) for n, p in params.items() if n != "self"] == [
        ("source_run_id", inspect.Parameter.KEYWORD_ONLY),
        ("model_id", inspect.Parameter.KEYWORD_ONLY),
    ]
