"""Storage behind the domain: the Iceberg store and its factory."""

from __future__ import annotations

from lakeops.settings import LakeopsSettings
from lakeops.stores.iceberg import IcebergStore


def open_store(settings: LakeopsSettings, *, start_committer: bool = True) -> IcebergStore:
    """Open the store the settings describe (any catalog kind, any storage kind)."""
    return IcebergStore(settings, start_committer=start_committer)


__all__ = ["IcebergStore", "open_store"]
