"""The registry service's shared base: store, actor and clock, the change rows it appends, lookups.

Every registry write is ``store.write(build)``: ``build`` looks the model and version up in the
folded ``RegistryState`` (inside the store's write lock) and returns the change rows built here.
Reads turn the state's records into the entities of ``entities.py`` (``_model_entity``,
``_version_entity``), now or ``as_of`` a past time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from catalog.tables import (
    MODEL_ALIAS_CHANGES,
    MODEL_VERSION_CHANGES,
    REGISTERED_MODEL_CHANGES,
    REGISTRY_TAG_CHANGES,
    TableDef,
)
from lakeops.actor import ActorField
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.registry.entities import ModelVersion, RegisteredModel
from lakeops.registry.gate import AliasGate
from lakeops.registry.validation import parse_version
from lakeops.search import PinnedResults
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.registry_state import ModelRecord, RegistryState, VersionRecord, latest
from lakeops.stores.state import TrackingState


class RegistryCore:
    """What every part of the registry service shares: the store, the actor, the clock, change rows, lookups."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(
        self,
        store: IcebergStore,
        *,
        gate: AliasGate | None = None,
        protected_aliases: Iterable[str] = ("production",),
        now_ms: Callable[[], int] | None = None,
        actor: str | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        self.protected_aliases = frozenset(protected_aliases)
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.actor = actor or "unknown"
        self._pins = PinnedResults()

    @property
    def registry(self) -> RegistryState:
        """The registry's folded state."""
        return self.store.state.registry

    # -- change rows -------------------------------------------------------------------------------

    def _change(self, operation: str, now: int | None = None) -> dict[str, Any]:
        return {
            "changed_at": (now if now is not None else self._now_ms()) * 1000,
            "actor": self.actor,
            "operation": operation,
            "writer_id": self.store.writer_id,
            "wal_seq": 0,  # stamped with the real log position by the store
        }

    def _model_row(self, m: ModelRecord, operation: str) -> pa.RecordBatch:
        row = {
            "registered_model_id": m.registered_model_id,
            "name": m.name,
            "description": m.description,
            "is_deleted": m.is_deleted,
            "created_at": m.created_at * 1000,
            **self._change(operation),
        }
        return record_batch(REGISTERED_MODEL_CHANGES, {k: [v] for k, v in row.items()})

    def _version_rows(self, versions: list[VersionRecord], operation: str) -> pa.RecordBatch:
        change = self._change(operation)
        names = [f.name for f in MODEL_VERSION_CHANGES.arrow_schema]
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for v in versions:
            for n in names:
                if n in change:
                    columns[n].append(change[n])
                elif n == "created_at":
                    columns[n].append(v.created_at * 1000)
                else:
                    columns[n].append(getattr(v, n))
        return record_batch(MODEL_VERSION_CHANGES, columns)

    def _alias_rows(self, records: list[dict[str, Any]], operation: str) -> pa.RecordBatch:
        change = self._change(operation)
        defaults = {"is_forced": False, "force_reason": None, "gate_reasons": None, "is_deleted": False}
        names = [f.name for f in MODEL_ALIAS_CHANGES.arrow_schema]
        rows = [{**defaults, **change, **r} for r in records]
        return record_batch(MODEL_ALIAS_CHANGES, {n: [r.get(n) for r in rows] for n in names})

    def _tag_rows(self, model_id: str, version: int | None, tags: Mapping[str, str | None]) -> pa.RecordBatch:
        change = self._change("delete_tag" if all(v is None for v in tags.values()) else "set_tag")
        n = len(tags)
        return record_batch(
            REGISTRY_TAG_CHANGES,
            {
                "registered_model_id": [model_id] * n,
                "version": [version] * n,
                "key": list(tags),
                "value": list(tags.values()),
                "is_deleted": [v is None for v in tags.values()],
                **{k: [v] * n for k, v in change.items()},
            },
        )

    # -- lookups -----------------------------------------------------------------------------------

    def _model(self, reg: RegistryState, name: str, as_of: int | None = None) -> ModelRecord:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("Missing value for required parameter 'name'")
        model_id = reg.model_id_at(name, as_of)
        record = latest(reg.models.get(model_id, []), as_of) if model_id is not None else None
        if record is None:
            when = "" if as_of is None else f" at {iso_ms(as_of)}"
            raise NotFoundError(f"Registered Model with name={name} not found{when}", details={"name": name})
        return record

    def _version(
        self, reg: RegistryState, model: ModelRecord, version: object, as_of: int | None = None
    ) -> VersionRecord:
        number = parse_version(version)
        history = reg.versions.get(model.registered_model_id, {}).get(number, [])
        record = latest(history, as_of)
        if record is None or record.is_deleted:
            raise NotFoundError(
                f"Model Version (name={model.name}, version={number}) not found",
                details={"name": model.name, "version": number},
            )
        return record

    def _live_versions(self, reg: RegistryState, model_id: str, as_of: int | None) -> list[VersionRecord]:
        out: list[VersionRecord] = []
        for history in list(reg.versions.get(model_id, {}).values()):
            record = latest(history, as_of)
            if record is not None and not record.is_deleted:
                out.append(record)
        return out

    def _version_entity(
        self,
        reg: RegistryState,
        model: ModelRecord,
        v: VersionRecord,
        as_of: int | None,
        aliases: dict[str, int] | None = None,
    ) -> ModelVersion:
        aliases = reg.aliases_at(model.registered_model_id, as_of) if aliases is None else aliases
        return ModelVersion(
            name=model.name,
            version=v.version,
            registered_model_id=model.registered_model_id,
            creation_timestamp=v.created_at,
            last_updated_timestamp=v.changed_at,
            description=v.description,
            user_id=v.user_id,
            current_stage=v.stage,
            source=v.source,
            storage_location=v.storage_location,
            run_id=v.source_run_id,
            model_id=v.model_id,
            run_link=v.run_link,
            status=v.status,
            status_message=v.status_message,
            tags=reg.tags_at(model.registered_model_id, v.version, as_of),
            aliases=sorted(a for a, n in aliases.items() if n == v.version),
        )

    def _model_entity(self, reg: RegistryState, model: ModelRecord, as_of: int | None) -> RegisteredModel:
        aliases = reg.aliases_at(model.registered_model_id, as_of)
        newest: dict[str, VersionRecord] = {}
        for v in self._live_versions(reg, model.registered_model_id, as_of):
            if v.stage not in newest or v.version > newest[v.stage].version:
                newest[v.stage] = v
        latest_versions = [
            self._version_entity(reg, model, v, as_of, aliases)
            for v in sorted(newest.values(), key=lambda x: x.version)
        ]
        return RegisteredModel(
            name=model.name,
            registered_model_id=model.registered_model_id,
            creation_timestamp=model.created_at,
            last_updated_timestamp=max([model.changed_at, *(v.last_updated_timestamp for v in latest_versions)]),
            description=model.description,
            tags=reg.tags_at(model.registered_model_id, None, as_of),
            aliases=aliases,
            latest_versions=latest_versions,
        )

    def _write_tags(self, name: str, version: object | None, tags: Mapping[str, str | None]) -> None:
        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            number = None if version is None else self._version(reg, model, version).version
            if all(v is None for v in tags.values()):
                current = reg.tags_at(model.registered_model_id, number, None)
                missing = [k for k in tags if k not in current]
                if missing:
                    raise NotFoundError(f"No tag with key {missing[0]!r} on {name}", details={"key": missing[0]})
            return {REGISTRY_TAG_CHANGES.name: self._tag_rows(model.registered_model_id, number, tags)}

        self.store.write(build)


def record_batch(table: TableDef, columns: Mapping[str, Sequence[Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(dict(columns), schema=table.arrow_schema)


def with_changes(record: Any, **changes: Any) -> Any:
    values = {name: getattr(record, name) for name in record.__slots__}
    values.update(changes)
    return type(record)(**values)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()
