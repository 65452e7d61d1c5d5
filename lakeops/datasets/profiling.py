"""What lakeops learns from a table: its schema as JSON, a per-column profile, its content digest, parsing."""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakeops.errors import InvalidArgumentError

MAX_PROFILED_BYTES = 256 * 1024 * 1024


def arrow_schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    """A schema as a JSON-able list of columns."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def profile_table(table: pa.Table) -> dict[str, Any]:
    """Per-column statistics: nulls, and min/max/mean for numbers or distinct count for the rest."""
    columns: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        stats: dict[str, Any] = {"null_count": column.null_count}
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            if column.null_count < len(column):
                minmax = pc.min_max(column).as_py()
                stats.update(min=minmax["min"], max=minmax["max"], mean=pc.mean(column).as_py())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
            stats["distinct_count"] = pc.count_distinct(column).as_py()
        columns[name] = stats
    return {"row_count": table.num_rows, "columns": columns}


def table_from_frame(frame: Any) -> pa.Table:
    """A polars or pandas DataFrame (or an Arrow table) as an Arrow table."""
    if isinstance(frame, pa.Table):
        return frame
    to_arrow = getattr(frame, "to_arrow", None)
    if callable(to_arrow):  # polars
        table = to_arrow()
        if isinstance(table, pa.Table):
            return table
    if type(frame).__module__.startswith("pandas"):
        return pa.Table.from_pandas(frame, preserve_index=False)
    raise InvalidArgumentError(f"Cannot log a {type(frame).__name__} as a dataset: give a polars or pandas DataFrame")


def ipc_digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def parse_tabular(path: str, data: bytes) -> pa.Table | None:
    lower = path.lower()
    try:
        if lower.endswith(".parquet"):
            return pq.read_table(io.BytesIO(data))
        if lower.endswith(".csv"):
            import pyarrow.csv as pacsv

            return pacsv.read_csv(io.BytesIO(data))
    except (pa.ArrowInvalid, csv.Error) as exc:
        raise InvalidArgumentError(f"Cannot read {path!r} as a table: {exc}") from exc
    return None
