"""The client's one API, embedded and over HTTP: logging, runs as DataFrames, history, artifacts."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import lakeops
from lakeops.client import Client
from lakeops.errors import InvalidArgumentError, NotFoundError


def test_run_logs_everything_and_finishes(client: Client, experiment: str) -> None:
    with client.start_run(experiment, "first", params={"lr": 0.1, "depth": 6}, tags={"team": "growth"}) as run:
        t0 = 1_700_000_000_000
        for step in range(1000):
            run.log_metric("loss", 1 / (step + 1), step=step, timestamp=t0 + step)
        run.log_metrics({"acc": 0.75, "f1": float("nan")}, step=999)
        run.log_param("optimizer", "adam")
        run.set_tags({"stage": "dev"})
    assert run.status == "FINISHED"

    stored = client.get_run(run.run_id)
    assert stored.status == "FINISHED"
    assert stored.end_time is not None
    assert stored.params == {"lr": "0.1", "depth": "6", "optimizer": "adam"}
    assert stored.metrics["loss"] == pytest.approx(1 / 1000)
    assert math.isnan(stored.metrics["f1"])
    assert stored.tags["team"] == "growth"
    assert stored.tags["stage"] == "dev"

    frame = client.runs(experiment)
    assert frame.height == 1
    row = frame.row(0, named=True)
    assert row["run_name"] == "first"
    assert row["status"] == "FINISHED"
    assert row["params.lr"] == "0.1"
    assert row["metrics.acc"] == 0.75
    assert row["tags.stage"] == "dev"
    assert "tags.mlflow.runName" not in frame.columns
    assert frame.schema["start_time"] == pl.Datetime("us", "UTC")

    history = client.metric_history(frame, "loss")
    assert history.columns == ["run_id", "key", "step", "timestamp", "value"]
    assert history["step"].to_list() == list(range(1000))
    assert history["value"].to_list() == pytest.approx([1 / (s + 1) for s in range(1000)])


def test_exception_marks_the_run_failed(client: Client, experiment: str) -> None:
    run = client.start_run(experiment, "boom")

    def train() -> None:
        with run:
            run.log_metric("loss", 1.0, step=0)
            raise RuntimeError("loss diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        train()
    stored = client.get_run(run.run_id)
    assert stored.status == "FAILED"
    assert stored.metrics == {"loss": 1.0}


def test_bad_input_fails_in_the_training_loop(client: Client, experiment: str) -> None:
    with client.start_run(experiment) as run:
        with pytest.raises(InvalidArgumentError, match="Invalid metric name"):
            run.log_metric("a/../b", 1.0)
        with pytest.raises(InvalidArgumentError, match="Invalid param name"):
            run.log_params({"": 1})
        with pytest.raises(ValueError, match="could not convert"):
            run.log_metric("loss", "not a number")  # type: ignore[arg-type]
        run.log_metric("loss", 2.0)
    assert client.get_run(run.run_id).metrics == {"loss": 2.0}
    with pytest.raises(InvalidArgumentError, match="has ended"):
        run.log_metric("other", 1.0)


def test_a_refused_write_is_raised_by_flush_and_the_rest_is_kept(client: Client, experiment: str) -> None:
    run = client.start_run(experiment, params={"lr": 0.1})
    run.log_metric("loss", 1.0, step=0)
    run.log_params({"lr": 0.2})  # params are immutable: refused by the lake, asynchronously
    run.log_metric("loss", 0.5, step=1)
    with pytest.raises(InvalidArgumentError, match="Changing param values is not allowed"):
        run.flush()
    run.flush()  # the error was reported once
    run.end()
    stored = client.get_run(run.run_id)
    assert stored.params == {"lr": "0.1"}
    assert client.metric_history(run.run_id, "loss")["value"].to_list() == [1.0, 0.5]


def test_runs_filter_order_and_history_across_runs(client: Client, experiment: str) -> None:
    ids = {}
    for lr, acc in ((0.001, 0.6), (0.01, 0.9), (0.1, 0.4)):
        with client.start_run(experiment, f"lr{lr}", params={"lr": lr}) as run:
            for step in range(5):
                run.log_metrics({"acc": acc * (step + 1) / 5, "loss": 1 - acc}, step=step)
        ids[lr] = run.run_id

    best = client.runs(experiment, filter="metrics.acc > 0.5", order_by="metrics.acc DESC")
    assert best["run_name"].to_list() == ["lr0.01", "lr0.001"]
    everything = client.runs([experiment], order_by=["params.lr ASC"])
    assert everything["params.lr"].to_list() == ["0.001", "0.01", "0.1"]

    history = client.metric_history([ids[0.01], ids[0.1]], ["acc", "loss"])
    counts = history.group_by("run_id", "key").len().sort("run_id", "key")
    assert counts["len"].to_list() == [5, 5, 5, 5]
    assert set(history["run_id"]) == {ids[0.01], ids[0.1]}

    view = client.experiment(experiment)
    assert len(view.runs) == 3
    assert "lr0.01" in view._repr_html_()
    with pytest.raises(NotFoundError, match="No experiment named"):
        client.runs("no-such-experiment-anywhere")
    with pytest.raises(InvalidArgumentError, match="view must be one of"):
        client.runs(experiment, view="archived")


def test_html_of_a_run_is_escaped(client: Client, experiment: str) -> None:
    with client.start_run(experiment, "html", params={"model": "<gbm>"}) as run:
        run.log_metric("acc", 0.5)
    html = client.get_run(run.run_id)._repr_html_()
    assert "Run html" in html
    assert "&lt;gbm&gt;" in html
    assert "<gbm>" not in html
    assert "0.5" in html


def test_artifacts_upload_with_progress(
    client: Client, experiment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "model.bin"
    payload = bytes(range(256)) * 12_000  # ~3 MB: several chunks
    checkpoint.write_bytes(payload)
    with client.start_run(experiment) as run:
        stored_at = run.log_artifact(checkpoint, "checkpoints", progress=True)
    assert stored_at.endswith(f"{run.run_id}/artifacts/checkpoints/model.bin")
    assert client.read_artifact(stored_at) == payload
    err = capsys.readouterr().err
    assert "uploading model.bin" in err
    assert "100%" in err
    with pytest.raises(InvalidArgumentError, match="No such file"):
        run.log_artifact(tmp_path / "missing.bin")


def test_import_metrics_in_batches_with_a_progress_bar(
    client: Client, experiment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = client.start_run(experiment)
    n = 25_000
    points = pa.table(
        {
            "run_id": [run.run_id] * n,
            "key": ["loss"] * n,
            "value": [float(i) for i in range(n)],
            "timestamp": [1_700_000_000_000 + i for i in range(n)],
            "step": list(range(n)),
        }
    )
    assert client.import_metrics(points, batch_size=10_000, progress=True) == n
    err = capsys.readouterr().err
    assert "importing metrics" in err
    assert f"{n}/{n}" in err
    history = client.metric_history(run.run_id, "loss")
    assert history.height == n
    assert history["value"].sum() == sum(range(n))
    with pytest.raises(InvalidArgumentError, match="lacks columns"):
        client.import_metrics(points.drop_columns(["timestamp"]))
    run.end()


def test_plots_render_real_png_images(client: Client, experiment: str, tmp_path: Path) -> None:
    from matplotlib.image import imread

    for lr in (0.001, 0.01, 0.1):
        with client.start_run(experiment, f"lr{lr}", params={"lr": lr, "kind": "gbm" if lr < 0.05 else "rf"}) as run:
            for step in range(50):
                run.log_metric("loss", math.exp(-lr * step * 10), step=step)
            run.log_metric("acc", 1 - lr)
    runs = client.runs(experiment)
    curves = client.plot_metric(runs, "loss", title="loss curves")
    scatter = client.plot_params(experiment, ["lr", "kind"], "acc")
    for chart, name in ((curves, "curves.png"), (scatter, "scatter.png")):
        path = chart.save(tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert chart._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = imread(path)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400
        assert float(pixels[..., :3].std()) > 0.05  # something was drawn, not a blank canvas
    with pytest.raises(InvalidArgumentError, match="No run has metric"):
        client.plot_params(runs, "lr", "nope")
    with pytest.raises(InvalidArgumentError, match="No points of metric"):
        client.plot_metric(runs, "nope")


def test_connect_refuses_contradictory_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="not both"):
        lakeops.connect("http://127.0.0.1:1", embedded=True)
    with pytest.raises(InvalidArgumentError, match="Not an http"):
        lakeops.connect("ftp://example.org")
    with pytest.raises(InvalidArgumentError, match="needs a URL"):
        lakeops.connect(embedded=False)


def test_experiments_by_name_or_id(client: Client, experiment: str) -> None:
    name = f"team/{experiment}"  # a slash: not a single URL segment
    with client.start_run(name, "a") as run:
        run.log_metric("m", 1.0)
    assert client.experiment_id(name) == run.experiment_id
    assert client.experiment_id(run.experiment_id) == run.experiment_id
    assert client.runs(name)["run_name"].to_list() == ["a"]
    assert client.runs(run.experiment_id)["run_id"].to_list() == [run.run_id]
    frame = client.experiments()
    assert frame.filter(frame["name"] == name)["experiment_id"].to_list() == [run.experiment_id]
    with pytest.raises(NotFoundError, match="No experiment named"):
        client.experiment_id(f"missing-{experiment}")


def test_import_lakeops_stays_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lakeops\n"
        "heavy = ('pyiceberg', 'duckdb', 'polars', 'pyarrow', 'httpx', 'fastapi')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
        "lakeops.connect\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.splitlines() == ["[]", "[]"]


def test_a_closed_client_refuses_more_work(client: Client, experiment: str) -> None:
    run = client.start_run(experiment)
    run.log_metric("a", 1.0)
    client.close()
    assert client.closed
    with pytest.raises(InvalidArgumentError, match="client is closed"):
        run.log_metric("b", 1.0)
    with pytest.raises(InvalidArgumentError, match="client is closed"):
        run.log_params({"x": 1})
    with pytest.raises(InvalidArgumentError, match="client is closed"):
        client.flush()


def test_buffer_bounds_must_be_positive() -> None:
    with pytest.raises(InvalidArgumentError, match="must be positive"):
        lakeops.connect("http://127.0.0.1:1", max_buffered_points=0)


def test_metric_history_downsampled_for_charts(client: Client, experiment: str) -> None:
    with client.start_run(experiment, "long") as run:
        for step in range(5000):
            run.log_metric("wave", 100.0 if step == 2345 else float(step % 10), step=step)
        run.log_metric("wave", float("nan"), step=5000)
    drawn = client.metric_history(run.run_id, "wave", points=100)
    assert 0 < drawn.height <= 100
    assert 2345 in drawn["step"].to_list() and drawn["value"].max() == 100.0
    assert drawn["value"].is_nan().sum() == 0  # NaN cannot be drawn: left out
    zoom = client.metric_history(run.run_id, "wave", points=100, min_step=10, max_step=19)
    assert zoom["step"].to_list() == list(range(10, 20))
    with pytest.raises(InvalidArgumentError, match="points must be between 4 and 100000"):
        client.metric_history(run.run_id, "wave", points=1)


def test_comments_on_a_run(client: Client, experiment: str) -> None:
    with client.start_run(experiment, "discussed") as run:
        run.log_metric("loss", 1.0)
    posted = client.comment(f"run:{run.run_id}", "odd spike, @ana?", author="bo")
    assert posted["mentions"] == ["ana"] and posted["author"] == "bo"
    assert [c["body"] for c in client.comments(f"run:{run.run_id}")] == ["odd spike, @ana?"]
    with pytest.raises(NotFoundError, match="nope"):
        client.comment("run:nope", "x")
