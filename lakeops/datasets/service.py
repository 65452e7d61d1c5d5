"""``DatasetService``: the datasets aggregate's one public service, composed of its parts.

``versions.DatasetVersions`` records, links and reads versions; ``sources.SourcesMixin`` adds
one ``log_*`` method per kind of source on top of it.
"""

from __future__ import annotations

from lakeops.datasets.sources import SourcesMixin


class DatasetService(SourcesMixin):
    """Log dataset versions and link them to runs."""
