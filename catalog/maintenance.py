"""Table maintenance: compact small files and expire old snapshots.

pyiceberg 0.12 has snapshot expiry but no data-file compaction, so compaction is written
here: the files of a partition are read, sorted by the table's sort columns, written as new
files, and swapped in with one overwrite snapshot that deletes exactly the files read. Rows
appended concurrently live in other files and are untouched; if another compactor removed
one of our files first, pyiceberg's validation refuses the swap and nothing changes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table

from catalog.connection import transaction
from catalog.tables import TableDef

log = logging.getLogger(__name__)

# A partition is compacted once it has this many files smaller than the target size.
MIN_FILES_TO_COMPACT = 8
SMALL_FILE_BYTES = 32 * 1024 * 1024


def compact_table(
    table: Table,
    table_def: TableDef,
    *,
    snapshot_properties: dict[str, str],
    min_files: int = MIN_FILES_TO_COMPACT,
    reduce: Callable[[pa.Table], pa.Table] | None = None,
) -> tuple[int, int]:
    """Rewrite partitions holding many small files. Returns (files removed, files written).

    ``reduce`` rewrites the rows as well (a summary table folds its partial rows into one per key).
    """
    snapshot = table.metadata.current_snapshot()
    if snapshot is None:
        return 0, 0
    groups: dict[object, list[FileScanTask]] = defaultdict(list)
    for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files():
        if task.delete_files or task.file.file_size_in_bytes >= SMALL_FILE_BYTES:
            continue
        groups[(task.file.spec_id, task.file.partition)].append(task)
    old_files: list[DataFile] = []
    new_files: list[DataFile] = []
    for tasks in groups.values():
        if len(tasks) < min_files:
            continue
        rows = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(tasks)
        if reduce is not None:
            rows = reduce(rows)
        if table_def.sort_columns:
            rows = rows.sort_by([(c, "ascending") for c in table_def.sort_columns])
        rows = rows.cast(_writable_schema(table, rows))
        new_files.extend(_dataframe_to_data_files(table.metadata, rows, table.io))
        old_files.extend(t.file for t in tasks)
    if not old_files:
        return 0, 0
    try:
        with transaction(table) as tx, tx.update_snapshot(snapshot_properties=snapshot_properties).overwrite() as ow:
            for data_file in old_files:
                ow.delete_data_file(data_file)
            for data_file in new_files:
                ow.append_data_file(data_file)
    except (CommitFailedException, ValidationException) as exc:
        log.warning("compaction of %s skipped: %s", table_def.name, exc)
        for data_file in new_files:
            table.io.delete(data_file.file_path)
        return 0, 0
    log.info("compacted %s: %d files into %d", table_def.name, len(old_files), len(new_files))
    return len(old_files), len(new_files)


def _writable_schema(table: Table, rows: pa.Table) -> pa.Schema:
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    target = schema_to_pyarrow(table.schema(), include_field_ids=False)
    return pa.schema([target.field(name) for name in rows.column_names])


def expire_snapshots(
    table: Table,
    *,
    older_than: datetime,
    keep_last: int = 5,
    keep_at_most: int | None = None,
    protect: Iterable[int] = (),
) -> int:
    """Expire snapshots older than ``older_than`` (always keeping the newest ``keep_last``), and beyond
    the newest ``keep_at_most`` whatever their age; never those in ``protect``."""
    snapshots = sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms)
    keep = {s.snapshot_id for s in snapshots[-keep_last:]} | set(protect)
    cutoff_ms = int(older_than.timestamp() * 1000)
    doomed = [s.snapshot_id for s in snapshots if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep]
    if keep_at_most is not None and len(snapshots) > keep_at_most:
        doomed = sorted(set(doomed) | {s.snapshot_id for s in snapshots[:-keep_at_most]} - keep)
    current = table.metadata.current_snapshot_id
    doomed = [s for s in doomed if s != current]
    if not doomed:
        return 0
    try:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
    except CommitFailedException as exc:
        log.warning("snapshot expiry skipped: %s", exc)
        return 0
    return len(doomed)
