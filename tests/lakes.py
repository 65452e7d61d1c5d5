"""Lake settings for tests: one isolated lake per call, on any backend kind."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from s3server import S3Target

from lakeops.services.tracking import TrackingService
from lakeops.settings import (
    LakeopsSettings,
    LocalStorageConfig,
    ObjectCatalogConfig,
    RestCatalogConfig,
    S3StorageConfig,
    SqlCatalogConfig,
    WriteConfig,
)
from lakeops.stores import IcebergStore, open_store


def make_settings(kind: str, home: Path, s3: S3Target | None, **write: Any) -> LakeopsSettings:
    """Settings for one isolated lake of the given backend kind.

    Kinds: ``file`` and ``s3`` (SQLite catalog), ``file-object`` and ``s3-object`` (the object-store
    catalog, no database), ``rest`` (SeaweedFS's Iceberg REST catalog).
    """
    write_cfg = WriteConfig(**{"commit_interval_s": 0.2, "maintain_every_commits": 0, **write})
    suffix = uuid.uuid4().hex[:10]
    if kind in ("file", "file-object"):
        catalog_cfg = ObjectCatalogConfig() if kind == "file-object" else SqlCatalogConfig()
        return LakeopsSettings(home=home, storage=LocalStorageConfig(), catalog=catalog_cfg, write=write_cfg)
    assert s3 is not None
    storage = S3StorageConfig(
        endpoint=s3.endpoint,
        bucket=s3.bucket,
        prefix=f"t-{suffix}",
        access_key_id=s3.access_key,
        secret_access_key=SecretStr(s3.secret_key),
        region=s3.region,
    )
    if kind == "s3":
        return LakeopsSettings(home=home, storage=storage, catalog=SqlCatalogConfig(), write=write_cfg)
    if kind == "s3-object":
        return LakeopsSettings(home=home, storage=storage, catalog=ObjectCatalogConfig(), write=write_cfg)
    catalog = RestCatalogConfig(
        uri=s3.iceberg_uri,
        warehouse=f"s3://{s3.table_bucket}",
        credential=SecretStr(f"{s3.access_key}:{s3.secret_key}"),
    )
    return LakeopsSettings(home=home, storage=storage, catalog=catalog, namespace=f"t_{suffix}", write=write_cfg)


def settings_json(settings: LakeopsSettings) -> str:
    """Settings as JSON with secrets in clear, to hand to a child process."""

    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return json.dumps(reveal(settings.model_dump()))


def reopen(store: IcebergStore) -> tuple[IcebergStore, TrackingService]:
    """Close a store and open the same lake again, as a restarted process would."""
    store.close()
    fresh = open_store(store.settings)
    return fresh, TrackingService(fresh)
