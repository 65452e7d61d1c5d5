"""The model registry's state: every change row kept in order, so any past moment can be answered.

Registry tables are small (models, versions, aliases, tags, deployments number in the
thousands), so the whole history is folded into memory: each entity keeps the list of its
change rows in the order they were applied, the current state is the last one, and the state
at a past time ``t`` is the last one with ``changed_at <= t``. ``TrackingState.apply`` hands
registry tables to ``RegistryState.apply``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from catalog.tables import (
    DEPLOYMENT_EVENTS,
    MODEL_ALIAS_CHANGES,
    MODEL_VERSION_CHANGES,
    REGISTERED_MODEL_CHANGES,
    REGISTRY_TAG_CHANGES,
)
from lakeops.stores.epochs import epoch_ints


class _Dated(Protocol):
    @property
    def changed_at(self) -> int: ...


D = TypeVar("D", bound=_Dated)


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One change row of a registered model."""

    registered_model_id: str
    name: str
    description: str | None
    is_deleted: bool
    created_at: int
    changed_at: int
    actor: str | None
    operation: str


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One change row of a model version."""

    registered_model_id: str
    version: int
    source: str
    storage_location: str | None
    source_run_id: str | None
    model_id: str | None
    run_link: str | None
    description: str | None
    user_id: str | None
    stage: str
    status: str
    status_message: str | None
    is_deleted: bool
    created_at: int
    changed_at: int
    actor: str | None
    operation: str


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """One change row of an alias: set (to a version), or deleted."""

    registered_model_id: str
    alias: str
    version: int | None
    is_deleted: bool
    is_forced: bool
    force_reason: str | None
    gate_reasons: str | None
    changed_at: int
    actor: str | None
    operation: str


@dataclass(frozen=True, slots=True)
class TagRecord:
    """One change row of a registry tag."""

    key: str
    value: str | None
    is_deleted: bool
    changed_at: int


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One deployment event: a version entering (or leaving) an environment."""

    deployment_id: str
    registered_model_id: str
    model_name: str
    version: int
    environment: str
    application_version: str | None
    target: str | None
    is_retired: bool
    changed_at: int
    actor: str | None
    operation: str


def latest(history: list[D], as_of: int | None = None) -> D | None:
    """The last record of ``history`` (at or before ``as_of`` ms, when given)."""
    if as_of is None:
        return history[-1] if history else None
    # Rows from other replicas may arrive after later ones of ours: take the newest by time
    # (ties go to the row applied last, which is the one written last by one writer).
    best: D | None = None
    for record in history:
        if record.changed_at <= as_of and (best is None or record.changed_at >= best.changed_at):
            best = record
    return best


class RegistryState:
    """Registered models, versions, aliases, tags and deployments, with their full history."""

    def __init__(self) -> None:
        self.models: dict[str, list[ModelRecord]] = {}
        self.model_ids_by_name: dict[str, str] = {}  # current names of models not deleted
        self.versions: dict[str, dict[int, list[VersionRecord]]] = {}
        self.aliases: dict[str, dict[str, list[AliasRecord]]] = {}
        self.tags: dict[tuple[str, int | None], dict[str, list[TagRecord]]] = {}
        self.deployments: list[DeploymentRecord] = []
        self.max_version: dict[str, int] = {}

    def apply(self, table: str, rows: pa.Table | pa.RecordBatch) -> None:
        """Fold rows of one registry table, in row order."""
        _HANDLERS[table](self, rows)

    def model_id_at(self, name: str, as_of: int | None) -> str | None:
        """The id of the model called ``name`` (and not deleted) now or at ``as_of``."""
        if as_of is None:
            return self.model_ids_by_name.get(name)
        for model_id, history in list(self.models.items()):  # a snapshot: writers add entries concurrently
            record = latest(history, as_of)
            if record is not None and record.name == name and not record.is_deleted:
                return model_id
        return None

    def tags_at(self, model_id: str, version: int | None, as_of: int | None) -> dict[str, str]:
        """The tags of a model (``version`` None) or version, now or at ``as_of``."""
        out: dict[str, str] = {}
        for key, history in list(self.tags.get((model_id, version), {}).items()):
            record = latest(history, as_of)
            if record is not None and not record.is_deleted:
                out[key] = record.value or ""
        return out

    def aliases_at(self, model_id: str, as_of: int | None) -> dict[str, int]:
        """Alias -> version of one model, now or at ``as_of``."""
        out: dict[str, int] = {}
        for alias, history in list(self.aliases.get(model_id, {}).items()):
            record = latest(history, as_of)
            if record is not None and not record.is_deleted and record.version is not None:
                out[alias] = record.version
        return out

    # -- handlers ------------------------------------------------------------------------------

    def _apply_models(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(["registered_model_id", "name", "description", "is_deleted", "actor", "operation"])
        data = cols.to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms", null=0)
        changed = epoch_ints(rows.column("changed_at"), "ms", null=0)
        for i, model_id in enumerate(data["registered_model_id"]):
            history = self.models.setdefault(model_id, [])
            old = history[-1] if history else None
            record = ModelRecord(
                registered_model_id=model_id,
                name=data["name"][i],
                description=data["description"][i],
                is_deleted=data["is_deleted"][i],
                created_at=created[i],
                changed_at=changed[i],
                actor=data["actor"][i],
                operation=data["operation"][i],
            )
            history.append(record)
            if old is not None and self.model_ids_by_name.get(old.name) == model_id:
                del self.model_ids_by_name[old.name]
            if not record.is_deleted:
                self.model_ids_by_name[record.name] = model_id

    def _apply_versions(self, rows: pa.Table | pa.RecordBatch) -> None:
        names = [
            "registered_model_id",
            "version",
            "source",
            "storage_location",
            "source_run_id",
            "model_id",
            "run_link",
            "description",
            "user_id",
            "stage",
            "status",
            "status_message",
            "is_deleted",
            "actor",
            "operation",
        ]
        data = rows.select(names).to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms", null=0)
        changed = epoch_ints(rows.column("changed_at"), "ms", null=0)
        for i, model_id in enumerate(data["registered_model_id"]):
            record = VersionRecord(**{n: data[n][i] for n in names}, created_at=created[i], changed_at=changed[i])
            self.versions.setdefault(model_id, {}).setdefault(record.version, []).append(record)
            self.max_version[model_id] = max(self.max_version.get(model_id, 0), record.version)

    def _apply_aliases(self, rows: pa.Table | pa.RecordBatch) -> None:
        names = [
            "registered_model_id",
            "alias",
            "version",
            "is_deleted",
            "is_forced",
            "force_reason",
            "gate_reasons",
            "actor",
            "operation",
        ]
        data = rows.select(names).to_pydict()
        changed = epoch_ints(rows.column("changed_at"), "ms", null=0)
        for i, model_id in enumerate(data["registered_model_id"]):
            record = AliasRecord(**{n: data[n][i] for n in names}, changed_at=changed[i])
            self.aliases.setdefault(model_id, {}).setdefault(record.alias, []).append(record)

    def _apply_tags(self, rows: pa.Table | pa.RecordBatch) -> None:
        data = rows.select(["registered_model_id", "version", "key", "value", "is_deleted"]).to_pydict()
        changed = epoch_ints(rows.column("changed_at"), "ms", null=0)
        for i, model_id in enumerate(data["registered_model_id"]):
            record = TagRecord(
                key=data["key"][i], value=data["value"][i], is_deleted=data["is_deleted"][i], changed_at=changed[i]
            )
            self.tags.setdefault((model_id, data["version"][i]), {}).setdefault(record.key, []).append(record)

    def _apply_deployments(self, rows: pa.Table | pa.RecordBatch) -> None:
        names = [
            "deployment_id",
            "registered_model_id",
            "model_name",
            "version",
            "environment",
            "application_version",
            "target",
            "is_retired",
            "actor",
            "operation",
        ]
        data = rows.select(names).to_pydict()
        changed = epoch_ints(rows.column("changed_at"), "ms", null=0)
        for i in range(rows.num_rows):
            self.deployments.append(DeploymentRecord(**{n: data[n][i] for n in names}, changed_at=changed[i]))


_HANDLERS: dict[str, Callable[[RegistryState, Any], None]] = {
    REGISTERED_MODEL_CHANGES.name: RegistryState._apply_models,
    MODEL_VERSION_CHANGES.name: RegistryState._apply_versions,
    MODEL_ALIAS_CHANGES.name: RegistryState._apply_aliases,
    REGISTRY_TAG_CHANGES.name: RegistryState._apply_tags,
    DEPLOYMENT_EVENTS.name: RegistryState._apply_deployments,
}
REGISTRY_TABLE_NAMES = frozenset(_HANDLERS)
