"""Expectation suites on dataset names, and validations of dataset versions against them.

great-expectations takes seconds to import, so it is imported here, inside the functions that
use it, and never at service start-up. Suites are stored as lists of expectation configurations
(``{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}}``), checked by
great-expectations when attached; validation results (success, statistics, per-expectation
results) are rows of ``validation_results``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from catalog.tables import EXPECTATION_SUITE_CHANGES, VALIDATION_RESULTS
from lakeops.actor import ActorField
from lakeops.datasets import DatasetService
from lakeops.datasets.profiling import table_from_frame
from lakeops.datasets.versions import validate_dataset_name
from lakeops.errors import DataQualityError, InvalidArgumentError, NotFoundError
from lakeops.lineage.edges import now_us
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.lineage_state import SuiteState, ValidationState
from lakeops.stores.state import TrackingState

log = logging.getLogger(__name__)

_SUITE_NAME = re.compile(r"^[\w.\-]{1,200}$")
MAX_EXPECTATIONS = 500
_GX_LOCK = threading.Lock()


def _gx() -> Any:
    """great-expectations, imported on first use with its analytics off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations

    return great_expectations


def preload_in_background() -> threading.Thread:
    """Import great-expectations in a daemon thread, so the first suite or validation need not wait.

    ``lakeops serve`` calls this once it serves: the import takes seconds (~8 s on 2 cores), and
    done inside the first request it made that request look like a hung server.
    """

    def load() -> None:
        started = time.perf_counter()
        try:
            _gx()
        except Exception:  # the first suite call reports it properly
            log.warning("great-expectations could not be imported", exc_info=True)
            return
        log.info("great-expectations imported in %.1f s: expectation suites are ready", time.perf_counter() - started)

    thread = threading.Thread(target=load, name="lakeops-preload-gx", daemon=True)
    thread.start()
    return thread


def check_expectations(expectations: object) -> list[dict[str, Any]]:
    """Expectation configurations, each checked by great-expectations.

    Raises:
        InvalidArgumentError: not a list of ``{"type", "kwargs"}`` objects, or great-expectations refuses one.
    """
    if not isinstance(expectations, list) or not expectations:
        raise InvalidArgumentError("Invalid expectation suite: give a non-empty list of expectations")
    if len(expectations) > MAX_EXPECTATIONS:
        raise InvalidArgumentError(f"Invalid expectation suite: at most {MAX_EXPECTATIONS} expectations")
    _gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    clean: list[dict[str, Any]] = []
    for i, item in enumerate(expectations):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise InvalidArgumentError(f"Invalid expectation #{i}: an object with a 'type' and 'kwargs'")
        kwargs = item.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise InvalidArgumentError(f"Invalid expectation #{i} ({item['type']}): 'kwargs' must be an object")
        try:
            ExpectationConfiguration(type=item["type"], kwargs=kwargs).to_domain_obj()
        except Exception as exc:  # great-expectations raises several unrelated types for a bad config
            raise InvalidArgumentError(f"Invalid expectation #{i} ({item['type']}): {exc}") from exc
        clean.append({"type": item["type"], "kwargs": kwargs})
    return clean


def suite_entity(suite: SuiteState) -> dict[str, Any]:
    """A suite as JSON."""
    return {
        "dataset_name": suite.dataset_name,
        "suite_name": suite.suite_name,
        "expectations": suite.expectations,
        "updated_at": suite.changed_at_us // 1000,
    }


def validation_entity(v: ValidationState) -> dict[str, Any]:
    """A validation result as JSON."""
    out = asdict(v)
    out["success"] = out.pop("is_success")
    out["validated_at"] = out.pop("validated_at_us") // 1000
    return out


class QualityService:
    """Attach expectation suites to dataset names; validate dataset versions and keep the results."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(self, store: IcebergStore, datasets: DatasetService, *, actor: str | None = None) -> None:
        self.store = store
        self.datasets = datasets
        self.actor = actor or datasets.actor

    def _change(self, operation: str) -> dict[str, Any]:
        return {
            "changed_at": now_us(),
            "actor": self.actor,
            "operation": operation,
            "writer_id": self.store.writer_id,
            "wal_seq": 0,
        }

    def attach_suite(self, dataset_name: str, suite_name: str, expectations: object) -> dict[str, Any]:
        """Attach (or replace) a named suite on a dataset name. The dataset need not exist yet."""
        dataset_name = validate_dataset_name(dataset_name)
        if not isinstance(suite_name, str) or not _SUITE_NAME.match(suite_name):
            raise InvalidArgumentError(f"Invalid suite name {suite_name!r}: letters, digits, '_', '-', '.'")
        clean = check_expectations(expectations)
        exists = suite_name in self.store.state.lineage.suites.get(dataset_name, {})
        row = {
            "dataset_name": dataset_name,
            "suite_name": suite_name,
            "expectations_json": json.dumps(clean, sort_keys=True),
            "is_deleted": False,
            **self._change("update" if exists else "create"),
        }
        self.store.write(
            lambda _s: {
                EXPECTATION_SUITE_CHANGES.name: pa.RecordBatch.from_pylist(
                    [row], schema=EXPECTATION_SUITE_CHANGES.arrow_schema
                )
            }
        )
        return self.get_suite(dataset_name, suite_name)

    def get_suite(self, dataset_name: str, suite_name: str) -> dict[str, Any]:
        """One attached suite."""
        suite = self.store.state.lineage.suites.get(dataset_name, {}).get(suite_name)
        if suite is None:
            raise NotFoundError(f"No suite {suite_name!r} on dataset {dataset_name!r}")
        return suite_entity(suite)

    def list_suites(self, dataset_name: str) -> list[dict[str, Any]]:
        """The suites attached to a dataset name."""
        return [suite_entity(s) for s in self.store.state.lineage.suites.get(dataset_name, {}).values()]

    def detach_suite(self, dataset_name: str, suite_name: str) -> None:
        """Detach a suite; its past validations stay."""

        def build(state: TrackingState) -> Rows:
            suite = state.lineage.suites.get(dataset_name, {}).get(suite_name)
            if suite is None:
                raise NotFoundError(f"No suite {suite_name!r} on dataset {dataset_name!r}")
            row = {
                "dataset_name": dataset_name,
                "suite_name": suite_name,
                "expectations_json": json.dumps(suite.expectations, sort_keys=True),
                "is_deleted": True,
                **self._change("delete"),
            }
            return {
                EXPECTATION_SUITE_CHANGES.name: pa.RecordBatch.from_pylist(
                    [row], schema=EXPECTATION_SUITE_CHANGES.arrow_schema
                )
            }

        self.store.write(build)

    def validate(self, dataset_version_id: str, suite_name: str | None = None) -> list[dict[str, Any]]:
        """Validate a dataset version against one attached suite (default: every one); stores each result.

        Raises:
            NotFoundError: no such version, or no such suite on its dataset name.
            InvalidArgumentError: the dataset name has no suite, or lakeops cannot read the version's data.
        """
        version = self.store.state.lineage.dataset_versions.get(dataset_version_id)
        if version is None:
            raise NotFoundError(f"No dataset version {dataset_version_id!r}")
        suites = dict(self.store.state.lineage.suites.get(version.dataset_name, {}))
        if suite_name is not None:
            if suite_name not in suites:
                raise NotFoundError(f"No suite {suite_name!r} on dataset {version.dataset_name!r}")
            suites = {suite_name: suites[suite_name]}
        if not suites:
            raise InvalidArgumentError(f"Dataset {version.dataset_name!r} has no expectation suite attached")
        table = self.datasets.read_table(dataset_version_id)
        rows = [self._run_suite(version.dataset_version_id, version.dataset_name, s, table) for s in suites.values()]
        self.store.write(
            lambda _s: {
                VALIDATION_RESULTS.name: pa.RecordBatch.from_pylist(rows, schema=VALIDATION_RESULTS.arrow_schema)
            }
        )
        ids = {r["validation_id"] for r in rows}
        return [
            validation_entity(v)
            for v in self.store.state.lineage.validations.get(dataset_version_id, [])
            if v.validation_id in ids
        ]

    def log_validated_dataframe(
        self, name: str, frame: Any, *, run_id: str | None = None, direction: str = "input"
    ) -> dict[str, Any]:
        """Validate a DataFrame against every suite attached to ``name`` first; log it only if all pass.

        The validation results are stored with the new version. A failure stores nothing.

        Raises:
            DataQualityError: an expectation failed (the details list the failed expectations).
            InvalidArgumentError: no suite is attached to ``name``.
        """
        name = validate_dataset_name(name)
        suites = list(self.store.state.lineage.suites.get(name, {}).values())
        if not suites:
            raise InvalidArgumentError(f"Dataset {name!r} has no expectation suite attached")
        table = table_from_frame(frame)
        rows = [self._run_suite("", name, s, table) for s in suites]
        failed = [r for r in rows if not r["is_success"]]
        if failed:
            problems = [
                {"suite_name": r["suite_name"], "type": e["type"], "kwargs": e["kwargs"], "result": e["result"]}
                for r in failed
                for e in json.loads(r["results_json"])
                if not e["success"]
            ]
            raise DataQualityError(
                f"Dataset {name!r} failed {len(problems)} expectation(s): "
                + ", ".join(f"{p['type']}({p['kwargs'].get('column', '')})" for p in problems[:5]),
                details={"failed": problems},
            )
        version = self.datasets.log_dataframe(name, table, run_id=run_id, direction=direction)
        for row in rows:
            row["dataset_version_id"] = version["dataset_version_id"]
        self.store.write(
            lambda _s: {
                VALIDATION_RESULTS.name: pa.RecordBatch.from_pylist(rows, schema=VALIDATION_RESULTS.arrow_schema)
            }
        )
        return version

    def validations(self, dataset_version_id: str) -> list[dict[str, Any]]:
        """Every validation of a dataset version, oldest first."""
        if dataset_version_id not in self.store.state.lineage.dataset_versions:
            raise NotFoundError(f"No dataset version {dataset_version_id!r}")
        return [validation_entity(v) for v in self.store.state.lineage.validations.get(dataset_version_id, [])]

    def _run_suite(self, version_id: str, dataset_name: str, suite: SuiteState, table: pa.Table) -> dict[str, Any]:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        frame = table.to_pandas()
        with _GX_LOCK:  # one ephemeral context per call; GX's global config is not thread-safe
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no bars in service logs
            source = context.data_sources.add_pandas("lakeops")
            asset = source.add_dataframe_asset("dataset")
            batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
            gx_suite = gx.ExpectationSuite(name=suite.suite_name)
            for item in suite.expectations:
                gx_suite.add_expectation(ExpectationConfiguration(**item).to_domain_obj())
            result = batch.validate(gx_suite).to_json_dict()
        per_expectation = [
            {
                "type": r["expectation_config"]["type"],
                "kwargs": {k: v for k, v in r["expectation_config"]["kwargs"].items() if k != "batch_id"},
                "success": bool(r["success"]),
                "result": r.get("result") or {},
                "exception": (r.get("exception_info") or {}).get("exception_message"),
            }
            for r in result["results"]
        ]
        return {
            "validation_id": uuid.uuid4().hex,
            "dataset_version_id": version_id,
            "dataset_name": dataset_name,
            "suite_name": suite.suite_name,
            "is_success": bool(result["success"]),
            "statistics_json": json.dumps(result["statistics"], default=str),
            "results_json": json.dumps(per_expectation, default=str),
            "validated_at": now_us(),
            "actor": self.actor,
        }
