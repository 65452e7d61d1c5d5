"""The model registry: registered models, versions, aliases, legacy stages, tags and deployments.

Every change is an append-only row (``registered_model_changes``, ``model_version_changes``,
``model_alias_changes``, ``registry_tag_changes``, ``deployment_events``): moving an alias is
a new row, never an overwrite. Because the history is kept, every read takes ``as_of`` and
answers as the registry stood at that moment ("which version held ``production`` on 1 March").

Aliases listed in ``protected_aliases`` are guarded by an ``AliasGate``: a version the gate
refuses gets such an alias only with ``force=True`` and a reason, both recorded in the
alias's change row.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa

from catalog.tables import (
    DEPLOYMENT_EVENTS,
    LINEAGE_EDGES,
    MODEL_ALIAS_CHANGES,
    MODEL_VERSION_CHANGES,
    REGISTERED_MODEL_CHANGES,
    REGISTRY_TAG_CHANGES,
    TableDef,
)
from lakeops.actor import ActorField
from lakeops.errors import AlreadyExistsError, DataQualityError, InvalidArgumentError, NotFoundError
from lakeops.search import PinnedResults, compile_object_filter, paginate, parse_filter
from lakeops.services.lineage import LineageEdge, NodeKind, Relation, lineage_edge_rows, model_version_node
from lakeops.services.tracking import MAX_TAG_VALUE_LENGTH, validate_key
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.registry_state import (
    AliasRecord,
    DeploymentRecord,
    ModelRecord,
    RegistryState,
    VersionRecord,
    latest,
)
from lakeops.stores.state import TrackingState

MAX_MODEL_NAME_LENGTH = 256
MAX_ALIAS_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 100_000
MAX_SEARCH_MODELS = 1000
DEFAULT_SEARCH_MODELS = 100
MAX_SEARCH_VERSIONS = 200_000
DEFAULT_SEARCH_VERSIONS = 10_000
STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}
ARCHIVING_STAGES = ("Staging", "Production")
READY = "READY"

_ALIAS = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS = re.compile(r"^v\d+$", re.IGNORECASE)
_FILTER_ENTITIES = {
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "tag": "tag",
    "tags": "tag",
}
_MODEL_ATTRIBUTES = {"name"}
_VERSION_STRING_ATTRIBUTES = {"name", "run_id", "source_path", "model_id", "current_stage"}
_VERSION_NUMERIC_ATTRIBUTES = {"version_number"}
_MODEL_ORDER_KEYS = {"name": "name", "creation_timestamp": "creation_timestamp", "timestamp": "creation_timestamp"}
_MODEL_ORDER_KEYS["last_updated_timestamp"] = "last_updated_timestamp"
_VERSION_ORDER_KEYS = {
    "name": "name",
    "version_number": "version",
    "creation_timestamp": "creation_timestamp",
    "timestamp": "creation_timestamp",
    "last_updated_timestamp": "last_updated_timestamp",
}


class AliasGate(Protocol):
    """Decides whether a model version may get a protected alias (e.g. ``production``)."""

    def check_model_version(self, *, source_run_id: str | None, model_id: str | None) -> list[str]:
        """Reasons the version must not get a protected alias; empty when it may."""


# -- entities ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One version of a registered model."""

    name: str
    version: int
    registered_model_id: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None
    user_id: str | None
    current_stage: str
    source: str
    storage_location: str | None
    run_id: str | None
    model_id: str | None
    run_link: str | None
    status: str
    status_message: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model with its versions' aliases, tags and latest version per stage."""

    name: str
    registered_model_id: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_versions: list[ModelVersion] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AliasChange:
    """One move (or deletion) of an alias, as recorded."""

    alias: str
    version: int | None
    changed_at: int
    actor: str | None
    operation: str
    is_forced: bool
    force_reason: str | None
    gate_reasons: list[str]


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model version deployed to an environment as part of an application version."""

    deployment_id: str
    model_name: str
    version: int
    environment: str
    application_version: str | None
    target: str | None
    deployed_at: int
    deployed_by: str | None
    since: int  # when this version started running there without interruption
    is_retired: bool = False


@dataclass(frozen=True, slots=True)
class ApplicationUse:
    """An application version that shipped a model, with which versions, where and when."""

    application_version: str | None
    environment: str
    versions: list[int]
    first_deployed_at: int
    last_deployed_at: int


@dataclass(frozen=True, slots=True)
class RegisteredModelPage:
    """One page of a registered-model search."""

    registered_models: list[RegisteredModel]
    next_page_token: str | None


@dataclass(frozen=True, slots=True)
class ModelVersionPage:
    """One page of a model-version search."""

    model_versions: list[ModelVersion]
    next_page_token: str | None


# -- validation -----------------------------------------------------------------------------------


def validate_model_name(name: object) -> str:
    """A registered model's name: a non-empty string without '/' (it would break ``models:/`` URIs)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("Invalid registered model name: must be a non-empty string")
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise InvalidArgumentError(f"Invalid registered model name: longer than {MAX_MODEL_NAME_LENGTH} characters")
    if "/" in name:
        raise InvalidArgumentError(f"Invalid registered model name {name!r}: must not contain '/'")
    return name


def validate_alias(alias: object) -> str:
    """MLflow's alias rules: word characters and dashes, not ``latest``, not ``v<number>``."""
    if not isinstance(alias, str) or not alias:
        raise InvalidArgumentError("Invalid alias: must be a non-empty string")
    if len(alias) > MAX_ALIAS_LENGTH:
        raise InvalidArgumentError(f"Invalid alias: longer than {MAX_ALIAS_LENGTH} characters")
    if not _ALIAS.match(alias):
        raise InvalidArgumentError(f"Invalid alias {alias!r}: only alphanumerics, underscores and dashes are allowed")
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        raise InvalidArgumentError(
            f"Invalid alias {alias!r}: 'latest' and 'v<number>' are reserved for version references"
        )
    return alias


def parse_version(version: object) -> int:
    """A version number (MLflow sends it as a string)."""
    if isinstance(version, bool):
        raise InvalidArgumentError(f"Invalid model version {version!r}: must be a positive integer")
    if isinstance(version, int):
        number = version
    elif isinstance(version, str) and version.strip().isdigit():
        number = int(version.strip())
    else:
        raise InvalidArgumentError(f"Invalid model version {version!r}: must be a positive integer")
    if number < 1:
        raise InvalidArgumentError(f"Invalid model version {version!r}: must be a positive integer")
    return number


def parse_stage(stage: object) -> str:
    """A legacy stage name, case-insensitive, in its canonical spelling."""
    found = STAGES.get(str(stage).strip().lower()) if isinstance(stage, str) else None
    if found is None:
        raise InvalidArgumentError(f"Invalid model version stage {stage!r}; use one of {sorted(STAGES.values())}")
    return found


def as_of_ms(as_of: datetime | int | None) -> int | None:
    """``as_of`` as epoch milliseconds (a naive datetime is taken as UTC)."""
    if as_of is None or isinstance(as_of, int):
        return as_of
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return int(as_of.timestamp() * 1000)


def _text(kind: str, value: object, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(f"Invalid {kind}: must be a string")
    if len(value) > limit:
        raise InvalidArgumentError(f"Invalid {kind}: {len(value)} characters, at most {limit} allowed")
    return value


def _batch(table: TableDef, columns: Mapping[str, Sequence[Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(dict(columns), schema=table.arrow_schema)


# -- the service ----------------------------------------------------------------------------------


class RegistryService:
    """The registry API: what the REST layer (native and MLflow) calls."""

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
        return _batch(REGISTERED_MODEL_CHANGES, {k: [v] for k, v in row.items()})

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
        return _batch(MODEL_VERSION_CHANGES, columns)

    def _alias_rows(self, records: list[dict[str, Any]], operation: str) -> pa.RecordBatch:
        change = self._change(operation)
        defaults = {"is_forced": False, "force_reason": None, "gate_reasons": None, "is_deleted": False}
        names = [f.name for f in MODEL_ALIAS_CHANGES.arrow_schema]
        rows = [{**defaults, **change, **r} for r in records]
        return _batch(MODEL_ALIAS_CHANGES, {n: [r.get(n) for r in rows] for n in names})

    def _tag_rows(self, model_id: str, version: int | None, tags: Mapping[str, str | None]) -> pa.RecordBatch:
        change = self._change("delete_tag" if all(v is None for v in tags.values()) else "set_tag")
        n = len(tags)
        return _batch(
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
            when = "" if as_of is None else f" at {_iso(as_of)}"
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

    # -- registered models ---------------------------------------------------------------------------

    def create_registered_model(
        self, name: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> RegisteredModel:
        """Create a registered model with a unique name.

        Raises:
            InvalidArgumentError: bad name, description or tag.
            AlreadyExistsError: a model of that name exists.
        """
        validate_model_name(name)
        description = _text("description", description, MAX_DESCRIPTION_LENGTH)
        clean_tags = _clean_tags(tags or {})
        model_id = uuid.uuid4().hex
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            if name in state.registry.model_ids_by_name:
                raise AlreadyExistsError(f"Registered Model (name={name}) already exists.", details={"name": name})
            record = ModelRecord(model_id, name, description, False, now, now, self.actor, "create")
            rows: Rows = {REGISTERED_MODEL_CHANGES.name: self._model_row(record, "create")}
            if clean_tags:
                rows[REGISTRY_TAG_CHANGES.name] = self._tag_rows(model_id, None, clean_tags)
            return rows

        self.store.write(build)
        return self.get_registered_model(name)

    def get_registered_model(self, name: str, *, as_of: datetime | int | None = None) -> RegisteredModel:
        """A registered model by name, now or as it stood at ``as_of``.

        Raises:
            NotFoundError: no model of that name (at that time).
        """
        when = as_of_ms(as_of)
        reg = self.registry
        return self._model_entity(reg, self._model(reg, name, when), when)

    def _update_model(
        self, name: str, operation: str, change: Callable[[ModelRecord, RegistryState], ModelRecord]
    ) -> None:
        def build(state: TrackingState) -> Rows:
            model = self._model(state.registry, name)
            return {REGISTERED_MODEL_CHANGES.name: self._model_row(change(model, state.registry), operation)}

        self.store.write(build)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename a model; its versions, aliases and tags follow it.

        Raises:
            NotFoundError: no model called ``name``.
            AlreadyExistsError: ``new_name`` is taken.
        """
        validate_model_name(new_name)

        def change(model: ModelRecord, reg: RegistryState) -> ModelRecord:
            if new_name != model.name and new_name in reg.model_ids_by_name:
                raise AlreadyExistsError(
                    f"Registered Model (name={new_name}) already exists.", details={"name": new_name}
                )
            renamed: ModelRecord = _with(model, name=new_name)
            return renamed

        self._update_model(name, "rename", change)
        return self.get_registered_model(new_name)

    def update_registered_model(self, name: str, *, description: str | None) -> RegisteredModel:
        """Set a model's description.

        Raises:
            NotFoundError: no model called ``name``.
        """
        description = _text("description", description, MAX_DESCRIPTION_LENGTH)
        self._update_model(name, "update", lambda m, _r: _with(m, description=description))
        return self.get_registered_model(name)

    def delete_registered_model(self, name: str) -> None:
        """Delete a model (its history stays; the name becomes free).

        Raises:
            NotFoundError: no model called ``name``.
        """
        self._update_model(name, "delete", lambda m, _r: _with(m, is_deleted=True))

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        """Set a tag on a model.

        Raises:
            NotFoundError: no model called ``name``.
            InvalidArgumentError: bad key or value.
        """
        tags = _clean_tags({key: value})
        self._write_tags(name, None, tags)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        """Delete a tag of a model.

        Raises:
            NotFoundError: no model called ``name``, or no such tag.
        """
        self._write_tags(name, None, {validate_key("tag", key): None})

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

    def search_registered_models(
        self,
        filter_string: str | None = None,
        *,
        max_results: int = DEFAULT_SEARCH_MODELS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        as_of: datetime | int | None = None,
    ) -> RegisteredModelPage:
        """Models matching MLflow's registry filter (``name``, ``tags.<key>``), one page at a time.

        Raises:
            InvalidArgumentError: bad filter, order_by, max_results or page token.
        """
        _check_max_results(max_results, MAX_SEARCH_MODELS)
        when = as_of_ms(as_of)
        test = _compile_filter(filter_string, _MODEL_ATTRIBUTES, set())
        hide_prompts = not _asks_for_prompts(filter_string)
        order = _parse_order(order_by, _MODEL_ORDER_KEYS, default=[("name", True)])
        fingerprint = _fingerprint("models", filter_string, order, when)
        reg = self.registry

        def ids_now() -> list[str]:
            found: list[_ModelView] = []
            for model_id, history in list(reg.models.items()):
                record = latest(history, when)
                if record is None or record.is_deleted:
                    continue
                view = _ModelView(record, reg.tags_at(model_id, None, when))
                if hide_prompts and _is_prompt(view.tags):
                    continue
                if test(view):
                    found.append(view)
            return [m.registered_model_id for m in _sort(found, order, tiebreak="registered_model_id")]

        ids, token = paginate(
            ids_now, fingerprint=fingerprint, max_results=max_results, page_token=page_token, pins=self._pins
        )
        models: list[RegisteredModel] = []
        for model_id in ids:
            record = latest(reg.models.get(model_id, []), when)
            if record is not None and not record.is_deleted:
                models.append(self._model_entity(reg, record, when))
        return RegisteredModelPage(models, token)

    def get_latest_versions(self, name: str, stages: Sequence[str] | None = None) -> list[ModelVersion]:
        """The newest version in each stage (all stages when ``stages`` is empty).

        Raises:
            NotFoundError: no model called ``name``.
            InvalidArgumentError: an unknown stage.
        """
        wanted = {parse_stage(s) for s in stages or []}
        model = self.get_registered_model(name)
        return [v for v in model.latest_versions if not wanted or v.current_stage in wanted]

    # -- model versions -----------------------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        *,
        run_id: str | None = None,
        model_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        user_id: str | None = None,
    ) -> ModelVersion:
        """Register a new version of ``name`` from a run's or a logged model's artifacts.

        ``source`` may be ``runs:/<run_id>/<path>``, ``models:/<model_id>`` (with ``model_id``),
        ``models:/<name>/<version>`` (copying another version) or any artifact URI.

        Raises:
            NotFoundError: the model, run or logged model does not exist.
            InvalidArgumentError: a bad source, tag or description.
        """
        validate_model_name(name)
        if not isinstance(source, str) or not source:
            raise InvalidArgumentError("Missing value for required parameter 'source'")
        clean_tags = _clean_tags(tags or {})
        description = _text("description", description, MAX_DESCRIPTION_LENGTH)
        now = self._now_ms()
        created: list[int] = []

        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            location, source_run_id, logged_model_id = self._resolve_source(state, source, run_id, model_id)
            number = reg.max_version.get(model.registered_model_id, 0) + 1
            record = VersionRecord(
                registered_model_id=model.registered_model_id,
                version=number,
                source=source,
                storage_location=location,
                source_run_id=source_run_id,
                model_id=logged_model_id,
                run_link=run_link or None,
                description=description,
                user_id=user_id or self.actor,
                stage="None",
                status=READY,
                status_message=None,
                is_deleted=False,
                created_at=now,
                changed_at=now,
                actor=self.actor,
                operation="create",
            )
            created.append(number)
            rows: Rows = {MODEL_VERSION_CHANGES.name: self._version_rows([record], "create")}
            if clean_tags:
                rows[REGISTRY_TAG_CHANGES.name] = self._tag_rows(model.registered_model_id, number, clean_tags)
            # Lineage: what made this version, recorded in the same atomic write.
            node = model_version_node(model.name, number)
            edges = [
                LineageEdge(kind, source_id, NodeKind.MODEL_VERSION, node, Relation.PRODUCED)
                for kind, source_id in ((NodeKind.RUN, source_run_id), (NodeKind.LOGGED_MODEL, logged_model_id))
                if source_id and (kind != NodeKind.RUN or source_id in state.runs)  # no edge from an unknown run
            ]
            if edges:
                rows[LINEAGE_EDGES.name] = lineage_edge_rows(edges, actor=self.actor, created_at_us=now * 1000)
            return rows

        self.store.write(build)
        return self.get_model_version(name, created[-1])

    def _resolve_source(
        self, state: TrackingState, source: str, run_id: str | None, model_id: str | None
    ) -> tuple[str, str | None, str | None]:
        """(storage location, source run id, logged model id) for a version's source."""
        if model_id:
            logged = state.logged_models.get(model_id)
            if logged is None:
                raise NotFoundError(f"Logged model with ID '{model_id}' not found", details={"model_id": model_id})
            run_id = run_id or logged.source_run_id
        # A run this server does not know (logged to another tracking server, or deleted for good)
        # is accepted as MLflow accepts it: the version keeps the id, the source stays as given.
        location = source
        if source.startswith("runs:/"):
            source_run, _, path = source[len("runs:/") :].partition("/")
            run_id = run_id or source_run
            run = state.runs.get(source_run)
            if run is not None:
                location = f"{run.artifact_uri}/{path}".rstrip("/")
        elif source.startswith("models:/"):
            ref = source[len("models:/") :].strip("/")
            logged = state.logged_models.get(ref)
            if logged is not None:
                if not model_id:
                    raise InvalidArgumentError(
                        f"To register a logged model from source {source!r}, pass its model_id as well"
                    )
                location = logged.artifact_location or source
            else:
                other_name, _, other_version = ref.rpartition("/")
                if not other_name:
                    raise InvalidArgumentError(
                        f"Invalid source {source!r}: no logged model or model version of that name"
                    )
                other = self._model(state.registry, other_name)
                copied = self._version(state.registry, other, other_version)
                location = copied.storage_location or copied.source
                run_id = run_id or copied.source_run_id
                model_id = model_id or copied.model_id
        return location, run_id, model_id

    def get_model_version(self, name: str, version: int | str, *, as_of: datetime | int | None = None) -> ModelVersion:
        """One version, now or as it stood at ``as_of``.

        Raises:
            NotFoundError: no such model or version (at that time).
            InvalidArgumentError: ``version`` is not a positive integer.
        """
        when = as_of_ms(as_of)
        reg = self.registry
        model = self._model(reg, name, when)
        return self._version_entity(reg, model, self._version(reg, model, version, when), when)

    def _update_versions(
        self,
        name: str,
        version: object,
        operation: str,
        change: Callable[[ModelRecord, VersionRecord, RegistryState], tuple[list[VersionRecord], Rows]],
    ) -> None:
        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            current = self._version(reg, model, version)
            versions, extra = change(model, current, reg)
            return {MODEL_VERSION_CHANGES.name: self._version_rows(versions, operation), **extra}

        self.store.write(build)

    def update_model_version(self, name: str, version: int | str, *, description: str | None) -> ModelVersion:
        """Set a version's description.

        Raises:
            NotFoundError: no such model or version.
        """
        description = _text("description", description, MAX_DESCRIPTION_LENGTH)
        self._update_versions(name, version, "update", lambda _m, v, _r: ([_with(v, description=description)], {}))
        return self.get_model_version(name, version)

    def delete_model_version(self, name: str, version: int | str) -> None:
        """Delete a version; aliases pointing at it are deleted too (and recorded as such).

        Raises:
            NotFoundError: no such model or version.
        """

        def change(model: ModelRecord, v: VersionRecord, reg: RegistryState) -> tuple[list[VersionRecord], Rows]:
            aliases = [a for a, n in reg.aliases_at(model.registered_model_id, None).items() if n == v.version]
            extra: Rows = {}
            if aliases:
                records = [
                    {"registered_model_id": model.registered_model_id, "alias": a, "version": None, "is_deleted": True}
                    for a in aliases
                ]
                extra[MODEL_ALIAS_CHANGES.name] = self._alias_rows(records, "delete")
            return [_with(v, is_deleted=True)], extra

        self._update_versions(name, version, "delete", change)

    def transition_model_version_stage(
        self, name: str, version: int | str, stage: str, *, archive_existing_versions: bool = False
    ) -> ModelVersion:
        """Move a version to a legacy stage; optionally archive the others in that stage.

        Raises:
            NotFoundError: no such model or version.
            InvalidArgumentError: an unknown stage, or archiving into a stage other than Staging/Production.
        """
        target = parse_stage(stage)
        if archive_existing_versions and target not in ARCHIVING_STAGES:
            raise InvalidArgumentError(
                f"archive_existing_versions applies only to stages {list(ARCHIVING_STAGES)}, not {target!r}"
            )

        def change(model: ModelRecord, v: VersionRecord, reg: RegistryState) -> tuple[list[VersionRecord], Rows]:
            moved = [_with(v, stage=target)]
            if archive_existing_versions:
                moved += [
                    _with(other, stage="Archived")
                    for other in self._live_versions(reg, model.registered_model_id, None)
                    if other.version != v.version and other.stage == target
                ]
            return moved, {}

        self._update_versions(name, version, "transition_stage", change)
        return self.get_model_version(name, version)

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        """Set a tag on a version.

        Raises:
            NotFoundError: no such model or version.
            InvalidArgumentError: bad key or value.
        """
        self._write_tags(name, version, _clean_tags({key: value}))

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        """Delete a tag of a version.

        Raises:
            NotFoundError: no such model, version or tag.
        """
        self._write_tags(name, version, {validate_key("tag", key): None})

    def get_model_version_download_uri(self, name: str, version: int | str) -> str:
        """Where the version's artifacts are (what ``load_model("models:/...")`` downloads).

        Raises:
            NotFoundError: no such model or version.
        """
        v = self.get_model_version(name, version)
        return v.storage_location or v.source

    def search_model_versions(
        self,
        filter_string: str | None = None,
        *,
        max_results: int = DEFAULT_SEARCH_VERSIONS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        as_of: datetime | int | None = None,
    ) -> ModelVersionPage:
        """Versions matching MLflow's filter (``name``, ``run_id``, ``source_path``, ``version_number``,
        ``model_id``, ``tags.<key>``), ordered by name ASC then version DESC unless told otherwise.

        Raises:
            InvalidArgumentError: bad filter, order_by, max_results or page token.
        """
        _check_max_results(max_results, MAX_SEARCH_VERSIONS)
        when = as_of_ms(as_of)
        comparisons = parse_filter(filter_string, entities=_FILTER_ENTITIES, default_entity="attribute")
        test = _compile_filter(filter_string, _VERSION_STRING_ATTRIBUTES, _VERSION_NUMERIC_ATTRIBUTES)
        hide_prompts = not _asks_for_prompts(filter_string)
        order = _parse_order(order_by, _VERSION_ORDER_KEYS, default=[("name", True), ("version", False)])
        fingerprint = _fingerprint("versions", filter_string, order, when)
        reg = self.registry
        # `name = '...'` (MLflow's most common filter) narrows the scan to one model.
        names = [c.value for c in comparisons if c.entity == "attribute" and c.key == "name" and c.op == "="]

        def ids_now() -> list[str]:
            if names:
                model_ids = [i for i in (reg.model_id_at(str(n), when) for n in names[:1]) if i is not None]
            else:
                model_ids = list(reg.models)
            found: list[_VersionView] = []
            for model_id in model_ids:
                model = latest(reg.models.get(model_id, []), when)
                if model is None or model.is_deleted:
                    continue
                if hide_prompts and _is_prompt(reg.tags_at(model_id, None, when)):
                    continue
                live = self._live_versions(reg, model_id, when)
                if not live:
                    continue
                for v in live:
                    view = _VersionView(model.name, v, reg.tags_at(model_id, v.version, when))
                    if test(view):
                        found.append(view)
            ordered = _sort(found, order, tiebreak="version")
            return [f"{v.registered_model_id}/{v.version}" for v in ordered]

        ids, token = paginate(
            ids_now, fingerprint=fingerprint, max_results=max_results, page_token=page_token, pins=self._pins
        )
        out: list[ModelVersion] = []
        aliases: dict[str, dict[str, int]] = {}
        for key in ids:
            model_id, _, number = key.partition("/")
            model = latest(reg.models.get(model_id, []), when)
            record = latest(reg.versions.get(model_id, {}).get(int(number), []), when)
            if model is not None and not model.is_deleted and record is not None and not record.is_deleted:
                if model_id not in aliases:
                    aliases[model_id] = reg.aliases_at(model_id, when)
                out.append(self._version_entity(reg, model, record, when, aliases[model_id]))
        return ModelVersionPage(out, token)

    # -- aliases ----------------------------------------------------------------------------------

    def set_registered_model_alias(
        self,
        name: str,
        alias: str,
        version: int | str,
        *,
        force: bool = False,
        reason: str | None = None,
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (moving it is a new row). Protected aliases pass the gate first.

        Raises:
            NotFoundError: no such model or version.
            InvalidArgumentError: an invalid alias name, or ``force`` without a reason.
            DataQualityError: the gate refused the version for a protected alias and it was not forced.
        """
        validate_alias(alias)
        if force and not (isinstance(reason, str) and reason.strip()):
            raise InvalidArgumentError("Forcing a protected alias needs a reason")
        current = self.get_model_version(name, version)
        refusals: list[str] = []
        if alias in self.protected_aliases and self.gate is not None:
            refusals = list(self.gate.check_model_version(source_run_id=current.run_id, model_id=current.model_id))
            if refusals and not force:
                raise DataQualityError(
                    f"Model version (name={name}, version={current.version}) may not get protected alias "
                    f"'{alias}': " + "; ".join(refusals) + ". Pass force with a reason to override.",
                    details={"reasons": refusals, "name": name, "version": current.version, "alias": alias},
                )
        forced = bool(refusals) and force

        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            v = self._version(reg, model, version)
            if model.registered_model_id != current.registered_model_id:
                raise NotFoundError(f"Registered Model with name={name} changed while setting alias '{alias}'")
            record = {
                "registered_model_id": model.registered_model_id,
                "alias": alias,
                "version": v.version,
                "is_forced": forced,
                "force_reason": reason if forced else None,
                "gate_reasons": json.dumps(refusals) if forced else None,
            }
            return {MODEL_ALIAS_CHANGES.name: self._alias_rows([record], "set_alias")}

        self.store.write(build)
        return self.get_model_version(name, version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        """Remove an alias (recorded as a deletion row).

        Raises:
            NotFoundError: no such model, or the alias is not set.
        """
        validate_alias(alias)

        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            if alias not in reg.aliases_at(model.registered_model_id, None):
                raise NotFoundError(
                    f"Registered model alias {alias} not found for model {name}", details={"alias": alias}
                )
            record = {"registered_model_id": model.registered_model_id, "alias": alias, "version": None}
            return {MODEL_ALIAS_CHANGES.name: self._alias_rows([{**record, "is_deleted": True}], "delete_alias")}

        self.store.write(build)

    def get_model_version_by_alias(self, name: str, alias: str, *, as_of: datetime | int | None = None) -> ModelVersion:
        """The version ``alias`` points at, now or at ``as_of``.

        Raises:
            NotFoundError: no such model, or the alias was not set (at that time).
        """
        validate_alias(alias)
        when = as_of_ms(as_of)
        reg = self.registry
        model = self._model(reg, name, when)
        number = reg.aliases_at(model.registered_model_id, when).get(alias)
        if number is None:
            at = "" if when is None else f" at {_iso(when)}"
            raise NotFoundError(
                f"Registered model alias {alias} not found for model {name}{at}", details={"alias": alias}
            )
        return self._version_entity(reg, model, self._version(reg, model, number, when), when)

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        """Every move of ``alias`` on model ``name``, oldest first (who, when, forced and why).

        Raises:
            NotFoundError: no such model.
        """
        validate_alias(alias)
        reg = self.registry
        model = self._model(reg, name)
        return [_alias_change(r) for r in reg.aliases.get(model.registered_model_id, {}).get(alias, [])]

    # -- deployments ------------------------------------------------------------------------------

    def record_deployment(
        self,
        name: str,
        version: int | str,
        *,
        environment: str,
        application_version: str | None = None,
        target: str | None = None,
        deployed_by: str | None = None,
    ) -> Deployment:
        """Record that a version was deployed to ``environment`` as part of ``application_version``.

        Raises:
            NotFoundError: no such model or version.
            InvalidArgumentError: an empty environment.
        """
        environment = _required_text("environment", environment)
        return self._deployment_event(
            name, version, environment, application_version, target, deployed_by, retire=False
        )

    def retire_deployment(
        self, name: str, *, environment: str, application_version: str | None = None, deployed_by: str | None = None
    ) -> Deployment:
        """Record that the model stopped running in ``environment``.

        Raises:
            NotFoundError: the model does not run in that environment.
        """
        environment = _required_text("environment", environment)
        running = [d for d in self.current_deployments(environment=environment) if d.model_name == name]
        if not running:
            raise NotFoundError(f"Model {name} is not deployed to {environment}", details={"environment": environment})
        return self._deployment_event(
            name, running[0].version, environment, application_version, running[0].target, deployed_by, retire=True
        )

    def _deployment_event(
        self,
        name: str,
        version: int | str,
        environment: str,
        application_version: str | None,
        target: str | None,
        deployed_by: str | None,
        *,
        retire: bool,
    ) -> Deployment:
        deployment_id = uuid.uuid4().hex
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            v = self._version(reg, model, version)
            change = self._change("retire" if retire else "deploy", now)
            change["actor"] = deployed_by or self.actor
            row = {
                "deployment_id": deployment_id,
                "registered_model_id": model.registered_model_id,
                "model_name": model.name,
                "version": v.version,
                "environment": environment,
                "application_version": application_version,
                "target": target,
                "is_retired": retire,
                **change,
            }
            rows: Rows = {DEPLOYMENT_EVENTS.name: _batch(DEPLOYMENT_EVENTS, {k: [val] for k, val in row.items()})}
            if not retire:
                edge = LineageEdge(
                    NodeKind.MODEL_VERSION,
                    model_version_node(model.name, v.version),
                    NodeKind.DEPLOYMENT,
                    deployment_id,
                    Relation.DEPLOYED,
                    properties={"environment": environment, "application_version": application_version},
                )
                rows[LINEAGE_EDGES.name] = lineage_edge_rows([edge], actor=change["actor"], created_at_us=now * 1000)
            return rows

        self.store.write(build)
        found = [d for d in self.deployment_history(name) if d.deployment_id == deployment_id]
        return found[-1]

    def current_deployments(
        self, *, environment: str | None = None, as_of: datetime | int | None = None
    ) -> list[Deployment]:
        """What runs where (now or at ``as_of``): the last deployment per (environment, model), since when."""
        when = as_of_ms(as_of)
        reg = self.registry
        streams: dict[tuple[str, str], list[DeploymentRecord]] = {}
        for d in list(reg.deployments):
            if (when is None or d.changed_at <= when) and (environment is None or d.environment == environment):
                streams.setdefault((d.environment, d.registered_model_id), []).append(d)
        out: list[Deployment] = []
        for events in streams.values():
            last = events[-1]
            if last.is_retired:
                continue
            model = latest(reg.models.get(last.registered_model_id, []), when)
            if model is None or model.is_deleted:
                continue
            since = last.changed_at
            for event in reversed(events):
                if event.is_retired or event.version != last.version:
                    break
                since = event.changed_at
            out.append(_deployment(last, model.name, since))
        return sorted(out, key=lambda d: (d.environment, d.model_name))

    def deployment_history(self, name: str, *, version: int | str | None = None) -> list[Deployment]:
        """Every deployment event of a model (optionally one version), oldest first.

        Raises:
            NotFoundError: no such model.
        """
        reg = self.registry
        model = self._model(reg, name)
        number = None if version is None else parse_version(version)
        return [
            _deployment(d, model.name, d.changed_at)
            for d in reg.deployments
            if d.registered_model_id == model.registered_model_id and (number is None or d.version == number)
        ]

    def application_versions(self, name: str, *, version: int | str | None = None) -> list[ApplicationUse]:
        """Which application versions ran the model (optionally one version), where and when.

        Raises:
            NotFoundError: no such model.
        """
        uses: dict[tuple[str | None, str], list[Deployment]] = {}
        for d in self.deployment_history(name, version=version):
            if not d.is_retired:
                uses.setdefault((d.application_version, d.environment), []).append(d)
        return [
            ApplicationUse(
                application_version=app,
                environment=env,
                versions=sorted({d.version for d in events}),
                first_deployed_at=events[0].deployed_at,
                last_deployed_at=events[-1].deployed_at,
            )
            for (app, env), events in sorted(uses.items(), key=lambda kv: kv[1][0].deployed_at)
        ]


# -- helpers -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ModelView:
    record: ModelRecord
    tags: dict[str, str]

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def registered_model_id(self) -> str:
        return self.record.registered_model_id

    @property
    def creation_timestamp(self) -> int:
        return self.record.created_at

    @property
    def last_updated_timestamp(self) -> int:
        return self.record.changed_at


@dataclass(frozen=True, slots=True)
class _VersionView:
    name: str
    record: VersionRecord
    tags: dict[str, str]

    @property
    def run_id(self) -> str | None:
        return self.record.source_run_id

    @property
    def source_path(self) -> str:
        return self.record.source

    @property
    def model_id(self) -> str | None:
        return self.record.model_id

    @property
    def current_stage(self) -> str:
        return self.record.stage

    @property
    def version_number(self) -> float:
        return float(self.record.version)

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def registered_model_id(self) -> str:
        return self.record.registered_model_id

    @property
    def creation_timestamp(self) -> int:
        return self.record.created_at

    @property
    def last_updated_timestamp(self) -> int:
        return self.record.changed_at


def _compile_filter(text: str | None, strings: set[str], numbers: set[str]) -> Callable[[Any], bool]:
    # As in MLflow's registry stores, a missing tag differs from any value: the stock client adds
    # `tags.mlflow.prompt.is_prompt != 'true'` to every search.
    return compile_object_filter(
        text,
        noun="model registry",
        entities=_FILTER_ENTITIES,
        attributes=strings | numbers,
        numeric=numbers,
        missing_differs=("tag",),
    )


def _parse_order(
    clauses: Sequence[str] | None, keys: dict[str, str], *, default: list[tuple[str, bool]]
) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for clause in clauses or []:
        parts = clause.strip().split()
        key = keys.get(parts[0].split(".", 1)[-1]) if parts else None
        if key is None or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
            raise InvalidArgumentError(f"Invalid order_by clause {clause!r}; keys: {sorted(keys)}")
        out.append((key, len(parts) == 1 or parts[1].upper() == "ASC"))
    seen = {k for k, _a in out}
    return out + [(k, a) for k, a in default if k not in seen]


def _sort(items: list[Any], order: list[tuple[str, bool]], *, tiebreak: str) -> list[Any]:
    items = sorted(items, key=operator.attrgetter(tiebreak))
    for key, ascending in reversed(order):
        items.sort(key=operator.attrgetter(key), reverse=not ascending)
    return items


def _fingerprint(kind: str, text: str | None, order: list[tuple[str, bool]], as_of: int | None) -> str:
    raw = json.dumps([kind, text or "", order, as_of])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _check_max_results(max_results: int, limit: int) -> None:
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= limit:
        raise InvalidArgumentError(f"Invalid max_results {max_results!r}: must be between 1 and {limit}")


def _clean_tags(tags: Mapping[str, object]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in tags.items():
        text = "" if value is None else str(value)
        if len(text) > MAX_TAG_VALUE_LENGTH:
            raise InvalidArgumentError(f"Invalid tag value for {key!r}: longer than {MAX_TAG_VALUE_LENGTH} characters")
        out[validate_key("tag", key)] = text
    return out


def _required_text(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"Invalid {kind}: must be a non-empty string")
    return value


def _with(record: Any, **changes: Any) -> Any:
    values = {name: getattr(record, name) for name in record.__slots__}
    values.update(changes)
    return type(record)(**values)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _alias_change(r: AliasRecord) -> AliasChange:
    return AliasChange(
        alias=r.alias,
        version=r.version,
        changed_at=r.changed_at,
        actor=r.actor,
        operation=r.operation,
        is_forced=r.is_forced,
        force_reason=r.force_reason,
        gate_reasons=json.loads(r.gate_reasons) if r.gate_reasons else [],
    )


def _deployment(d: DeploymentRecord, name: str, since: int) -> Deployment:
    return Deployment(
        deployment_id=d.deployment_id,
        model_name=name,
        version=d.version,
        environment=d.environment,
        application_version=d.application_version,
        target=d.target,
        deployed_at=d.changed_at,
        deployed_by=d.actor,
        since=since,
        is_retired=d.is_retired,
    )


PROMPT_TAG = "mlflow.prompt.is_prompt"


def _asks_for_prompts(filter_string: str | None) -> bool:
    """Whether a search names the prompt tag: then prompts are searched like models, as MLflow does."""
    return PROMPT_TAG in (filter_string or "")


def _is_prompt(tags: Mapping[str, str]) -> bool:
    """A prompt (MLflow's prompt registry keeps prompts as registered models with this tag)."""
    return str(tags.get(PROMPT_TAG, "false")).lower() == "true"
