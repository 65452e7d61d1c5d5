"""Checkpoints from training code: log a file or a directory at a step, list them, load one back.

``log_checkpoint`` uploads the files under the run's ``checkpoints/step-<step>/`` artifacts, then
asks lakeops to record them (which pins each file's version, so a later upload to the same path
cannot change what the checkpoint holds). ``load_checkpoint`` picks one (the latest, a step, or
the best by a metric), downloads exactly the pinned versions and checks each file's sha256.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeops.client.transport import artifact_path
from lakeops.entities import checkpoint_dir
from lakeops.errors import InvalidArgumentError, LakeopsError

if TYPE_CHECKING:
    import polars as pl

    from lakeops.client.client import Client

HASH_CHUNK = 4 * 1024 * 1024


def checkpoint_files(source: Path) -> list[tuple[Path, str]]:
    """The files to upload for ``source`` and their paths inside the checkpoint directory."""
    if source.is_file():
        return [(source, source.name)]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        if not files:
            raise InvalidArgumentError(f"Checkpoint directory {source} holds no files")
        return [(p, p.relative_to(source).as_posix()) for p in files]
    raise InvalidArgumentError(f"No such file or directory to log as a checkpoint: {source}")


def log_checkpoint(
    client: Client,
    *,
    run_id: str,
    artifact_uri: str,
    path: str | Path,
    step: int,
    metrics: Mapping[str, float] | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Upload a file or directory as the run's checkpoint at ``step`` and record it."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InvalidArgumentError(f"Invalid checkpoint step {step!r}: must be an integer >= 0")
    source = Path(path)
    files = checkpoint_files(source)
    directory = artifact_path(artifact_uri, checkpoint_dir(step))
    for local, name in files:
        client.upload_artifact(f"{directory}/{name}", local, progress=progress)
    return client._call(
        lambda: client.transport.create_checkpoint(
            run_id,
            step=step,
            metrics=dict(metrics or {}),
            is_dir=source.is_dir(),
            files=[name for _local, name in files],
        )
    )


def checkpoints_frame(checkpoints: list[dict[str, Any]]) -> pl.DataFrame:
    """One row per checkpoint: step, size, file count, when, and one column per metric."""
    import polars as pl

    metric_names = sorted({k for c in checkpoints for k in c["metrics"]})
    rows = [
        {
            "run_id": c["run_id"],
            "step": c["step"],
            "artifact_path": c["artifact_path"],
            "files": len(c["files"]),
            "size_bytes": c["size_bytes"],
            "created_at": c["created_at"],
            **{f"metrics.{m}": c["metrics"].get(m) for m in metric_names},
        }
        for c in checkpoints
    ]
    schema: dict[str, Any] = {
        "run_id": pl.String,
        "step": pl.Int64,
        "artifact_path": pl.String,
        "files": pl.Int64,
        "size_bytes": pl.Int64,
        "created_at": pl.Int64,
        **{f"metrics.{m}": pl.Float64 for m in metric_names},
    }
    frame = pl.DataFrame(rows, schema=schema)
    return frame.with_columns(pl.from_epoch("created_at", time_unit="ms").dt.replace_time_zone("UTC"))


def select_checkpoint(
    client: Client, run_id: str, which: str | int = "latest", *, best: str | None = None, mode: str = "min"
) -> dict[str, Any]:
    """The checkpoint ``which`` names ("latest" or a step), or the best by the metric ``best``."""
    if mode not in ("min", "max"):
        raise InvalidArgumentError(f"Invalid mode {mode!r}: min or max")
    if best is not None:
        step, metric = None, best
    elif which == "latest":
        step, metric = None, None
    elif isinstance(which, int) and not isinstance(which, bool):
        step, metric = which, None
    else:
        raise InvalidArgumentError(f"Which checkpoint? 'latest', a step number or best=<metric>, not {which!r}")
    return client._call(lambda: client.transport.checkpoint(run_id, step=step, metric=metric, mode=mode))


def download_checkpoint(client: Client, checkpoint: Mapping[str, Any], dest: str | Path | None = None) -> Path:
    """Download the checkpoint's pinned files into ``dest`` (default: a new temporary directory).

    Returns the file for a single-file checkpoint, else the directory. Raises ``LakeopsError`` if a
    downloaded file's sha256 is not the recorded one.
    """
    root = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix=f"lakeops-step-{checkpoint['step']}-"))
    root.mkdir(parents=True, exist_ok=True)
    for f in checkpoint["files"]:
        target = root / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        remote = f"{checkpoint['artifact_path']}/{f['path']}"
        client._call(functools.partial(client.transport.download_artifact, remote, target, version_id=f["version_id"]))
        if not f["sha256"]:  # uploaded by the stock mlflow client and not hashed by the server yet
            raise LakeopsError(f"{remote} is still being hashed by the server; load the checkpoint again shortly")
        if _sha256(target) != f["sha256"]:
            raise LakeopsError(f"Downloaded {remote} does not match its recorded sha256; the store may be corrupt")
    if not checkpoint["is_dir"]:
        return root / str(checkpoint["files"][0]["path"])
    return root


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
