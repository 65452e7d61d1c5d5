"""Charts of runs: metric curves across runs, and params against a metric.

Why matplotlib: it renders inline in every notebook front end and to PNG with no browser, no
JavaScript runtime and no network (its Agg renderer is pure C++), it is already in most data
science environments, and it draws a few thousand points per curve without down-sampling.
Altair/Vega-Lite would need ``vl-convert`` (a ~100 MB binary) for headless PNGs and caps
inline data at 5,000 rows by default. Figures are built with ``matplotlib.figure.Figure``
directly (no ``pyplot``), so nothing touches global state or needs a display.

A ``Chart`` shows itself in Jupyter (``_repr_png_``) and saves with ``chart.save("x.png")``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeops.errors import BackendUnavailableError, InvalidArgumentError

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BackendUnavailableError("Charts need matplotlib: pip install 'lakeops[notebook]'") from exc
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


class Chart:
    """A matplotlib figure that displays in notebooks and saves as PNG."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure

    def to_png(self, dpi: int = 100) -> bytes:
        """The chart as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()

    def save(self, path: str | Path, dpi: int = 100) -> Path:
        """Write the chart as a PNG file; returns the path."""
        target = Path(path)
        target.write_bytes(self.to_png(dpi))
        return target

    def _repr_png_(self) -> bytes:
        return self.to_png()


def metric_curves(history: pl.DataFrame, key: str, *, labels: dict[str, str], title: str | None = None) -> Chart:
    """One line per run: ``value`` against ``step`` for metric ``key``."""
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    rows = history.filter(history["key"] == key)
    if rows.height == 0:
        raise InvalidArgumentError(f"No points of metric {key!r} in these runs")
    for (run_id,), part in rows.sort("step").group_by(["run_id"], maintain_order=True):
        axes.plot(part["step"].to_list(), part["value"].to_list(), label=labels.get(str(run_id), str(run_id)[:8]))
    axes.set_xlabel("step")
    axes.set_ylabel(key)
    axes.set_title(title or f"{key} by step")
    axes.grid(alpha=0.3)
    if rows["run_id"].n_unique() <= 20:
        axes.legend(fontsize=8)
    return Chart(figure)


def params_against(runs: pl.DataFrame, params: Sequence[str], metric: str, *, title: str | None = None) -> Chart:
    """One scatter per param: each run's param value against its latest ``metric``.

    Numeric params are placed on a numeric axis; others on one position per distinct value.
    """
    import polars as pl

    metric_column = f"metrics.{metric}"
    if metric_column not in runs.columns:
        raise InvalidArgumentError(f"No run has metric {metric!r}")
    figure = _figure(4 * len(params), 3.6)
    axes_list: Any = figure.subplots(1, len(params), squeeze=False)[0]
    for axes, param in zip(axes_list, params, strict=True):
        column = f"params.{param}"
        if column not in runs.columns:
            raise InvalidArgumentError(f"No run has param {param!r}")
        rows = runs.select(column, metric_column).drop_nulls()
        numeric = rows[column].cast(pl.Float64, strict=False)
        ys = rows[metric_column].to_list()
        if numeric.null_count() == 0:
            xs: list[Any] = numeric.to_list()
        else:
            categories = sorted(set(rows[column].to_list()))
            xs = [categories.index(v) for v in rows[column].to_list()]
            axes.set_xticks(range(len(categories)), categories)
        axes.scatter(xs, ys, alpha=0.8)
        axes.set_xlabel(param)
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        if numeric.null_count() == 0 and len(set(xs)) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 100:
            axes.set_xscale("log")
    figure.suptitle(title or f"{metric} against params")
    return Chart(figure)
