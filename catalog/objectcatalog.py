"""The object-store catalog: an Iceberg catalog with no database, kept in the warehouse itself.

A pyiceberg ``Catalog`` (``py-catalog-impl=catalog.objectcatalog.ObjectStoreCatalog``) whose
table pointers and namespaces are create-only versioned objects under ``<warehouse>/_catalog``
(layout and the commit primitive: ``catalog/versions.py``). A commit reads the table's current
pointer (version N), stages the new metadata on top of it exactly as pyiceberg's SQL catalog
does, writes the metadata file, then creates pointer version N+1 *if absent*. If another
committer created N+1 first, the commit raises ``CommitFailedException`` and pyiceberg (and
lakeops' store) retry on the fresh table: no commit is lost or applied twice, across any
number of processes and hosts sharing the object store.

Rename is two steps (create the new name, tombstone the old) and so is not atomic against a
concurrent commit to the old name: the tombstone is conditional, and a lost race undoes the new
name and raises ``CommitFailedException``. Views are not supported (nor are they by pyiceberg's
SQL catalog).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyiceberg.catalog import Catalog, MetastoreCatalog, PropertiesUpdateSummary
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    NoSuchViewError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import new_table_metadata
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortOrder
from pyiceberg.typedef import EMPTY_DICT, Identifier, Properties
from pyiceberg.utils.properties import property_as_int
from typing_extensions import override

from catalog.versions import (
    NAMESPACES,
    Version,
    Versions,
    namespace_from_segment,
    namespace_prefix,
    open_version_store,
    read_table_pointers,
    table_prefix,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.schema import Schema
    from pyiceberg.table.update import TableRequirement, TableUpdate
    from pyiceberg.view import View


_PROPERTY_RETRIES = 10


class ObjectStoreCatalog(MetastoreCatalog):
    """An Iceberg catalog whose only state is objects next to the tables (see the module docstring)."""

    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        warehouse = properties.get("warehouse")
        if not warehouse:
            raise ValueError("the object-store catalog needs a warehouse (file:// or s3://)")
        self.versions = Versions(open_version_store(warehouse, properties))

    # -- reading pointers ----------------------------------------------------------------------

    def _namespace(self, namespace: str | Identifier) -> Version | None:
        latest = self.versions.latest(namespace_prefix(Catalog.identifier_to_tuple(namespace)))
        return None if latest is None or latest.dropped else latest

    def _table(self, identifier: str | Identifier) -> tuple[tuple[str, ...], str, str, Version | None]:
        namespace = Catalog.namespace_from(identifier)
        name = Catalog.table_name_from(identifier)
        prefix = table_prefix(namespace, name)
        return namespace, name, prefix, self.versions.latest(prefix)

    def table_pointers(self, namespace: str | Identifier) -> dict[str, str]:
        """Table name -> current metadata location for every table of ``namespace``, in one listing."""
        return read_table_pointers(self.versions, Catalog.identifier_to_tuple(namespace))

    # -- tables ---------------------------------------------------------------------------------

    @override
    def create_table(
        self,
        identifier: str | Identifier,
        schema: Schema | pa.Schema,
        location: str | None = None,
        partition_spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC,
        sort_order: SortOrder = UNSORTED_SORT_ORDER,
        properties: Properties = EMPTY_DICT,
    ) -> Table:
        """Write the first metadata file and create the table's pointer.

        Raises:
            NoSuchNamespaceError: the namespace does not exist.
            TableAlreadyExistsError: the table exists (or another process created it first).
        """
        format_version = property_as_int(properties, "format-version", 2) or 2
        iceberg_schema = self._convert_schema_if_needed(schema, format_version)  # type: ignore[arg-type]
        namespace, name, prefix, current = self._table(identifier)
        if self._namespace(namespace) is None:
            raise NoSuchNamespaceError(f"Namespace does not exist: {Catalog.namespace_to_string(namespace)}")
        if current is not None and not current.dropped:
            raise TableAlreadyExistsError(f"Table {Catalog.namespace_to_string(namespace)}.{name} already exists")
        location = self._resolve_table_location(location, Catalog.namespace_to_string(namespace), name)
        metadata_location = load_location_provider(location, properties).new_table_metadata_file_location()
        metadata = new_table_metadata(
            location=location,
            schema=iceberg_schema,
            partition_spec=partition_spec,
            sort_order=sort_order,
            properties=properties,
        )
        self._write_metadata(metadata, self._load_file_io(properties, metadata_location), metadata_location)
        self._create_pointer(namespace, name, prefix, current, metadata_location)
        return self.load_table(identifier)

    def _create_pointer(
        self, namespace: tuple[str, ...], name: str, prefix: str, current: Version | None, metadata_location: str
    ) -> None:
        body = {"namespace": list(namespace), "name": name, "metadata-location": metadata_location}
        if self.versions.put_next(prefix, current, body) is None:
            raise TableAlreadyExistsError(f"Table {Catalog.namespace_to_string(namespace)}.{name} already exists")

    @override
    def register_table(self, identifier: str | Identifier, metadata_location: str, overwrite: bool = False) -> Table:
        """Point a new table at an existing metadata file (nothing is copied).

        Raises:
            NoSuchNamespaceError: the namespace does not exist.
            TableAlreadyExistsError: the table exists.
        """
        if overwrite:
            raise NotImplementedError("`overwrite` isn't supported")
        namespace, name, prefix, current = self._table(identifier)
        if self._namespace(namespace) is None:
            raise NoSuchNamespaceError(f"Namespace does not exist: {Catalog.namespace_to_string(namespace)}")
        if current is not None and not current.dropped:
            raise TableAlreadyExistsError(f"Table {Catalog.namespace_to_string(namespace)}.{name} already exists")
        self._create_pointer(namespace, name, prefix, current, metadata_location)
        return self.load_table(identifier)

    @override
    def load_table(self, identifier: str | Identifier) -> Table:
        """The table at its current pointer.

        Raises:
            NoSuchTableError: no such table.
        """
        namespace, name, _prefix, current = self._table(identifier)
        if current is None or current.dropped:
            raise NoSuchTableError(f"Table does not exist: {Catalog.namespace_to_string(namespace)}.{name}")
        return self._table_at(namespace, name, str(current.body["metadata-location"]))

    def _table_at(self, namespace: tuple[str, ...], name: str, metadata_location: str) -> Table:
        io = self._load_file_io(location=metadata_location)
        metadata = FromInputFile.table_metadata(io.new_input(metadata_location))
        return Table(
            identifier=(*namespace, name),
            metadata=metadata,
            metadata_location=metadata_location,
            io=self._load_file_io(metadata.properties, metadata_location),
            catalog=self,
        )

    @override
    def drop_table(self, identifier: str | Identifier) -> None:
        """Tombstone the table's pointer (its files stay; ``purge_table`` deletes them).

        Raises:
            NoSuchTableError: no such table.
        """
        while True:
            namespace, name, prefix, current = self._table(identifier)
            if current is None or current.dropped:
                raise NoSuchTableError(f"Table does not exist: {Catalog.namespace_to_string(namespace)}.{name}")
            if self.versions.put_next(prefix, current, {"dropped": True}) is not None:
                return

    @override
    def rename_table(self, from_identifier: str | Identifier, to_identifier: str | Identifier) -> Table:
        """Create the new name at the old one's metadata, then tombstone the old name.

        Raises:
            NoSuchTableError: the source does not exist.
            TableAlreadyExistsError: the target exists.
            NoSuchNamespaceError: the target namespace does not exist.
            CommitFailedException: the source was committed to during the rename (nothing changed).
        """
        _src_ns, _src_name, src_prefix, src = self._table(from_identifier)
        if src is None or src.dropped:
            raise NoSuchTableError(f"Table does not exist: {from_identifier}")
        dst_ns, dst_name, dst_prefix, dst = self._table(to_identifier)
        if self._namespace(dst_ns) is None:
            raise NoSuchNamespaceError(f"Namespace does not exist: {Catalog.namespace_to_string(dst_ns)}")
        if dst is not None and not dst.dropped:
            raise TableAlreadyExistsError(f"Table {to_identifier} already exists")
        self._create_pointer(dst_ns, dst_name, dst_prefix, dst, str(src.body["metadata-location"]))
        if self.versions.put_next(src_prefix, src, {"dropped": True}) is None:
            self.drop_table(to_identifier)
            raise CommitFailedException(f"Table {from_identifier} changed during the rename; nothing was renamed")
        return self.load_table(to_identifier)

    @override
    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]
    ) -> CommitTableResponse:
        """Stage the updates on the current metadata, write it, and create the next pointer version.

        Raises:
            NoSuchTableError: the table was dropped.
            TableAlreadyExistsError: a create-table transaction lost to another creator.
            CommitFailedException: a requirement is not met, or another process committed first.
        """
        namespace, name, prefix, current = self._table(table.name())
        current_table = None
        if current is not None and not current.dropped:
            location = str(current.body["metadata-location"])
            # The committer's table is usually the current one: its metadata need not be read again.
            current_table = table if table.metadata_location == location else self._table_at(namespace, name, location)
        staged = self._update_and_stage_table(current_table, table.name(), requirements, updates)
        if current_table is not None and staged.metadata == current_table.metadata:
            return CommitTableResponse(
                metadata=current_table.metadata, metadata_location=current_table.metadata_location
            )
        self._write_metadata(staged.metadata, staged.io, staged.metadata_location)
        body: dict[str, Any] = {
            "namespace": list(namespace),
            "name": name,
            "metadata-location": staged.metadata_location,
        }
        if current_table is not None:
            body["previous-metadata-location"] = current_table.metadata_location
        if self.versions.put_next(prefix, current, body) is None:
            if current_table is None:
                raise TableAlreadyExistsError(f"Table {Catalog.namespace_to_string(namespace)}.{name} already exists")
            raise CommitFailedException(f"Table has been updated by another process: {namespace}.{name}")
        return CommitTableResponse(metadata=staged.metadata, metadata_location=staged.metadata_location)

    @override
    def list_tables(self, namespace: str | Identifier) -> list[Identifier]:
        """Every table of ``namespace``.

        Raises:
            NoSuchNamespaceError: the namespace does not exist.
        """
        namespace_tuple = Catalog.identifier_to_tuple(namespace)
        if self._namespace(namespace_tuple) is None:
            raise NoSuchNamespaceError(f"Namespace does not exist: {Catalog.namespace_to_string(namespace_tuple)}")
        return [(*namespace_tuple, name) for name in sorted(self.table_pointers(namespace_tuple))]

    # -- namespaces -----------------------------------------------------------------------------

    @override
    def create_namespace(self, namespace: str | Identifier, properties: Properties = EMPTY_DICT) -> None:
        """Create the namespace's first (or next, after a drop) version.

        Raises:
            NamespaceAlreadyExistsError: it exists (or another process created it first).
        """
        namespace_tuple = Catalog.identifier_to_tuple(namespace)
        prefix = namespace_prefix(namespace_tuple)
        current = self.versions.latest(prefix)
        if current is not None and not current.dropped:
            raise NamespaceAlreadyExistsError(
                f"Namespace {Catalog.namespace_to_string(namespace_tuple)} already exists"
            )
        body = {"namespace": list(namespace_tuple), "properties": dict(properties or {"exists": "true"})}
        if self.versions.put_next(prefix, current, body) is None:
            raise NamespaceAlreadyExistsError(
                f"Namespace {Catalog.namespace_to_string(namespace_tuple)} already exists"
            )

    @override
    def drop_namespace(self, namespace: str | Identifier) -> None:
        """Tombstone an empty namespace.

        Raises:
            NoSuchNamespaceError: it does not exist.
            NamespaceNotEmptyError: it holds tables.
        """
        namespace_tuple = Catalog.identifier_to_tuple(namespace)
        while True:
            current = self._namespace(namespace_tuple)
            if current is None:
                raise NoSuchNamespaceError(f"Namespace does not exist: {Catalog.namespace_to_string(namespace_tuple)}")
            if tables := self.table_pointers(namespace_tuple):
                raise NamespaceNotEmptyError(f"Namespace {namespace_tuple} is not empty. {len(tables)} tables exist.")
            if self.versions.put_next(namespace_prefix(namespace_tuple), current, {"dropped": True}) is not None:
                return

    @override
    def list_namespaces(self, namespace: str | Identifier = ()) -> list[Identifier]:
        """Namespaces one level below ``namespace`` (top-level ones by default).

        Raises:
            NoSuchNamespaceError: ``namespace`` is given and does not exist.
        """
        parent = Catalog.identifier_to_tuple(namespace)
        if parent and self._namespace(parent) is None:
            raise NoSuchNamespaceError(f"Namespace does not exist: {Catalog.namespace_to_string(parent)}")
        level = len(parent) + 1
        found = {
            ns[:level]
            for segment, version in self.versions.latest_under(f"{NAMESPACES}/").items()
            if not version.dropped and len(ns := namespace_from_segment(segment)) >= level and ns[: level - 1] == parent
        }
        return sorted(found)

    @override
    def load_namespace_properties(self, namespace: str | Identifier) -> Properties:
        """The namespace's properties.

        Raises:
            NoSuchNamespaceError: it does not exist.
        """
        current = self._namespace(namespace)
        if current is None:
            raise NoSuchNamespaceError(f"Namespace {Catalog.namespace_to_string(namespace)} does not exists")
        return dict(current.body.get("properties") or {})

    @override
    def update_namespace_properties(
        self, namespace: str | Identifier, removals: set[str] | None = None, updates: Properties = EMPTY_DICT
    ) -> PropertiesUpdateSummary:
        """Write the namespace's next version with the properties changed (retried on a concurrent change).

        Raises:
            NoSuchNamespaceError: it does not exist.
            CommitFailedException: it kept changing under us.
        """
        namespace_tuple = Catalog.identifier_to_tuple(namespace)
        for _attempt in range(_PROPERTY_RETRIES):
            current = self._namespace(namespace_tuple)
            if current is None:
                raise NoSuchNamespaceError(f"Namespace {Catalog.namespace_to_string(namespace_tuple)} does not exists")
            summary, updated = self._get_updated_props_and_update_summary(
                current_properties=dict(current.body.get("properties") or {}), removals=removals, updates=updates
            )
            body = {"namespace": list(namespace_tuple), "properties": updated}
            if self.versions.put_next(namespace_prefix(namespace_tuple), current, body) is not None:
                return summary
        raise CommitFailedException(f"Namespace {namespace_tuple} kept changing; properties not updated")

    # -- views (not supported, as in pyiceberg's SQL catalog) -------------------------------------

    @override
    def list_views(self, namespace: str | Identifier) -> list[Identifier]:
        """No views in this catalog."""
        return []

    @override
    def view_exists(self, identifier: str | Identifier) -> bool:
        """No views in this catalog."""
        return False

    @override
    def load_view(self, identifier: str | Identifier) -> View:
        """No views in this catalog.

        Raises:
            NoSuchViewError: always.
        """
        raise NoSuchViewError(f"View does not exist: {identifier}")

    @override
    def drop_view(self, identifier: str | Identifier) -> None:
        """No views in this catalog.

        Raises:
            NoSuchViewError: always.
        """
        raise NoSuchViewError(f"View does not exist: {identifier}")

    @override
    def register_view(self, identifier: str | Identifier, metadata_location: str) -> View:
        """Views are not supported.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("the object-store catalog keeps no views")
