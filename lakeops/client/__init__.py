"""The lakeops Python client: log from training code, analyse in notebooks.

``lakeops.connect(url)`` talks to a running ``lakeops serve``; ``lakeops.connect()`` opens
the embedded lake in this process. Both give the same ``Client``.
"""

from lakeops.client.client import Client, connect
from lakeops.client.display import (
    DatasetVersionView,
    ExperimentView,
    HtmlCard,
    LineageView,
    ModelVersionView,
    RunView,
    html_card,
)
from lakeops.client.runs import ActiveRun

__all__ = [
    "ActiveRun",
    "Client",
    "DatasetVersionView",
    "ExperimentView",
    "HtmlCard",
    "LineageView",
    "ModelVersionView",
    "RunView",
    "connect",
    "html_card",
]
