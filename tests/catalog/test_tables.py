"""The lake's tables: created idempotently, evolved by adding columns, laid out for pruning."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType

from catalog import tables
from catalog.connection import ensure_namespace, ensure_table, ensure_tables


def _catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("t", uri=f"sqlite:///{tmp_path / 'c.db'}", warehouse=tmp_path.as_uri())


def test_tables_are_created_idempotently(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    first = ensure_tables(catalog, "lakeops")
    second = ensure_tables(catalog, "lakeops")
    assert set(first) == {t.name for t in tables.TABLES}
    assert all(first[n].metadata.table_uuid == second[n].metadata.table_uuid for n in first)
    metrics = second["metrics"]
    assert str(metrics.spec().fields[0].transform) == f"bucket[{tables.METRIC_BUCKETS}]"
    assert [f.source_id for f in metrics.sort_order().fields] == [1, 2, 5, 4]
    assert metrics.properties["lakeops.schema-version"] == str(tables.SCHEMA_VERSION)


def test_schema_evolves_by_adding_columns(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    ensure_namespace(catalog, "lakeops")
    old = replace(tables.PARAMS, schema=Schema(*tables.PARAMS.schema.fields[:3]))
    table = ensure_table(catalog, "lakeops", old)
    table.append(pa.table({"run_id": ["r"], "key": ["k"], "value": ["v"]}, schema=old.arrow_schema))
    newer = replace(
        tables.PARAMS,
        schema=Schema(*tables.PARAMS.schema.fields, NestedField(99, "comment", StringType(), required=False)),
    )
    evolved = ensure_table(catalog, "lakeops", newer)
    assert [f.name for f in evolved.schema().fields] == ["run_id", "key", "value", "logged_at", "comment"]
    rows = evolved.scan().to_arrow()
    assert rows.num_rows == 1 and rows.column("comment").to_pylist() == [None]


def test_tables_hidden_from_user_sql_are_named_alike_in_both_places() -> None:
    from catalog import views

    assert views.HIDDEN_TABLES == tables.SQL_HIDDEN_TABLES
    assert {t.name for t in tables.TABLES} >= tables.SQL_HIDDEN_TABLES


def test_every_table_definition_is_in_tables_with_its_own_name_and_code() -> None:
    # A TableDef left out of TABLES is never created, loaded or committed; a reused code would mix two
    # tables' records in the write-ahead log.
    defined = {name: value for name, value in vars(tables).items() if isinstance(value, tables.TableDef)}
    listed = {t.name for t in tables.TABLES}
    assert not sorted(name for name, d in defined.items() if d.name not in listed), "add it to catalog.tables.TABLES"
    assert len(listed) == len(tables.TABLES)
    assert len({t.code for t in tables.TABLES}) == len(tables.TABLES)
