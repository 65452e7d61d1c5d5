"""A run's inputs and outputs (MLflow's ``log_inputs``/``log_outputs``): datasets and logged models, written
with their dataset versions and lineage edges (``lakeops/datasets/run_io.py``) in one atomic write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from catalog.tables import RUN_IO
from lakeops.datasets.run_io import mlflow_io_rows
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.stores.iceberg import Rows
from lakeops.stores.state import TrackingState
from lakeops.tracking.core import TrackingCore, record_batch


class InputsMixin(TrackingCore):
    """A run's inputs and outputs: datasets and logged models, mirrored into the dataset and lineage tables."""

    def log_inputs(
        self, run_id: str, *, datasets: Iterable[Mapping[str, Any]] = (), model_ids: Iterable[str] = ()
    ) -> None:
        """Link datasets (MLflow's DatasetInput: name, digest, source_type, source, schema, profile, tags)
        and logged models to a run as its inputs. The same link twice is one link."""
        datasets = [dict(d) for d in datasets]
        model_ids = [str(m) for m in model_ids]
        rows: list[dict[str, Any]] = []
        for d in datasets:
            if not d.get("name") or not d.get("digest"):
                raise InvalidArgumentError("A dataset input needs a name and a digest")
            rows.append(
                {
                    "kind": "dataset",
                    "dataset_name": str(d["name"]),
                    "dataset_digest": str(d["digest"]),
                    "source_type": d.get("source_type"),
                    "source": d.get("source"),
                    "dataset_schema": d.get("schema"),
                    "profile": d.get("profile"),
                    "tags_json": json.dumps(dict(d.get("tags") or {}), sort_keys=True),
                }
            )
        rows.extend({"kind": "model", "model_id": m} for m in model_ids)
        at_us = self._now_ms() * 1000

        def lineage_rows(state: TrackingState) -> Rows:
            # The same inputs land in the dataset tables and the lineage graph (lakeops/datasets/run_io.py).
            return mlflow_io_rows(
                state, run_id, datasets=datasets, model_inputs=model_ids, actor=self.actor, at_us=at_us
            )

        self._write_io(run_id, "input", rows, extra=lineage_rows)

    def log_outputs(self, run_id: str, models: Iterable[tuple[str, int]]) -> None:
        """Record logged models (with the step they were logged at) as outputs of a run."""
        models = list(models)
        at_us = self._now_ms() * 1000

        def lineage_rows(state: TrackingState) -> Rows:
            outputs = [m for m, _step in models]
            return mlflow_io_rows(state, run_id, model_outputs=outputs, actor=self.actor, at_us=at_us)

        links = [{"kind": "model", "model_id": m, "step": step} for m, step in models]
        self._write_io(run_id, "output", links, extra=lineage_rows)

    def _write_io(
        self,
        run_id: str,
        direction: str,
        links: list[dict[str, Any]],
        *,
        extra: Callable[[TrackingState], Rows] | None = None,
    ) -> None:
        if not links:
            return
        now_us = self._now_ms() * 1000
        names = [f.name for f in RUN_IO.arrow_schema]
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for link in links:
            full = {"run_id": run_id, "direction": direction, "logged_at": now_us, **link}
            for n in names:
                columns[n].append(full.get(n))

        def build(state: TrackingState) -> Rows:
            self._active_run(state, run_id)
            for link in links:
                if link.get("model_id") and link["model_id"] not in state.logged_models:
                    raise NotFoundError(f"Logged model {link['model_id']} not found")
            return {RUN_IO.name: record_batch(RUN_IO, columns), **(extra(state) if extra is not None else {})}

        self.store.write(build)
