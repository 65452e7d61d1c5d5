"""The model registry: registered models, versions, aliases, legacy stages, tags and deployments.

Every change is an append-only row (``registered_model_changes``, ``model_version_changes``,
``model_alias_changes``, ``registry_tag_changes``, ``deployment_events``): moving an alias is
a new row, never an overwrite. Because the history is kept, every read takes ``as_of`` and
answers as the registry stood at that moment ("which version held ``production`` on 1 March").

Modules: ``service`` (``RegistryService``, composed of the parts below), ``core`` (store, actor,
change rows, lookups), ``models``, ``versions``, ``aliases``, ``deployments``, ``search``,
``entities`` (what reads return), ``validation`` (input rules and limits) and ``gate`` (the
``AliasGate`` port that guards protected aliases).
"""

from lakeops.registry.gate import AliasGate
from lakeops.registry.service import RegistryService

__all__ = ["AliasGate", "RegistryService"]
