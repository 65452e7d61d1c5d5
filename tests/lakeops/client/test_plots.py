"""Charts: axes chosen for the data (log, integer ticks), one colour per run, smoothing, and how
they show in a real Jupyter kernel (one PNG, a text line, no widget warning)."""

from __future__ import annotations

import math

import nbformat
import polars as pl
import pytest
from nbclient import NotebookClient

from lakeops.client.plots import Chart, metric_curves, params_against, smooth
from lakeops.errors import InvalidArgumentError

PNG = b"\x89PNG\r\n\x1a\n"


def _runs() -> pl.DataFrame:
    """Six runs of a sweep as ``client.runs`` returns them: params as text, latest metrics as floats."""
    lrs, depths = ["0.001", "0.01", "0.1"], ["3", "6"]
    rows = [
        {
            "run_id": f"{i:032x}",
            "run_name": f"lr{lr}-d{depth}",
            "params.lr": lr,
            "params.depth": depth,
            "params.optimizer": "adam" if i % 2 else "sgd",
            "metrics.acc": 0.5 + i / 20,
        }
        for i, (lr, depth) in enumerate((lr, d) for lr in lrs for d in depths)
    ]
    return pl.DataFrame(rows)


def _history(runs: int = 3, steps: int = 100) -> pl.DataFrame:
    rows = [
        {"run_id": f"run{r}", "key": "loss", "step": s, "timestamp": s, "value": math.exp(-s / (10 + r))}
        for r in range(runs)
        for s in range(steps)
    ]
    return pl.DataFrame(rows)


def test_params_get_axes_that_fit_their_values() -> None:
    chart = params_against(_runs(), ["lr", "depth", "optimizer"], "acc")
    lr_axes, depth_axes, optimizer_axes = chart.figure.axes[:3]
    assert lr_axes.get_xscale() == "log"  # 0.001 .. 0.1: decades apart
    assert lr_axes.get_xlabel() == "lr (log)"
    assert depth_axes.get_xscale() == "linear"
    chart.figure.canvas.draw()
    ticks = depth_axes.get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)  # no 3.5 for an integer param
    assert [t.get_text() for t in optimizer_axes.get_xticklabels()] == ["adam", "sgd"]


def test_each_run_has_its_own_colour_and_a_label() -> None:
    runs = _runs()
    chart = params_against(runs, ["lr", "depth"], "acc")
    for axes in chart.figure.axes[:2]:
        (points,) = axes.collections
        colours = {tuple(c) for c in points.get_facecolors()}
        assert len(colours) == runs.height  # six runs, six colours
    (legend,) = chart.figure.legends
    assert [t.get_text() for t in legend.get_texts()] == runs["run_name"].to_list()


def test_metric_curves_log_axis_and_smoothing() -> None:
    labels = {"run0": "a", "run1": "b", "run2": "c"}
    history = _history()
    auto = metric_curves(history, "loss", labels=labels)
    assert auto.figure.axes[0].get_yscale() == "log"  # exp(-s/10) spans decades
    linear = metric_curves(history, "loss", labels=labels, log_y=False)
    assert linear.figure.axes[0].get_yscale() == "linear"
    smoothed = metric_curves(history, "loss", labels=labels, smoothing=0.9)
    lines = smoothed.figure.axes[0].get_lines()
    assert len(lines) == 6  # per run: the raw curve, faint, and the smoothed one
    raw, smooth_line = lines[0], lines[1]
    assert raw.get_alpha() == pytest.approx(0.25)
    assert list(smooth_line.get_ydata()) == pytest.approx(smooth(list(raw.get_ydata()), 0.9))
    assert raw.get_color() == smooth_line.get_color() != lines[2].get_color()
    assert [t.get_text() for t in smoothed.figure.axes[0].get_legend().get_texts()] == ["a", "b", "c"]
    with pytest.raises(InvalidArgumentError, match="smoothing must be at least 0 and below 1"):
        metric_curves(history, "loss", labels=labels, smoothing=1.0)
    negative = history.with_columns(pl.col("value") - 0.5)
    with pytest.raises(InvalidArgumentError, match="log_y needs positive values"):
        metric_curves(negative, "loss", labels=labels, log_y=True)
    assert metric_curves(negative, "loss", labels=labels).figure.axes[0].get_yscale() == "linear"


def test_smoothing_is_an_exponential_moving_average_debiased_at_the_start() -> None:
    assert smooth([1.0, 1.0, 1.0], 0.6) == pytest.approx([1.0, 1.0, 1.0])
    assert smooth([0.0, 10.0], 0.5) == pytest.approx([0.0, 5 / 0.75])
    assert smooth([3.0, 4.0], 0.0) == [3.0, 4.0]


def test_a_chart_shows_as_one_png_with_a_text_line() -> None:
    chart = params_against(_runs(), ["lr"], "acc")
    bundle = chart._repr_mimebundle_()
    assert set(bundle) == {"image/png", "text/plain"}
    assert bundle["image/png"][:8] == PNG
    assert bundle["text/plain"] == repr(chart) == "<lakeops Chart: acc against lr, 6 runs>"
    assert isinstance(chart, Chart) and chart.to_svg().lstrip().startswith("<?xml")


def test_in_a_jupyter_kernel_a_chart_is_an_image_and_bars_do_not_warn(tmp_path) -> None:  # type: ignore[no-untyped-def]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "import polars as pl\n"
            "from lakeops.client.plots import metric_curves\n"
            "history = pl.DataFrame({'run_id': ['r'] * 3, 'key': ['loss'] * 3, 'step': [0, 1, 2],\n"
            "                        'timestamp': [0, 1, 2], 'value': [1.0, 0.5, 0.25]})\n"
            "metric_curves(history, 'loss', labels={'r': 'run'})"
        ),
        nbformat.v4.new_code_cell(
            "from lakeops.progress import progress_bar\n"
            "with progress_bar(3, desc='upload', enabled=True) as bar:\n"
            "    bar.update(3)"
        ),
    ]
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    chart_outputs = notebook.cells[0].outputs
    assert len(chart_outputs) == 1  # one display, not an image and then a repr line
    data = chart_outputs[0]["data"]
    assert set(data) == {"image/png", "text/plain"}
    assert data["text/plain"] == "<lakeops Chart: loss by step, 1 runs>"
    bar_text = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert "upload" in bar_text and "3/3" in bar_text
    assert "IProgress not found" not in bar_text and "ipywidgets" not in bar_text
