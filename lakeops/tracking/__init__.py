"""Tracking: experiments, runs, params, metrics, tags, run inputs and outputs, and logged models, with
MLflow's rules.

Every change is an append-only row (``experiment_changes``, ``run_changes``, ``tag_changes``,
``logged_model_changes``; ``params`` and ``metrics`` are immutable facts). Modules: ``service``
(``TrackingService``, composed of the parts below), ``core`` (store, actor, change rows, lookups),
``experiments``, ``runs``, ``run_data`` (params, metrics, tags, metric history), ``inputs``,
``logged_models``, ``search`` and ``validation`` (MLflow's names and limits).
"""

from lakeops.tracking.service import TrackingService

__all__ = ["TrackingService"]
