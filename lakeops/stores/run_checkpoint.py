"""Checkpoints of the run columns, so a process starts from O(runs) rows instead of every change row.

Start-up folds the runs, tags, params and latest metrics of the whole lake into columns
(lakeops/stores/run_base.py): at 1M runs that reads ~15M change rows and reduces them, ~25 CPU-s.
A checkpoint is those columns as written once, with the snapshot of each table they cover; a later
start-up reads the checkpoint (decoding columns, no reduction) and folds only the rows the tables'
appends added after those snapshots, as it folds any later change.

Layout, in the lake itself, every file an Arrow IPC file (zstd-compressed buffers; pyarrow, polars
and DuckDB's arrow extension read them)::

    <warehouse>/_run_checkpoints/<number:012d>/<writer>/runs.arrow        a row a run, with entry counts
                                                        params.arrow      entries, run after run
                                                        tags.arrow
                                                        metrics.arrow     latest point of each (run, key)
                                                        other_tags.arrow  experiment and logged-model tag rows
                                               manifest.json     written last: names the writer's parts

Arrow IPC rather than Parquet: reading is at most a buffer decompression, not a page decode.
Measured on a 1M-run checkpoint (10M params, 4M tags, 5M metrics): Parquet/zstd, 88 MB, ~4.5 CPU-s
to read; Arrow IPC/zstd, ~108 MB, ~1-2.5 CPU-s; uncompressed Arrow IPC (on ``file://``), ~500 MB,
no decoding.

Objects are created only if absent (``catalog/versions.py``): two processes writing checkpoint N
at once each write their parts under their own (random) writer folder, and the one that creates
the manifest wins; the other's parts are removed with N when it is pruned. Readers take the
highest number with a manifest; anything they cannot use (a broken file, a covered snapshot no
longer in a table's history) makes start-up fold the tables as before, which then writes a new
checkpoint. Only the newest
``KEEP`` checkpoints are kept.

Who writes one: a start-up that folded the tables in full (after it has started serving, in the
background), and ``maintain`` when the newest checkpoint is older than
``write.run_checkpoint_every_s`` (so snapshot expiry, which follows it, does not cut a
checkpoint's snapshot out of the history).
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa

from catalog.tables import METRIC_LATEST, PARAMS, RUN_CHANGES, TAG_CHANGES
from catalog.versions import VersionStore, VersionStoreError

log = logging.getLogger(__name__)

DIRECTORY = "_run_checkpoints"
FORMAT = 1
KEEP = 2
#: The tables a checkpoint stands for, in fold order.
COVERED: tuple[str, ...] = (RUN_CHANGES.name, TAG_CHANGES.name, PARAMS.name, METRIC_LATEST.name)
_PARTS = ("runs", "params", "tags", "metrics", "other_tags")
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's manifest: its number, when it was written and the snapshot of each covered
    table it holds (None: the table was empty)."""

    number: int
    parts: str  # the folder under the checkpoint's number holding its parts
    created_at: float
    snapshots: Mapping[str, int | None]
    runs: int


def latest(store: VersionStore) -> Checkpoint | None:
    """The newest complete checkpoint, or None (none yet, or the store cannot be read)."""
    try:
        numbers = sorted(
            {int(key.split("/")[0]) for key in store.list("") if key.endswith(f"/{_MANIFEST}")}, reverse=True
        )
        for number in numbers:
            body = store.get(f"{number:012d}/{_MANIFEST}")
            if body is None:
                continue
            manifest = json.loads(body)
            if manifest.get("format") != FORMAT:
                return None  # written by another version of lakeops: fold the tables instead
            return Checkpoint(
                number=number,
                parts=str(manifest["parts"]),
                created_at=float(manifest["created_at"]),
                snapshots={name: manifest["snapshots"][name] for name in COVERED},
                runs=int(manifest["runs"]),
            )
    except (VersionStoreError, OSError, ValueError, KeyError) as exc:
        log.warning("run checkpoints unreadable, folding the tables instead: %s", exc)
    return None


def read(store: VersionStore, checkpoint: Checkpoint) -> dict[str, pa.Table] | None:
    """The checkpoint's tables (``RunBase.to_tables``' and ``other_tags``), or None if a part is missing
    or unreadable (pruned by a newer checkpoint's writer meanwhile, say)."""
    tables = {}
    local = store.root.startswith("file:")
    try:
        for part in _PARTS:
            key = f"{checkpoint.number:012d}/{checkpoint.parts}/{part}.arrow"
            source: pa.NativeFile
            if local:  # mapped, not read: the columns point into the page cache (~0.5 CPU-s less at 1M runs)
                source = pa.memory_map(str(Path(unquote(urlparse(store.root).path)) / key))
            else:
                body = store.get(key)
                if body is None:
                    return None
                source = pa.BufferReader(body)
            with pa.ipc.open_file(source) as reader:
                tables[part] = reader.read_all()
    except FileNotFoundError:
        return None
    except (VersionStoreError, OSError, pa.ArrowException) as exc:
        log.warning("run checkpoint %d unreadable, folding the tables instead: %s", checkpoint.number, exc)
        return None
    return tables


def write(
    store: VersionStore,
    tables: Mapping[str, pa.Table],
    snapshots: Mapping[str, int | None],
    *,
    clock: float | None = None,
) -> int | None:
    """Write a checkpoint of ``tables`` covering ``snapshots``; returns its number, or None when another
    writer took that number first. Older checkpoints beyond ``KEEP`` are removed."""
    existing = sorted({int(key.split("/")[0]) for key in store.list("") if key.split("/")[0].isdigit()})
    number = (existing[-1] + 1) if existing else 1
    parts = uuid.uuid4().hex
    prefix = f"{number:012d}"
    # A local disk reads uncompressed buffers fastest (no decoding at all); an object store's transfer
    # is the cost there, so its buffers are zstd-compressed (a 1M-run checkpoint: ~500 MB vs ~110 MB).
    compression = None if store.root.startswith("file:") else "zstd"
    for part in _PARTS:
        table = tables[part].combine_chunks()  # one chunk a column: read back without a copy
        sink = io.BytesIO()
        with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
            writer.write_table(table)
        if not store.create(f"{prefix}/{parts}/{part}.arrow", sink.getvalue(), contended=False):  # our folder
            return None
    manifest = {
        "format": FORMAT,
        "parts": parts,
        "created_at": time.time() if clock is None else clock,
        "snapshots": {name: snapshots[name] for name in COVERED},
        "runs": tables["runs"].num_rows,
    }
    if not store.create(f"{prefix}/{_MANIFEST}", json.dumps(manifest).encode()):
        return None
    doomed = [n for n in existing if n <= number - KEEP]
    if doomed:
        names = {f"{n:012d}" for n in doomed}
        store.delete(key for key in store.list("") if key.split("/")[0] in names)
    return number
