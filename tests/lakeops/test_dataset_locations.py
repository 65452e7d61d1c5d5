"""Data already in the object store registered as dataset versions by reference (no copy), through
the service and the client: digest of the listing, Parquet schema and rows from footers, the same
files one version, a rewritten file a new one; a file:// lake refuses with a clear message."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lakes import make_settings
from s3server import S3Target

import lakeops
from lakeops.errors import InvalidArgumentError, NotFoundError


def _put_parquet(s3: S3Target, key: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    s3.client().put_object(s3.bucket, key, io.BytesIO(data), len(data))


@pytest.mark.s3
def test_a_parquet_directory_in_the_store_is_a_dataset_version_without_a_copy(
    s3_server: S3Target, tmp_path: Path
) -> None:
    prefix = f"external/{uuid.uuid4().hex[:8]}/events"
    _put_parquet(s3_server, f"{prefix}/part-0.parquet", pa.table({"id": [1, 2, 3], "kind": ["a", "b", "a"]}))
    _put_parquet(s3_server, f"{prefix}/part-1.parquet", pa.table({"id": [4, 5], "kind": ["b", "b"]}))
    uri = f"s3://{s3_server.bucket}/{prefix}"
    settings = make_settings("s3", tmp_path / "lake", s3_server)
    with lakeops.connect(settings=settings) as client:
        objects_before = sum(1 for _ in s3_server.client().list_objects(s3_server.bucket, recursive=True))
        with client.start_run("located") as run:
            first = run.log_dataset(uri, name="events")
        assert first.source_type == "location" and first.source == uri
        assert first.row_count == 5 and [c["name"] for c in first.schema] == ["id", "kind"]
        # Registered by reference: the store holds no new data object (only the lake's own metadata grew).
        after = {o.object_name for o in s3_server.client().list_objects(s3_server.bucket, recursive=True)}
        assert not any(name.startswith(f"{settings.storage.prefix}/blobs/") for name in after)
        assert len(after) >= objects_before
        again = client.log_dataset(uri, name="events")
        assert again.id == first.id  # the same files: the same version
        assert (
            client.transport.log_dataset_location("events", uri + "/", run_id=None, direction="input")[
                "dataset_version_id"
            ]
            == first.id
        )

        _put_parquet(s3_server, f"{prefix}/part-1.parquet", pa.table({"id": [4, 5, 6], "kind": ["b", "b", "c"]}))
        changed = client.log_dataset(uri, name="events")
        assert changed.id != first.id and changed.row_count == 6

        with pytest.raises(NotFoundError, match="No file under"):
            client.log_dataset(f"s3://{s3_server.bucket}/external/nothing-here", name="events")
        with pytest.raises(InvalidArgumentError, match="not data in the store"):
            client.log_dataset(uri, name="events", validate=True)


def test_a_file_lake_refuses_s3_locations_clearly(tmp_path: Path) -> None:
    with (
        lakeops.connect(settings=make_settings("file", tmp_path / "lake", None)) as client,
        pytest.raises(InvalidArgumentError, match="keeps its data on local disk"),
    ):
        client.log_dataset("s3://bucket/data", name="events")
