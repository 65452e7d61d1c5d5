"""``POST /api/v1/datasets`` with a ``location``: data already in the object store, by reference."""

from __future__ import annotations

import io
import uuid
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from minio import Minio

pytestmark = pytest.mark.api


def test_a_location_is_registered_on_s3_and_refused_on_file(server: Any) -> None:
    api = f"{server.url}/api/v1"
    storage = server.settings.storage
    if storage.kind == "local":
        refused = httpx.post(f"{api}/datasets", json={"name": "events", "location": "s3://bucket/data"})
        assert refused.status_code == 400 and "local disk" in refused.json()["error"]["message"]
        return
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2, 3, 4]}), buffer)
    key = f"external/{uuid.uuid4().hex[:8]}/part-0.parquet"
    s3 = Minio(
        storage.endpoint.split("://", 1)[1],
        storage.access_key_id,
        storage.secret_access_key.get_secret_value(),
        secure=False,
    )
    s3.put_object(storage.bucket, key, io.BytesIO(buffer.getvalue()), len(buffer.getvalue()))
    location = f"s3://{storage.bucket}/{key.rsplit('/', 1)[0]}"
    logged = httpx.post(f"{api}/datasets", json={"name": f"events-{uuid.uuid4().hex[:6]}", "location": location})
    assert logged.status_code == 201, logged.text
    assert logged.json()["row_count"] == 4 and logged.json()["source"] == location
    both = httpx.post(f"{api}/datasets", json={"name": "e", "location": location, "iceberg_table": "a.b"})
    assert both.status_code == 400 and "exactly one" in both.json()["error"]["message"]
    bad = httpx.post(f"{api}/datasets", json={"name": "e", "location": "http://example.com/x"})
    assert bad.status_code == 400 and "s3://bucket/prefix" in bad.json()["error"]["message"]
