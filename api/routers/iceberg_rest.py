"""The Iceberg REST catalog protocol, read-only, under ``/iceberg``: engines read the lake by URL.

``pyiceberg`` (``type=rest, uri=http://host:5000/iceberg``) and DuckDB
(``ATTACH 'lakeops' AS lake (TYPE iceberg, ENDPOINT 'http://host:5000/iceberg', AUTHORIZATION_TYPE 'none')``)
list and load lakeops' tables here. Errors take the spec's shape
``{"error": {"message", "type", "code"}}`` (``api/errors.py``); any write is a 405.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Response

from api.deps import IcebergCatalogDep

router = APIRouter()

PREFIX = "/iceberg"


@router.get("/v1/config")
def get_config(catalog: IcebergCatalogDep, warehouse: str | None = None) -> dict[str, Any]:  # noqa: ARG001 - one warehouse
    """The catalog's configuration (the store's address, never its keys) and the routes it serves."""
    return catalog.config()


@router.get("/v1/namespaces")
def list_namespaces(catalog: IcebergCatalogDep, parent: str | None = None) -> dict[str, Any]:
    """The lake's namespace."""
    return catalog.namespaces(parent)


@router.get("/v1/namespaces/{namespace}")
def load_namespace(catalog: IcebergCatalogDep, namespace: str) -> dict[str, Any]:
    """A namespace and its properties."""
    return catalog.namespace_properties(namespace)


@router.head("/v1/namespaces/{namespace}", status_code=204)
def namespace_exists(catalog: IcebergCatalogDep, namespace: str) -> Response:
    """204 if the namespace exists, 404 if not."""
    catalog.namespace_properties(namespace)
    return Response(status_code=204)


@router.get("/v1/namespaces/{namespace}/tables")
def list_tables(catalog: IcebergCatalogDep, namespace: str) -> dict[str, Any]:
    """The lake's tables."""
    return catalog.tables(namespace)


@router.get("/v1/namespaces/{namespace}/views")
def list_views(catalog: IcebergCatalogDep, namespace: str) -> dict[str, Any]:
    """No views are served (lakeops' views are DuckDB SQL, not Iceberg views)."""
    catalog.namespace_properties(namespace)
    return {"identifiers": []}


@router.get("/v1/namespaces/{namespace}/tables/{table}")
def load_table(catalog: IcebergCatalogDep, namespace: str, table: str) -> Response:
    """The table's current metadata location and metadata (the metadata JSON passed through as is)."""
    location, metadata, config = catalog.load_table(namespace, table)
    body = b'{"metadata-location":%b,"metadata":%b,"config":%b}' % (
        orjson.dumps(location),
        metadata.encode(),
        orjson.dumps(config),
    )
    return Response(body, media_type="application/json")


@router.head("/v1/namespaces/{namespace}/tables/{table}", status_code=204)
def table_exists(catalog: IcebergCatalogDep, namespace: str, table: str) -> Response:
    """204 if the table exists, 404 if not."""
    catalog.load_table(namespace, table)
    return Response(status_code=204)
