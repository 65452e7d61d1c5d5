"""Checkpoints from the client: log files and directories at steps, list, load latest/step/best,
pinned versions, retention through ``lakeops maintain --checkpoints`` (dry run first), and the
README's training-loop recipe — embedded on file:// and s3://, and over HTTP against a real server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lakes import make_settings
from serve_process import ServeProcess, child_env

import lakeops
from lakeops.client import Client
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.settings import LakeopsSettings

MODES = [
    pytest.param("embedded-file", id="embedded-file"),
    pytest.param("embedded-s3", id="embedded-s3", marks=pytest.mark.s3),
    pytest.param("http-file", id="http-file", marks=pytest.mark.api),
    pytest.param("http-s3", id="http-s3", marks=[pytest.mark.api, pytest.mark.s3]),
]
README = Path(__file__).parents[3] / "README.md"


@pytest.fixture(params=MODES)
def client(request: pytest.FixtureRequest, tmp_path: Path, servers: dict[str, ServeProcess]) -> Iterator[Client]:
    """A client, embedded on a fresh lake or connected to the module's server (file and s3 only)."""
    mode, kind = str(request.param).split("-")
    if mode == "embedded":
        s3 = request.getfixturevalue("s3_server") if kind != "file" else None
        c = lakeops.connect(settings=make_settings(kind, tmp_path / "lake", s3), flush_interval_s=0.05)
    else:
        c = lakeops.connect(servers[kind].url, flush_interval_s=0.05)
    yield c
    c.close()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_checkpoints_are_listed_and_loaded_by_latest_step_and_best(
    client: Client, experiment: str, tmp_path: Path
) -> None:
    losses = {0: 0.9, 1: 0.4, 2: 0.6, 3: 0.5}
    with client.start_run(experiment) as run:
        for step, loss in losses.items():
            recorded = run.log_checkpoint(
                _write(tmp_path / "ckpt" / "model.bin", f"weights at {step}"),
                step=step,
                metrics={"val_loss": loss, "accuracy": 1 - loss},
            )
            assert recorded["step"] == step and recorded["files"][0]["path"] == "model.bin"

    frame = client.checkpoints(run)
    assert frame["step"].to_list() == [0, 1, 2, 3]
    assert frame["metrics.val_loss"].to_list() == [0.9, 0.4, 0.6, 0.5]
    assert frame["size_bytes"].to_list() == [len("weights at 0")] * 4

    assert client.load_checkpoint(run, dest=tmp_path / "a").read_text() == "weights at 3"
    assert client.load_checkpoint(run.run_id, 2, dest=tmp_path / "b").read_text() == "weights at 2"
    best = client.load_checkpoint(run, best="val_loss", dest=tmp_path / "c")
    assert best.name == "model.bin" and best.read_text() == "weights at 1"
    assert client.load_checkpoint(run, best="val_loss", mode="max").read_text() == "weights at 0"
    assert client.checkpoint(run, best="accuracy", mode="max")["step"] == 1


def test_a_directory_checkpoint_round_trips_and_a_step_relogged_replaces_it(
    client: Client, experiment: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _write(src / "weights.bin", "w1")
    _write(src / "optimizer" / "state.json", '{"lr": 0.1}')
    with client.start_run(experiment) as run:
        run.log_checkpoint(src, step=10)
        loaded = client.load_checkpoint(run, 10, dest=tmp_path / "out1")
        assert loaded == tmp_path / "out1"
        assert (loaded / "weights.bin").read_text() == "w1"
        assert (loaded / "optimizer" / "state.json").read_text() == '{"lr": 0.1}'

        # The same step again, with fewer files: the checkpoint is the new set only.
        (src / "optimizer" / "state.json").unlink()
        _write(src / "weights.bin", "w2")
        run.log_checkpoint(src, step=10, metrics={"loss": 0.1})
    assert client.checkpoints(run)["step"].to_list() == [10]
    loaded = client.load_checkpoint(run, 10, dest=tmp_path / "out2")
    assert sorted(p.relative_to(loaded).as_posix() for p in loaded.rglob("*") if p.is_file()) == ["weights.bin"]
    assert (loaded / "weights.bin").read_text() == "w2"


def test_a_checkpoint_keeps_the_versions_it_recorded(client: Client, experiment: str, tmp_path: Path) -> None:
    with client.start_run(experiment) as run:
        recorded = run.log_checkpoint(_write(tmp_path / "m.bin", "original"), step=1)
        # Someone overwrites the file in place afterwards (e.g. mlflow.log_artifact to the same path).
        path = f"{recorded['artifact_path']}/m.bin"
        client.upload_artifact(path, _write(tmp_path / "other" / "m.bin", "overwritten"))
    assert client.read_artifact(path) == b"overwritten"
    assert client.load_checkpoint(run, 1).read_text() == "original"


def test_bad_checkpoint_requests_are_refused(client: Client, experiment: str, tmp_path: Path) -> None:
    with client.start_run(experiment) as run:
        with pytest.raises(NotFoundError, match="no checkpoints"):
            client.load_checkpoint(run)
        with pytest.raises(InvalidArgumentError, match="No such file or directory"):
            run.log_checkpoint(tmp_path / "missing.bin", step=0)
        with pytest.raises(InvalidArgumentError, match="Invalid checkpoint step"):
            run.log_checkpoint(_write(tmp_path / "m.bin", "x"), step=-1)
        run.log_checkpoint(tmp_path / "m.bin", step=0, metrics={"loss": 1.0})
        with pytest.raises(NotFoundError, match="no checkpoint at step 7"):
            client.load_checkpoint(run, 7)
        with pytest.raises(NotFoundError, match="carries the metric 'f1'"):
            client.load_checkpoint(run, best="f1")
        with pytest.raises(InvalidArgumentError, match="Invalid mode"):
            client.load_checkpoint(run, best="loss", mode="lowest")
        with pytest.raises(InvalidArgumentError, match="Which checkpoint"):
            client.load_checkpoint(run, "best")
        with pytest.raises(NotFoundError, match="not found"):
            client.checkpoints("no-such-run")
        with pytest.raises(NotFoundError, match="no checkpoint at step 3"):
            client.delete_checkpoint(run, 3)
        client.delete_checkpoint(run, 0)
    assert client.checkpoints(run).height == 0


@pytest.mark.api
def test_http_refuses_recording_files_never_uploaded(servers: dict[str, ServeProcess], experiment: str) -> None:
    with lakeops.connect(servers["file"].url) as c, c.start_run(experiment) as run:
        api = f"{servers['file'].url}/api/v1/runs/{run.run_id}/checkpoints"
        nothing = httpx.post(api, json={"step": 5})
        assert nothing.status_code == 400
        assert "upload the checkpoint's files" in nothing.json()["error"]["message"]
        missing = httpx.post(api, json={"step": 5, "files": ["model.bin"]})
        assert missing.status_code == 400 and "Not uploaded" in missing.json()["error"]["message"]
        for refused in (
            httpx.post(api, json={"step": -1}),
            httpx.post(api, json={"step": 1, "metrics": {"loss": "low"}}),
            httpx.post(api, json={"step": 1, "unknown": True}),
            httpx.get(f"{api}/best", params={"metric": "loss", "mode": "lowest"}),
            httpx.get(f"{api}/notastep"),
        ):
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request", refused.text
        assert httpx.get(f"{api}/latest").status_code == 404
        assert httpx.get(api).json() == {"checkpoints": []}


# -- retention -----------------------------------------------------------------------------------


def _maintain(settings: LakeopsSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakeops.cli", "maintain", "--checkpoints", *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _retention(settings: LakeopsSettings, *, dry_run: bool) -> dict[str, Any]:
    """Apply retention with a default policy of every 20th step, in this process."""
    from lakeops.services.artifacts import ArtifactService
    from lakeops.services.checkpoints import CheckpointService, RetentionPolicy
    from lakeops.stores import open_store

    with open_store(settings) as store:
        artifacts = ArtifactService(store, settings.storage.open_objects(settings.home))
        report = CheckpointService(store, artifacts).apply_retention(
            default=RetentionPolicy(keep_every=20), dry_run=dry_run
        )
    return report.model_dump()


def _log_two_runs(settings: LakeopsSettings, experiment: str, tmp_path: Path) -> tuple[str, str, str]:
    """A run with a policy (last 2, best 1 by val_loss) and 7 checkpoints, and one without and 6."""
    losses = [0.9, 0.2, 0.5, 0.3, 0.6, 0.7, 0.8]
    with lakeops.connect(settings=settings) as c:
        with c.start_run(experiment) as tagged:
            tagged.set_checkpoint_retention(keep_last=2, keep_best=1, metric="val_loss")
            for step, loss in enumerate(losses):
                tagged.log_checkpoint(
                    _write(tmp_path / f"t{step}.bin", f"t{step}"), step=step, metrics={"val_loss": loss}
                )
        with c.start_run(experiment) as plain:
            for step in range(0, 60, 10):
                plain.log_checkpoint(_write(tmp_path / f"p{step}.bin", f"p{step}"), step=step)
        removed_path = c.checkpoint(tagged, 0)["artifact_path"] + "/t0.bin"
    return tagged.run_id, plain.run_id, removed_path


@pytest.mark.parametrize("kind", [pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)])
def test_retention_reports_a_dry_run_then_applies_run_and_default_policies(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, experiment: str
) -> None:
    s3 = request.getfixturevalue("s3_server") if kind == "s3" else None
    settings = make_settings(kind, tmp_path / "lake", s3)
    tagged, plain, removed_path = _log_two_runs(settings, experiment, tmp_path)

    dry = _retention(settings, dry_run=True)
    assert dry["dry_run"] is True
    by_run = {r["run_id"]: r for r in dry["runs"]}
    assert by_run[tagged]["removed"] == [0, 2, 3, 4]
    assert by_run[tagged]["kept"] == {1: ["best 1 by val_loss (min)"], 5: ["last 2"], 6: ["last 2"]}
    assert by_run[plain]["removed"] == [10, 30, 50]  # the default policy: every 20th step
    assert dry["checkpoints_removed"] == 7 and dry["bytes_removed"] == 4 * 2 + 3 * 3
    with lakeops.connect(settings=settings) as c:
        assert c.checkpoints(tagged).height == 7  # a dry run changes nothing

    applied = _retention(settings, dry_run=False)
    assert applied["dry_run"] is False and applied["checkpoints_removed"] == 7
    with lakeops.connect(settings=settings) as c:
        assert c.checkpoints(tagged)["step"].to_list() == [1, 5, 6]
        assert c.checkpoints(plain)["step"].to_list() == [0, 20, 40]
        assert c.load_checkpoint(tagged, best="val_loss").read_text() == "t1"
        with pytest.raises(NotFoundError, match="No artifact"):
            c.read_artifact(removed_path)
    assert _retention(settings, dry_run=True)["checkpoints_removed"] == 0

    # A run whose policy tags make no sense is skipped, with the reason; the others still apply.
    with lakeops.connect(settings=settings) as c, c.start_run(experiment) as broken:
        broken.set_tags({"lakeops.checkpoints.keep_last": "many"})
        broken.log_checkpoint(_write(tmp_path / "b.bin", "b"), step=0)
    report = _retention(settings, dry_run=True)
    assert "keep_last" in report["skipped"][broken.run_id]
    assert {r["run_id"] for r in report["runs"]} == {tagged, plain}


def test_the_maintain_command_reports_retention_and_refuses_a_bad_policy(tmp_path: Path, experiment: str) -> None:
    settings = make_settings("file", tmp_path / "lake", None)
    tagged, plain, _removed = _log_two_runs(settings, experiment, tmp_path)
    refused = _maintain(settings, "--keep-best", "2")
    assert refused.returncode == 2 and "keep_best needs a metric" in refused.stderr
    done = _maintain(settings, "--keep-every", "20")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] is True and report["checkpoints_removed"] == 7
    assert {r["run_id"]: r["removed"] for r in report["runs"]} == {tagged: [0, 2, 3, 4], plain: [10, 30, 50]}
    with lakeops.connect(settings=settings) as c:
        assert c.checkpoints(tagged).height == 7


# -- the README recipe ---------------------------------------------------------------------------


@pytest.mark.api
def test_the_readme_training_loop_recipe_runs(
    servers: dict[str, ServeProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = README.read_text()
    match = re.search(r"<!-- tested: checkpoint recipe -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README lost its checkpoint recipe"
    code = match.group(1).replace("http://127.0.0.1:5000", servers["file"].url)
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)
    client = scope["client"]
    assert isinstance(client, Client)
    run = scope["run"]
    frame = client.checkpoints(run)  # type: ignore[arg-type]
    assert frame["step"].to_list() == [0, 1, 2, 3, 4]
    assert scope["best_state"] == {"epoch": 2, "weights": [0.3, 0.3]}
    assert scope["resumed_from"] == 4
    client.close()
