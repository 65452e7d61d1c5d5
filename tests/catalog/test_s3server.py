"""The ``s3_server`` fixture works: plain S3 through minio, and pyiceberg through both catalog kinds."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType
from s3server import S3Target, pyiceberg_s3_properties, rest_catalog_properties

pytestmark = pytest.mark.s3

SCHEMA = Schema(
    NestedField(1, "run_id", StringType(), required=False),
    NestedField(2, "step", LongType(), required=False),
    NestedField(3, "value", DoubleType(), required=False),
)
SPEC = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=BucketTransform(16), name="run_id_bucket"))


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def test_bucket_put_get(s3_server: S3Target) -> None:
    bucket = s3_server.make_bucket(_unique("lakeops-t-"), versioning=True)
    client = s3_server.client()
    client.put_object(bucket, "dir/hello.txt", io.BytesIO(b"hello"), 5)
    response = client.get_object(bucket, "dir/hello.txt")
    try:
        assert response.read() == b"hello"
    finally:
        response.close()
        response.release_conn()
    assert client.get_bucket_versioning(bucket).status == "Enabled"
    assert client.bucket_exists(s3_server.bucket)


def _round_trip(catalog: Catalog) -> None:
    namespace = _unique("lakeops_t_")
    catalog.create_namespace(namespace)
    table = catalog.create_table((namespace, "metrics"), schema=SCHEMA, partition_spec=SPEC)
    data = pa.table(
        {
            "run_id": pa.array([f"run-{i % 5}" for i in range(100)], pa.string()),
            "step": pa.array(range(100), pa.int64()),
            "value": pa.array([i / 2 for i in range(100)], pa.float64()),
        }
    )
    with table.transaction() as tx:
        tx.append(data, snapshot_properties={"lakeops.x": "1"})
        tx.set_properties({"lakeops.schema-version": "1"})
    table = catalog.load_table((namespace, "metrics"))
    snapshot = table.current_snapshot()
    assert snapshot is not None
    assert snapshot.summary is not None
    assert snapshot.summary["lakeops.x"] == "1"
    assert table.properties["lakeops.schema-version"] == "1"
    assert table.scan().to_arrow().sort_by("step").equals(data)


def test_sql_catalog_round_trip(s3_server: S3Target, tmp_path: Path) -> None:
    catalog = SqlCatalog(
        "sql",
        uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=f"s3://{s3_server.bucket}/{_unique('wh-')}",
        **pyiceberg_s3_properties(s3_server),
    )
    _round_trip(catalog)


@pytest.mark.skipif(
    bool(os.environ.get("LAKEOPS_TEST_S3_ENDPOINT")) and not os.environ.get("LAKEOPS_TEST_ICEBERG_URI"),
    reason="an external S3 endpoint (LAKEOPS_TEST_S3_ENDPOINT) without LAKEOPS_TEST_ICEBERG_URI has no REST catalog",
)
def test_rest_catalog_round_trip(s3_server: S3Target) -> None:
    assert s3_server.iceberg_uri is not None
    _round_trip(RestCatalog("rest", **rest_catalog_properties(s3_server)))
