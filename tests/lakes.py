"""Lake settings for tests: one isolated lake per call, on any backend kind."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pyiceberg.io import load_file_io
from s3server import S3Target

from catalog.tables import TABLES
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
from lakeops.tracking import TrackingService


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


class EmptyLakes:
    """Fresh empty lakes of the SQLite-catalog kinds (``file``, ``s3``) as copies of one built by ``open_store``.

    Opening a new lake creates its 34 tables one by one (a metadata file written and read back and a
    catalog commit each): 0.3-0.7 CPU-s and, on a busy 2-core box, 1-4 s (file) or 3-7 s (s3) of waiting
    per test. The first :meth:`prepare` of a kind opens a real lake (``open_store``, so the creation path
    still runs once per worker and kind) and keeps its catalog database and table metadata files; later
    ones write those files under the new lake's warehouse, with locations and table uuids rewritten, and
    the catalog database beside them with its locations rewritten: what ``open_store`` would have left, in
    0.01-0.1 s (file) or 0.2-2 s (s3, one PUT per table). The store that then opens it finds every table as
    on any existing lake (loaded, nothing to evolve).

    REST lakes are created as before: SeaweedFS's catalog gives a registered table a uuid of its own, so
    the first commit to a copy fails its uuid requirement.

    Only for a lake about to be opened by ``open_store``: a test about a lake that does not exist yet
    takes plain settings.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._templates: dict[str, _LakeTemplate] = {}

    def prepare(self, settings: LakeopsSettings, s3: S3Target | None) -> None:
        """Make the lake ``settings`` names exist, empty, unless it is not of a kind copied here.

        ``settings.home`` must not hold a lake yet.
        """
        if settings.catalog.kind != "sql" or settings.catalog.uri is not None:
            return
        kind = settings.storage.kind.replace("local", "file")
        if kind not in self._templates:
            home = self._root / f"template-{kind}"
            self._templates[kind] = _LakeTemplate(make_settings(kind, home, s3))
        self._templates[kind].copy_to(settings)


class _LakeTemplate:
    """The catalog database and table metadata files of a lake just opened (and closed) by ``open_store``."""

    def __init__(self, settings: LakeopsSettings) -> None:
        open_store(settings).close()
        self.root = settings.warehouse()
        self.catalog_db = (settings.home / "catalog.db").read_bytes()
        with contextlib.closing(sqlite3.connect(settings.home / "catalog.db")) as db:
            locations = [row[0] for row in db.execute("SELECT metadata_location FROM iceberg_tables")]
        assert len(locations) == len(TABLES), locations
        io = load_file_io(settings.catalog_properties())
        self.files: list[tuple[str, str]] = []
        for location in locations:
            assert location.startswith(self.root), location
            with io.new_input(location).open() as f:
                self.files.append((location.removeprefix(self.root), f.read().decode()))

    def copy_to(self, settings: LakeopsSettings) -> None:
        root = settings.warehouse()
        assert root != self.root, "a copy needs a warehouse of its own"
        io = load_file_io(settings.catalog_properties())

        def write(item: tuple[str, str]) -> None:
            path, text = item
            uuid_at = re.search(r'"table-uuid"\s*:\s*"([0-9a-f-]{36})"', text)
            assert uuid_at is not None, path
            text = text.replace(self.root, root).replace(uuid_at.group(1), str(uuid.uuid4()))
            with io.new_output(root + path).create(overwrite=False) as f:
                f.write(text.encode())

        with ThreadPoolExecutor(max_workers=8) as pool:  # s3: one PUT each, so at once
            list(pool.map(write, self.files))
        settings.home.mkdir(parents=True, exist_ok=True)
        target = settings.home / "catalog.db"
        assert not target.exists(), f"{settings.home} holds a lake already"
        target.write_bytes(self.catalog_db)
        with contextlib.closing(sqlite3.connect(target)) as db, db:
            db.execute(
                "UPDATE iceberg_tables SET metadata_location = replace(metadata_location, ?, ?)", (self.root, root)
            )
