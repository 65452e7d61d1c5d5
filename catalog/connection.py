"""Opening the Iceberg catalog and creating or evolving the lake's tables idempotently."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import update_table_metadata

from catalog.tables import SCHEMA_VERSION, TABLES, TableDef

log = logging.getLogger(__name__)


class _CachedTransaction(Transaction):
    """pyiceberg's ``Transaction`` with ``table_metadata`` computed once per staged state.

    pyiceberg 0.12 recomputes ``Transaction.table_metadata`` on every read: it replays the staged
    updates and deep-copies the whole table metadata (every retained snapshot included), and one
    ``append`` reads it 22 times. With the 50-100 snapshots a lakeops table keeps between
    expiries, that deep copy was a quarter of a logging server's CPU (py-spy, 8 stock-client
    loggers). This keeps the answer while neither the table's metadata nor the staged updates
    changed: both are replaced, never mutated, when they change (``_updates`` is a tuple rebound by
    every ``_stage``, ``Table.metadata`` is reassigned by a commit), so identity tells. It is the
    change proposed upstream (apache/iceberg-python#3302, #3784); drop it once a release has it.
    """

    _cached: tuple[TableMetadata, tuple[object, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        cached = self._cached
        if cached is not None and cached[0] is base and cached[1] is updates:
            return cached[2]
        metadata = update_table_metadata(base, updates)
        self._cached = (base, updates, metadata)
        return metadata


def transaction(table: Table) -> Transaction:
    """A transaction on ``table`` (as ``table.transaction()``) that reads its metadata cheaply."""
    return _CachedTransaction(table)


def open_catalog(name: str, properties: Mapping[str, str]) -> Catalog:
    """Open a pyiceberg catalog from plain properties (built by the settings adapters)."""
    return load_catalog(name, **dict(properties))


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create the namespace unless it exists."""
    with contextlib.suppress(NamespaceAlreadyExistsError):  # a concurrent creator may win the race
        catalog.create_namespace_if_not_exists(namespace)


def ensure_table(catalog: Catalog, namespace: str, table_def: TableDef) -> Table:
    """Create ``table_def`` if missing; otherwise add any columns it lacks. Safe to race."""
    identifier = (namespace, table_def.name)
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        try:
            return catalog.create_table(
                identifier,
                schema=table_def.schema,
                partition_spec=table_def.partition_spec,
                sort_order=table_def.sort_order,
                properties=table_def.all_properties(),
            )
        except TableAlreadyExistsError:
            table = catalog.load_table(identifier)
    return evolve_table(table, table_def)


def evolve_table(table: Table, table_def: TableDef) -> Table:
    """Bring an existing table up to ``table_def``: add missing columns (never drop or retype), set its properties."""
    current_version = int(table.properties.get("lakeops.schema-version", "0"))
    existing = {f.name for f in table.schema().fields}
    missing = [f for f in table_def.schema.fields if f.name not in existing]
    if not missing and current_version >= SCHEMA_VERSION:
        return table
    with table.transaction() as tx:
        if missing:
            with tx.update_schema() as update:
                for fld in missing:
                    # New columns must be optional: rows written before the column existed read it as null.
                    update.add_column(fld.name, fld.field_type, doc=fld.doc)
            log.info("table %s: added columns %s", table_def.name, [f.name for f in missing])
        if current_version < SCHEMA_VERSION:
            # Properties a newer lakeops sets (e.g. a constrained table's commit retries) apply to old lakes too.
            wanted = table_def.all_properties()
            wanted.pop("format-version", None)  # not a property an existing table can change this way
            tx.set_properties({k: v for k, v in wanted.items() if table.properties.get(k) != v})
    return table


def ensure_tables(catalog: Catalog, namespace: str, defs: Iterable[TableDef] = TABLES) -> dict[str, Table]:
    """Create the namespace and every table idempotently; return them by name."""
    ensure_namespace(catalog, namespace)
    return {d.name: ensure_table(catalog, namespace, d) for d in defs}
