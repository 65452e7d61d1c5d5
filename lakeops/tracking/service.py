"""``TrackingService``: the tracking aggregate's one public service, composed of its parts.

Each part is a class over the shared ``TrackingCore`` (store, actor, clock, change rows, lookups)
in its own module: ``experiments``, ``runs``, ``run_data``, ``inputs``, ``logged_models`` and
``search``. A new tracking operation goes into the part it belongs to; a new part is one more
base class here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lakeops.stores.iceberg import IcebergStore
from lakeops.tracking.core import DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME
from lakeops.tracking.experiments import ExperimentsMixin
from lakeops.tracking.inputs import InputsMixin
from lakeops.tracking.logged_models import LoggedModelsMixin
from lakeops.tracking.run_data import RunDataMixin
from lakeops.tracking.runs import RunsMixin
from lakeops.tracking.search import SearchMixin

if TYPE_CHECKING:
    from lakeops.sql import SqlEngine


class TrackingService(ExperimentsMixin, RunsMixin, RunDataMixin, InputsMixin, LoggedModelsMixin, SearchMixin):
    """The tracking API: what the REST layer, the CLI and the Python client call."""

    def __init__(
        self,
        store: IcebergStore,
        *,
        now_ms: Callable[[], int] | None = None,
        actor: str | None = None,
        sql: Callable[[], SqlEngine] | None = None,
    ) -> None:
        super().__init__(store, now_ms=now_ms, actor=actor, sql=sql)
        if DEFAULT_EXPERIMENT_ID not in store.state.experiments:
            self._create_experiment(DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, None, {}, only_if_missing=True)
