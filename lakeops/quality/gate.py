"""The quality gate for protected model aliases: were the version's training datasets validated, and did they pass?

``QualityGate`` satisfies the registry's ``AliasGate`` protocol structurally (it is not imported:
the registry calls ``check_model_version`` and refuses the alias when reasons come back).

The training datasets of a model version are the dataset versions linked as inputs (lineage
edges ``dataset_version -input-> run``, which MLflow's ``log_input``, lakeops' dataset logging
and OpenLineage events all write) of its source run, and of the source run of its logged model.
For each, every suite attached to its dataset name must have validated that version, and the
latest such validation must have passed. A dataset version whose name has no suite at all was
never validated, which is also a reason.

A version with no training datasets recorded passes by default: the gate vouches for the data
it knows of and cannot fail data it never saw, and models registered from outside lakeops'
lineage (a plain file, an older run) stay promotable. ``require_datasets=True`` makes it strict:
then "no training datasets recorded" is a reason too.
"""

from __future__ import annotations

from lakeops.stores.iceberg import IcebergStore


class QualityGate:
    """Reasons a model version must not get a protected alias; empty when it may."""

    def __init__(self, store: IcebergStore, *, require_datasets: bool = False) -> None:
        self.store = store
        self.require_datasets = require_datasets

    def training_datasets(self, *, source_run_id: str | None, model_id: str | None) -> list[str]:
        """Ids of the dataset versions the model version was trained on, in the order found."""
        state = self.store.state
        runs: list[str] = []
        if source_run_id:
            runs.append(source_run_id)
        model = state.logged_models.get(model_id) if model_id else None
        if model is not None and model.source_run_id and model.source_run_id not in runs:
            runs.append(model.source_run_id)
        found: list[str] = []
        for run_id in runs:
            for edge in state.lineage.upstream.get(("run", run_id), ()):
                if edge.relation == "input" and edge.other[0] == "dataset_version" and edge.other[1] not in found:
                    found.append(edge.other[1])
        return found

    def check_model_version(self, *, source_run_id: str | None, model_id: str | None) -> list[str]:
        """Reasons the version must not get a protected alias; empty when it may."""
        state = self.store.state.lineage
        datasets = self.training_datasets(source_run_id=source_run_id, model_id=model_id)
        if not datasets:
            if self.require_datasets:
                return [
                    f"no training datasets are recorded for run {source_run_id or '-'} / logged model {model_id or '-'}"
                ]
            return []
        reasons: list[str] = []
        for version_id in datasets:
            version = state.dataset_versions.get(version_id)
            label = (
                f"dataset {version.dataset_name!r} version {version_id}" if version else f"dataset version {version_id}"
            )
            suites = state.suites.get(version.dataset_name, {}) if version is not None else {}
            if not suites:
                reasons.append(f"{label} was never validated: no expectation suite is attached to its dataset name")
                continue
            history = state.validations.get(version_id, [])
            for suite_name in sorted(suites):
                runs = [v for v in history if v.suite_name == suite_name]
                if not runs:
                    reasons.append(f"{label} was never validated against suite {suite_name!r}")
                elif not runs[-1].is_success:
                    stats = runs[-1].statistics
                    reasons.append(
                        f"{label} failed its latest validation against suite {suite_name!r} "
                        f"({stats.get('unsuccessful_expectations', '?')} of "
                        f"{stats.get('evaluated_expectations', '?')} expectations failed)"
                    )
        return reasons
