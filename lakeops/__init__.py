"""lakeops: lakehouse-native ML metadata on Apache Iceberg.

``import lakeops`` stays cheap: ``lakeops.connect`` loads the client on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeops.client import Client, connect

__all__ = ["Client", "connect"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import lakeops.client

        return getattr(lakeops.client, name)
    raise AttributeError(f"module 'lakeops' has no attribute {name!r}")
