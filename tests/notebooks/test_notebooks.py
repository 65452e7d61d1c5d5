"""The notebooks in notebooks/ run headless (nbclient + ipykernel) against the embedded default,
and what they show is checked: tables, run cards and real PNG charts."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # a kernel and a real training run each: left out of `make test-quick`

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PNG = b"\x89PNG\r\n\x1a\n"


def _execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run a notebook in a fresh kernel with LAKEOPS_HOME in ``tmp_path``; outputs by cell tag."""
    for key in [k for k in os.environ if k.startswith("LAKEOPS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LAKEOPS_HOME", str(tmp_path / "lake"))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    by_tag: dict[str, Any] = {}
    for cell in notebook.cells:
        for tag in cell.metadata.get("tags", []):
            by_tag[tag] = cell.outputs
    return by_tag


def _data(outputs: list[Any], mime: str) -> str:
    found = [
        o["data"][mime]
        for o in outputs
        if o.get("output_type") in ("execute_result", "display_data") and mime in o.get("data", {})
    ]
    assert found, f"no {mime} output in {outputs}"
    return str(found[-1])


def _stdout(outputs: list[Any]) -> str:
    return "".join(o["text"] for o in outputs if o.get("output_type") == "stream" and o["name"] == "stdout")


def _check_png(outputs: list[Any]) -> None:
    png = base64.b64decode(_data(outputs, "image/png"))
    assert png.startswith(PNG)
    assert len(png) > 10_000  # a drawn chart, not an empty canvas


def best_run_id(out: dict[str, Any]) -> str:
    """The run id in the best run's card."""
    found = re.search(r"<th[^>]*>run_id</th><td[^>]*>([0-9a-f]{32})</td>", _data(out["best"], "text/html"))
    assert found is not None
    return found.group(1)


def test_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _execute("quickstart.ipynb", tmp_path, monkeypatch)

    assert "Client(embedded, file://" in _data(out["connect"], "text/plain")
    assert str(tmp_path / "lake") in _data(out["connect"], "text/plain")
    assert _stdout(out["train"]) == "logged 6 runs\ntraining data: breast-cancer-train, 398 rows, 1 version\n"

    table = _data(out["runs"], "text/html")
    assert "shape: (6, 5)" in table
    assert table.count("gbm-lr") == 6
    accuracies = [float(a) for a in re.findall(r"<td>(0\.9\d+)</td>", table)]
    assert len(accuracies) == 6 and accuracies == sorted(accuracies, reverse=True)

    best = re.fullmatch(r"best run: (gbm-lr[\d.]+-d\d) val_accuracy=(0\.\d{4})\n", _stdout(out["best"]))
    assert best is not None, _stdout(out["best"])
    card = _data(out["best"], "text/html")
    assert f"Run {best.group(1)}" in card
    assert "FINISHED" in card and "val_accuracy" in card and "learning_rate" in card

    _check_png(out["curves"])
    _check_png(out["params"])

    history = _data(out["history"], "text/plain")
    assert "shape: (6, 4)" in history
    assert re.findall(r"┆ (\d+)\s+┆", history) == ["60"] * 6  # every run logged all 60 boosting stages

    sql = _data(out["sql"], "text/html")
    assert "shape: (6, 6)" in sql
    assert sql.count("gbm-lr") == 6
    rows = re.findall(
        r"<tr><td>&quot;(gbm-lr[\d.]+-d\d)&quot;</td><td>&quot;[\d.]+&quot;</td><td>&quot;\d&quot;</td>"
        r"<td>(0\.\d+)</td><td>(\d+)</td><td>(0\.\d+)</td></tr>",
        sql,
    )
    assert len(rows) == 6, sql
    assert [float(r[1]) for r in rows] == sorted((float(r[1]) for r in rows), reverse=True)
    assert float(rows[0][1]) == pytest.approx(float(best.group(2)), abs=1e-4)
    assert all(0 <= int(r[2]) < 60 for r in rows)

    reloaded = _stdout(out["reload"])
    assert reloaded == f"reloaded model val_accuracy={best.group(2)}\n"  # the stored artifact is the best model

    # The gate refuses `production` until the training data is validated, then lets it through.
    registered, refused = _stdout(out["register"]).splitlines()
    assert registered == "registered breast-cancer-gbm v1 with aliases ['champion']"
    assert re.fullmatch(
        r"production refused: dataset 'breast-cancer-train' version [0-9a-f]{32} was never validated: "
        r"no expectation suite is attached to its dataset name",
        refused,
    ), refused
    validation = _data(out["validate"], "text/html")
    assert "shape: (1, 5)" in validation
    assert re.search(r"<td>&quot;basic&quot;</td><td>true</td><td>4</td><td>&quot;&quot;</td>", validation), validation
    card = _data(out["promote"], "text/html")
    assert "Model breast-cancer-gbm v1" in card
    assert "champion, production" in card
    assert best_run_id(out) in card


def test_lineage_and_quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _execute("lineage_and_quality.ipynb", tmp_path, monkeypatch)

    assert str(tmp_path / "lake") in _data(out["connect"], "text/plain")
    delivered = re.fullmatch(
        r"monday: version ([0-9a-f]{32}), 178 rows\ntuesday: version ([0-9a-f]{32}), 198 rows\n",
        _stdout(out["datasets"]),
    )
    assert delivered is not None, _stdout(out["datasets"])
    monday, tuesday = delivered.groups()
    assert monday != tuesday
    versions = _data(out["datasets"], "text/plain")
    assert "shape: (2, 6)" in versions
    assert re.findall(r"┆ dataframe\s+┆ (\d+)\s+┆", versions) == ["178", "198"]
    card = _data(out["card"], "text/html")
    assert "Dataset wine" in card and tuesday in card and ">198<" in card and ">proline<" in card

    assert _stdout(out["suite"]) == "suite 'sanity' on 'wine': 3 expectations\n"
    passed = _data(out["validate-good"], "text/html")
    assert "shape: (1, 5)" in passed
    assert "<td>&quot;sanity&quot;</td><td>true</td><td>3</td><td>&quot;&quot;</td>" in passed
    failures = "expect_column_values_to_be_between(alcohol), expect_column_values_to_not_be_null(proline)"
    assert _stdout(out["validate-bad"]) == f"failed: {failures}\n"
    assert "<td>&quot;sanity&quot;</td><td>false</td><td>3</td>" in _data(out["validate-bad"], "text/html")
    assert _stdout(out["door"]) == f"Dataset 'wine' failed 2 expectation(s): {failures}\nversions of wine: 2\n"

    reason = (
        f"dataset 'wine' version {tuesday} failed its latest validation against suite 'sanity' "
        "(2 of 3 expectations failed)"
    )
    assert _stdout(out["train"]) == f"train-on-monday: allowed=True\ntrain-on-tuesday: allowed=False {reason}\n"
    assert _stdout(out["gate"]) == f"v1 refused: {reason}\n"
    production = _data(out["gate"], "text/html")
    assert "Model wine-classifier v2" in production and ">production<" in production

    assert "nodes=5, edges=4" in _data(out["deploy"], "text/plain")
    lineage = _data(out["deploy"], "text/html")
    assert "Lineage of deployment" in lineage
    assert monday in lineage and tuesday not in lineage  # the deployed model was trained on Monday's data
    nodes = _data(out["upstream"], "text/plain")
    assert "shape: (5, 4)" in nodes
    assert re.findall(r"│ (\w+)\s+┆ \S+\s+┆ (\d) +┆ (\S+)\s+│", nodes) == [
        ("deployment", "0", "null"),
        ("model_version", "1", "null"),
        ("run", "2", "train-on-monday"),
        ("dataset_version", "3", "wine"),
        ("run", "4", "ingest"),
    ]
    assert _stdout(out["impact"]) == "runs: ['train-on-tuesday']\nmodel versions: ['wine-classifier/1']\n"

    sql = _data(out["sql"], "text/plain")
    assert "shape: (2, 4)" in sql
    assert re.findall(r"│ (\d+)\s+┆ (\w+)\s+┆ (\w+)\s+┆ ([^│]+?)\s+│", sql) == [
        ("178", "sanity", "true", "wine-classifier v2 @production"),
        ("198", "sanity", "false", "wine-classifier v1 @candidate"),
    ]
