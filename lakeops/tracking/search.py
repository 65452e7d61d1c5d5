"""Run search and grouping: MLflow's filter language over the columnar run index, now or as of a past time
(``lakeops/services/runs_as_of.py``), with pages pinned so that paging is stable.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from datetime import datetime

from lakeops.entities import LifecycleStage, RunPage, ViewType
from lakeops.errors import InvalidArgumentError
from lakeops.search import (
    RankedRuns,
    RunGroup,
    group_run_index,
    paginate,
    parse_filter,
    parse_group_by,
    parse_order_by,
    search_run_index,
    validate_run_filter,
)
from lakeops.services.runs_as_of import PastRuns, as_of_ms
from lakeops.stores.run_index import RunIndex
from lakeops.stores.state import RunState
from lakeops.tracking.core import TrackingCore
from lakeops.tracking.runs import run_entity
from lakeops.tracking.validation import check_max_results

_WARM_MIN_RUNS = 10_000  # below this, building a column on first use costs a few ms
_WARM_KEYS = 4  # metrics and params each: the portal's runs table shows the first four of each


class SearchMixin(TrackingCore):
    """Run search and grouping over the columnar run index, now or as of a past time; pages pinned."""

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        run_view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        as_of: datetime | None = None,
    ) -> RunPage:
        """Runs of the experiments matching MLflow's filter language, ordered, paged and pinned.

        With ``as_of``, the runs as they stood then (their status, params, tags and latest metrics at the
        snapshots current at that time; see ``lakeops/services/runs_as_of.py``).

        Raises:
            InvalidArgumentError: the filter or order is not valid, or ``as_of`` is older than the kept snapshots.
        """
        check_max_results(max_results)
        comparisons = parse_filter(filter_string)
        order = parse_order_by(order_by)
        validate_run_filter(comparisons)
        experiment_ids = [str(e) for e in experiment_ids]
        when = None if as_of is None else as_of_ms(as_of)
        fingerprint = hashlib.sha1(
            json.dumps(
                [sorted(experiment_ids), filter_string, run_view_type.value, list(order_by or []), when]
            ).encode(),
            usedforsecurity=False,
        ).hexdigest()[:16]
        stages = {stage.value for stage in LifecycleStage if run_view_type.admits(stage)}
        past = None if as_of is None else self._runs_as_of(experiment_ids, as_of)
        index = self.state.run_index if past is None else past.index

        def results_now() -> RankedRuns:
            return search_run_index(index, experiment_ids, stages, comparisons, order)

        page_ids, nxt = paginate(
            results_now, fingerprint=fingerprint, max_results=max_results, page_token=page_token, pins=self._pins
        )
        if past is None:
            found = self.state.runs.get_many(page_ids)
        else:
            found = [past.runs[i] for i in page_ids if i in past.runs]
        if past is None and page_token is None:
            self._warm_columns(index, found)
        return RunPage(runs=[run_entity(run) for run in found], next_page_token=nxt)

    def _warm_columns(self, index: RunIndex, runs: Sequence[RunState]) -> None:
        """Build, in the background, the search columns a first page suggests are next: the first metrics and
        params of its runs by name (what the portal's runs table shows and sorts on by default).

        A column is built on first use (a pass over every run: ~50 ms of CPU at 100k runs, 0.2 s on a loaded
        box), which the first sort on a key paid; once a large index's first page is out, it is built now.
        """
        if index.size < _WARM_MIN_RUNS or self._warming.locked():
            return
        metrics = sorted({k for r in runs for k in r.metrics})[:_WARM_KEYS]
        params = sorted({k for r in runs for k in r.params})[:_WARM_KEYS]
        wanted = [("metric", key) for key in metrics] + [("param", key) for key in params]
        cold = [(entity, key) for entity, key in wanted if not index.has_column(entity, key)]
        if not cold or not self._warming.acquire(blocking=False):
            return

        def build() -> None:
            try:
                for entity, key in cold:
                    index.column(entity, key)
            finally:
                self._warming.release()

        threading.Thread(target=build, name="lakeops-warm-columns", daemon=True).start()

    def _runs_as_of(self, experiment_ids: Sequence[str], as_of: datetime) -> PastRuns:
        if self._past is None:
            raise InvalidArgumentError("Searching runs as of a past time needs the lake's SQL engine (open a Lake)")
        return self._past.get(experiment_ids, as_of)

    def group_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        group_by: str,
        filter_string: str | None = None,
        run_view_type: ViewType = ViewType.ACTIVE_ONLY,
        metrics: Sequence[str] = (),
        as_of: datetime | None = None,
    ) -> list[RunGroup]:
        """The runs a search would find, grouped by one param, tag or attribute (``params.lr``): each
        group's value (None: the runs without it), its number of runs and, for each of ``metrics``, the
        count, min, mean and max of its runs' latest values. Groups come in value order (numeric when
        every value is a number), the runs without the key last. With ``as_of``, the runs as they stood then.

        Raises:
            InvalidArgumentError: the filter, the group key or a metric key is not valid, or ``as_of`` is
                older than the kept snapshots.
        """
        entity, key = parse_group_by(group_by)
        comparisons = parse_filter(filter_string)
        stages = {stage.value for stage in LifecycleStage if run_view_type.admits(stage)}
        experiment_ids = [str(e) for e in experiment_ids]
        return group_run_index(
            self.state.run_index if as_of is None else self._runs_as_of(experiment_ids, as_of).index,
            experiment_ids,
            stages,
            comparisons,
            entity=entity,
            key=key,
            metrics=metrics,
        )
