"""Charts of runs: metric curves across runs, and params against a metric.

Why matplotlib: it renders inline in every notebook front end and to PNG with no browser, no
JavaScript runtime and no network (its Agg renderer is pure C++), it is already in most data
science environments, and it draws a few thousand points per curve without down-sampling.
Altair/Vega-Lite would need ``vl-convert`` (a ~100 MB binary) for headless PNGs and caps
inline data at 5,000 rows by default. Figures are built with ``matplotlib.figure.Figure``
directly (no ``pyplot``), so nothing touches global state or needs a display.

A ``Chart`` shows itself in Jupyter as one PNG (``_repr_mimebundle_``, with a text line instead
of ``<Chart at 0x...>``) and saves with ``chart.save("x.png")`` (or ``.svg``).
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

    def __init__(self, figure: Figure, *, description: str = "chart") -> None:
        self.figure = figure
        self.description = description

    def to_png(self, dpi: int = 100) -> bytes:
        """The chart as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()

    def to_svg(self) -> str:
        """The chart as an SVG document (vector; large for curves of thousands of points)."""
        buffer = io.StringIO()
        self.figure.savefig(buffer, format="svg")
        return buffer.getvalue()

    def save(self, path: str | Path, dpi: int = 100) -> Path:
        """Write the chart as PNG, or SVG for a ``.svg`` path; returns the path."""
        target = Path(path)
        if target.suffix.lower() == ".svg":
            target.write_text(self.to_svg())
        else:
            target.write_bytes(self.to_png(dpi))
        return target

    def __repr__(self) -> str:
        return f"<lakeops Chart: {self.description}>"

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def _repr_mimebundle_(
        self, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """What Jupyter shows: the PNG, drawn once, with a text line for front ends without images.

        IPython asks an object for every format it has a ``_repr_*_`` for and the front end shows
        the richest, so a chart that offered PNG, SVG and HTML would be drawn three times per
        display; the bundle offers one image. The text is the chart's description, never the
        object's address.
        """
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        if (include is None or "image/png" in include) and not (exclude and "image/png" in exclude):
            bundle["image/png"] = self.to_png()
        return bundle


def _colours(n: int) -> list[Any]:
    """``n`` distinguishable colours: tab10 up to 10, tab20 up to 20, then a continuous map."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["viridis"](i / max(n - 1, 1)) for i in range(n)]


def spans_decades(values: Sequence[float], *, decades: float = 1.0) -> bool:
    """Whether positive values span at least ``decades`` powers of ten (a log axis reads better)."""
    finite = [v for v in values if v == v and v not in (float("inf"), float("-inf"))]
    if len(set(finite)) < 2 or min(finite) <= 0:
        return False
    return max(finite) / min(finite) >= 10**decades


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start (0 = none, < 1)."""
    if not 0 <= weight < 1:
        raise InvalidArgumentError(f"smoothing must be at least 0 and below 1, got {weight}")
    out: list[float] = []
    last = 0.0
    for i, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**i) if weight else value)
    return out


def metric_curves(
    history: pl.DataFrame,
    key: str,
    *,
    labels: dict[str, str],
    title: str | None = None,
    log_y: bool | None = None,
    smoothing: float = 0.0,
) -> Chart:
    """One line per run: ``value`` against ``step`` for metric ``key``.

    ``log_y``: a log value axis (default: when the values are positive and span two decades or
    more, as a loss often does). ``smoothing`` (0 to below 1): an exponential moving average as in
    TensorBoard and MLflow's UI, drawn over the raw curve, which stays faint behind it.
    """
    from matplotlib.ticker import MaxNLocator

    figure = _figure(7, 4)
    axes = figure.add_subplot()
    rows = history.filter(history["key"] == key)
    if rows.height == 0:
        raise InvalidArgumentError(f"No points of metric {key!r} in these runs")
    groups = list(rows.sort("step").group_by(["run_id"], maintain_order=True))
    colours = _colours(len(groups))
    for colour, ((run_id,), part) in zip(colours, groups, strict=True):
        steps, values = part["step"].to_list(), part["value"].to_list()
        label = labels.get(str(run_id), str(run_id)[:8])
        if smoothing:
            axes.plot(steps, values, color=colour, alpha=0.25, linewidth=1)
            axes.plot(steps, smooth(values, smoothing), color=colour, label=label, linewidth=1.6)
        else:
            axes.plot(steps, values, color=colour, label=label, linewidth=1.4)
    if log_y is None:
        log_y = spans_decades(rows["value"].to_list(), decades=2)
    if log_y:
        if rows["value"].min() <= 0:  # type: ignore[operator]
            raise InvalidArgumentError(f"log_y needs positive values; {key!r} has values <= 0")
        axes.set_yscale("log")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("step")
    axes.set_ylabel(key + (" (log)" if log_y else ""))
    axes.set_title(title or f"{key} by step" + (f", smoothed {smoothing:g}" if smoothing else ""))
    axes.grid(alpha=0.3, which="both" if log_y else "major")
    if len(groups) <= 20:
        axes.legend(fontsize=8)
    return Chart(figure, description=f"{key} by step, {len(groups)} runs")


def params_against(runs: pl.DataFrame, params: Sequence[str], metric: str, *, title: str | None = None) -> Chart:
    """One scatter per param: each run's param value against its latest ``metric``.

    Every run has one colour, the same in each panel, named in one legend (run name, up to 20
    runs). Numeric params are placed on a numeric axis: integer params get integer ticks, and
    positive params spanning a decade or more (a learning rate) a log axis. Others get one
    position per distinct value.
    """
    import polars as pl
    from matplotlib.ticker import MaxNLocator

    metric_column = f"metrics.{metric}"
    if metric_column not in runs.columns:
        raise InvalidArgumentError(f"No run has metric {metric!r}")
    for param in params:
        if f"params.{param}" not in runs.columns:
            raise InvalidArgumentError(f"No run has param {param!r}")
    names = runs["run_name"].to_list() if "run_name" in runs.columns else [None] * runs.height
    ids = runs["run_id"].to_list() if "run_id" in runs.columns else [str(i) for i in range(runs.height)]
    labels = [str(name) if name else str(run_id)[:8] for name, run_id in zip(names, ids, strict=True)]
    colours = _colours(runs.height)
    figure = _figure(4 * len(params) + (1.6 if runs.height <= 20 else 0), 3.6)
    axes_list: Any = figure.subplots(1, len(params), squeeze=False)[0]
    for axes, param in zip(axes_list, params, strict=True):
        column = f"params.{param}"
        keep = runs.select(pl.col(column).is_not_null() & pl.col(metric_column).is_not_null()).to_series().to_list()
        raw = [v for v, k in zip(runs[column].to_list(), keep, strict=True) if k]
        ys = [v for v, k in zip(runs[metric_column].to_list(), keep, strict=True) if k]
        point_colours = [c for c, k in zip(colours, keep, strict=True) if k]
        numeric = pl.Series(raw, dtype=pl.String).cast(pl.Float64, strict=False)
        xs: list[Any]
        if raw and numeric.null_count() == 0:
            xs = numeric.to_list()
            if spans_decades(xs):
                axes.set_xscale("log")
            elif all(float(x).is_integer() for x in xs):
                axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            categories = sorted(set(raw))
            xs = [categories.index(v) for v in raw]
            axes.set_xticks(range(len(categories)), categories)
        axes.scatter(xs, ys, c=point_colours, s=60, edgecolors="black", linewidths=0.6, zorder=3)
        axes.set_xlabel(param + (" (log)" if axes.get_xscale() == "log" else ""))
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
    if runs.height <= 20:
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], marker="o", linestyle="", markerfacecolor=c, markeredgecolor="black", label=label)
            for c, label in zip(colours, labels, strict=True)
        ]
        figure.legend(handles=handles, loc="outside right upper", fontsize=8, title="run")
    figure.suptitle(title or f"{metric} against params")
    return Chart(figure, description=f"{metric} against {', '.join(params)}, {runs.height} runs")
