"""Fixtures for domain tests: one lake per test on every backend kind.

``lake_settings`` is parametrized over the three backends of the contract suite:
``file`` (SQLite catalog, file:// warehouse), ``s3`` (SQLite catalog, s3:// warehouse on the
session's SeaweedFS) and ``rest`` (SeaweedFS's Iceberg REST catalog, data on its S3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lakes import EmptyLakes, make_settings

from lakeops.settings import LakeopsSettings
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService

# Marked in the params, so `-m "not s3"` deselects them at collection (a marker applied inside
# the fixture comes too late for -m).
BACKENDS = [
    pytest.param("file", id="file"),
    pytest.param("s3", id="s3", marks=pytest.mark.s3),
    pytest.param("rest", id="rest", marks=pytest.mark.s3),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend kind under test."""
    kind: str = request.param
    return kind


@pytest.fixture
def lake_factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., LakeopsSettings]:
    """Builds settings for a fresh lake of the current backend (same lake for the same ``name``)."""
    made: dict[str, LakeopsSettings] = {}

    def factory(name: str = "main", **write: Any) -> LakeopsSettings:
        if name not in made:
            s3 = request.getfixturevalue("s3_server") if backend != "file" else None
            made[name] = make_settings(backend, tmp_path / name, s3, **write)
        return made[name]

    return factory


@pytest.fixture
def lake_settings(lake_factory: Callable[..., LakeopsSettings]) -> LakeopsSettings:
    """Settings of this test's lake."""
    return lake_factory()


@pytest.fixture(scope="session")
def empty_lakes(tmp_path_factory: pytest.TempPathFactory) -> EmptyLakes:
    """Fresh empty lakes as copies of one created per kind (see ``EmptyLakes``)."""
    return EmptyLakes(tmp_path_factory.mktemp("empty-lakes"))


@pytest.fixture
def store(
    lake_settings: LakeopsSettings, empty_lakes: EmptyLakes, request: pytest.FixtureRequest
) -> Iterator[IcebergStore]:
    """An open store on this test's new lake (file, s3: a copy of an empty lake, see ``EmptyLakes``)."""
    s3 = request.getfixturevalue("s3_server") if lake_settings.storage.kind == "s3" else None
    empty_lakes.prepare(lake_settings, s3)
    s = open_store(lake_settings)
    yield s
    s.close()


@pytest.fixture
def tracking(store: IcebergStore) -> TrackingService:
    """The tracking service over ``store``."""
    return TrackingService(store)
