"""The lake's tables as an Iceberg REST catalog, read-only: what ``/iceberg/v1/...`` answers.

Outside engines (pyiceberg ``type=rest``, DuckDB ``ATTACH ... (TYPE iceberg)``, Spark, Trino) ask
this catalog where a table's current metadata is and read the files themselves. Answers come
from the lake's own catalog at each request, so they name the current snapshot of every replica's
commits: an acknowledged write is there once its group commit lands (``write.commit_interval_s``,
default 0.5 s). A load does not commit queued rows itself: DuckDB reads a table at the newest
snapshot older than its transaction, so a snapshot made while answering it would be skipped (and a
table's first one would leave it "no reachable state").

Only the lake's namespace is served, without the tables of password and token hashes, and
nothing is written: creating, committing and dropping stay with lakeops, which keeps its
invariants (write-ahead log, constraints) on every write.

The configuration handed to engines carries the object store's address, never its keys: an
engine brings its own credentials (``s3.access-key-id`` in pyiceberg, a DuckDB S3 secret).
"""

from __future__ import annotations

from typing import Any

from pyiceberg.exceptions import NoSuchTableError

from catalog.tables import SQL_HIDDEN_TABLES
from lakeops.errors import NotFoundError
from lakeops.stores.iceberg import IcebergStore

#: The routes served, as the REST spec's ``endpoints`` list names them (engines check it).
ENDPOINTS = (
    "GET /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "GET /v1/{prefix}/namespaces/{namespace}/views",
)
#: The separator of a multi-level namespace in a URL path (the spec's ``%1F``).
LEVEL_SEPARATOR = "\x1f"


class IcebergCatalogService:
    """Read-only Iceberg REST catalog answers over the store's catalog."""

    def __init__(self, store: IcebergStore) -> None:
        self.store = store
        self.namespace = store.settings.namespace

    def config(self) -> dict[str, Any]:
        """``GET /v1/config``: the store's address for engines' FileIO, and the routes served."""
        return {
            "defaults": self.store.settings.storage.client_properties(),
            "overrides": {},
            "endpoints": list(ENDPOINTS),
        }

    def namespaces(self, parent: str | None = None) -> dict[str, Any]:
        """``GET /v1/namespaces``: the lake's namespace (it has no children).

        Raises:
            NotFoundError: ``parent`` is not the lake's namespace.
        """
        if parent:
            self._check_namespace(parent)
            return {"namespaces": []}
        return {"namespaces": [[self.namespace]]}

    def namespace_properties(self, namespace: str) -> dict[str, Any]:
        """``GET /v1/namespaces/{namespace}``.

        Raises:
            NotFoundError: not the lake's namespace.
        """
        self._check_namespace(namespace)
        return {"namespace": [self.namespace], "properties": {}}

    def tables(self, namespace: str) -> dict[str, Any]:
        """``GET /v1/namespaces/{namespace}/tables``: every table of the lake.

        Raises:
            NotFoundError: not the lake's namespace.
        """
        self._check_namespace(namespace)
        names = sorted(
            ident[-1] for ident in self.store.catalog.list_tables(self.namespace) if ident[-1] not in SQL_HIDDEN_TABLES
        )
        return {"identifiers": [{"namespace": [self.namespace], "name": name} for name in names]}

    def load_table(self, namespace: str, name: str) -> tuple[str, str, dict[str, str]]:
        """``GET /v1/namespaces/{namespace}/tables/{table}``: (metadata location, metadata JSON, FileIO config).

        Raises:
            NotFoundError: no such namespace or table.
        """
        self._check_namespace(namespace)
        try:
            if name in SQL_HIDDEN_TABLES:  # users' and tokens' hashes: lakeops' own, like for user SQL
                raise NoSuchTableError(name)
            table = self.store.catalog.load_table((self.namespace, name))
        except (NoSuchTableError, ValueError) as exc:
            raise NotFoundError(
                f"Table does not exist: {self.namespace}.{name}", details={"iceberg_type": "NoSuchTableException"}
            ) from exc
        return table.metadata_location, table.metadata.model_dump_json(), {}

    def _check_namespace(self, namespace: str) -> None:
        if namespace.replace(LEVEL_SEPARATOR, ".") != self.namespace:
            raise NotFoundError(
                f"Namespace does not exist: {namespace.replace(LEVEL_SEPARATOR, '.')}",
                details={"iceberg_type": "NoSuchNamespaceException"},
            )
