"""SQL over the lake's views: ``POST /sql`` and saved queries, as JSON, Arrow IPC or Parquet."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SavedQueriesDep, SqlDep
from api.encoding import JSONBody, RawJSONRoute, json_float
from api.permissions import sql_readable
from lakeops.errors import InvalidArgumentError
from lakeops.sql import is_truncated

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"  # IANA-registered (2024)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SqlRun(_Body):
    params: list[Any] | None = None
    as_of: str | None = Field(default=None, description="ISO-8601 time: read the tables as they were then.")
    max_rows: int | None = None


class SqlQuery(SqlRun):
    sql: str


class SavedQueryCreate(_Body):
    name: str
    sql: str
    description: str | None = None
    author: str | None = None


class SavedQueryUpdate(_Body):
    sql: str
    description: str | None = None
    author: str | None = None


def _as_of(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgumentError(f"as_of must be an ISO-8601 time, got {text!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def _answer(table: pa.Table, request: Request) -> Response | dict[str, Any]:
    """Arrow IPC stream or a Parquet file if the client accepts one, else JSON columns and rows."""
    accept = request.headers.get("accept", "")
    if PARQUET in accept:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return Response(
            content=sink.getvalue().to_pybytes(),
            media_type=PARQUET,
            headers={
                "x-lakeops-truncated": str(is_truncated(table)).lower(),
                "content-disposition": 'attachment; filename="lakeops-query.parquet"',
            },
        )
    if ARROW_STREAM in accept:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Response(
            content=sink.getvalue().to_pybytes(),
            media_type=ARROW_STREAM,
            headers={"x-lakeops-truncated": str(is_truncated(table)).lower()},
        )
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = [[_json_value(col[r]) for col in columns] for r in range(table.num_rows)]
    return {"columns": table.column_names, "rows": rows, "truncated": is_truncated(table)}


@router.post("/sql")
def run_sql(body: SqlQuery, request: Request, engine: SqlDep) -> Any:
    """Run one sandboxed SELECT over the lakeops views (only the rows the caller may read)."""
    table = engine.query(
        body.sql,
        params=body.params,
        as_of=_as_of(body.as_of),
        max_rows=body.max_rows,
        readable=sql_readable(request),
    )
    return _answer(table, request)


@router.post("/saved-queries", status_code=201)
def save_query(body: SavedQueryCreate, queries: SavedQueriesDep) -> dict[str, Any]:
    return queries.save(body.name, body.sql, description=body.description, author=body.author).to_dict()


@router.get("/saved-queries")
def list_queries(queries: SavedQueriesDep) -> dict[str, Any]:
    return {"saved_queries": [q.to_dict() for q in queries.list()]}


@router.get("/saved-queries/{name}")
def get_query(name: str, queries: SavedQueriesDep) -> dict[str, Any]:
    return queries.get(name).to_dict()


@router.put("/saved-queries/{name}")
def update_query(name: str, body: SavedQueryUpdate, queries: SavedQueriesDep) -> dict[str, Any]:
    queries.get(name)
    return queries.save(name, body.sql, description=body.description, author=body.author, replace=True).to_dict()


@router.delete("/saved-queries/{name}", status_code=204)
def delete_query(name: str, queries: SavedQueriesDep) -> Response:
    queries.delete(name)
    return Response(status_code=204)


@router.post("/saved-queries/{name}/run")
def run_query(name: str, body: SqlRun, request: Request, queries: SavedQueriesDep) -> Any:
    table = queries.run(
        name, params=body.params, as_of=_as_of(body.as_of), max_rows=body.max_rows, readable=sql_readable(request)
    )
    return _answer(table, request)
