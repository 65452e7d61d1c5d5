"""``RegistryService``: the registry's one public service, composed of its parts.

Each part is a class over the shared ``RegistryCore`` (store, actor, clock, change rows,
lookups) in its own module: ``models``, ``versions``, ``aliases`` (which builds on
``versions``), ``deployments`` and ``search``. A new registry operation goes into the part it
belongs to; a new part is one more base class here.
"""

from __future__ import annotations

from lakeops.registry.aliases import AliasesMixin
from lakeops.registry.deployments import DeploymentsMixin
from lakeops.registry.models import ModelsMixin
from lakeops.registry.search import SearchMixin
from lakeops.registry.versions import VersionsMixin


class RegistryService(ModelsMixin, AliasesMixin, VersionsMixin, DeploymentsMixin, SearchMixin):
    """The registry API: what the REST layer (native and MLflow) calls."""
