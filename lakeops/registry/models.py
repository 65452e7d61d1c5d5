"""Registered models: create, read, rename, describe, tag, delete, and the newest version per stage."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from catalog.tables import REGISTERED_MODEL_CHANGES, REGISTRY_TAG_CHANGES
from lakeops.errors import AlreadyExistsError
from lakeops.registry.core import RegistryCore, with_changes
from lakeops.registry.entities import ModelVersion, RegisteredModel
from lakeops.registry.validation import (
    MAX_DESCRIPTION_LENGTH,
    as_of_ms,
    optional_text,
    parse_stage,
    validate_model_name,
    validate_tags,
)
from lakeops.stores.iceberg import Rows
from lakeops.stores.registry_state import ModelRecord, RegistryState
from lakeops.stores.state import TrackingState
from lakeops.tracking.validation import validate_key


class ModelsMixin(RegistryCore):
    """Registered models: create, read, rename, describe, tag, delete and search."""

    def create_registered_model(
        self, name: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> RegisteredModel:
        """Create a registered model with a unique name.

        Raises:
            InvalidArgumentError: bad name, description or tag.
            AlreadyExistsError: a model of that name exists.
        """
        validate_model_name(name)
        description = optional_text("description", description, MAX_DESCRIPTION_LENGTH)
        clean_tags = validate_tags(tags or {})
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
            renamed: ModelRecord = with_changes(model, name=new_name)
            return renamed

        self._update_model(name, "rename", change)
        return self.get_registered_model(new_name)

    def update_registered_model(self, name: str, *, description: str | None) -> RegisteredModel:
        """Set a model's description.

        Raises:
            NotFoundError: no model called ``name``.
        """
        description = optional_text("description", description, MAX_DESCRIPTION_LENGTH)
        self._update_model(name, "update", lambda m, _r: with_changes(m, description=description))
        return self.get_registered_model(name)

    def delete_registered_model(self, name: str) -> None:
        """Delete a model (its history stays; the name becomes free).

        Raises:
            NotFoundError: no model called ``name``.
        """
        self._update_model(name, "delete", lambda m, _r: with_changes(m, is_deleted=True))

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        """Set a tag on a model.

        Raises:
            NotFoundError: no model called ``name``.
            InvalidArgumentError: bad key or value.
        """
        tags = validate_tags({key: value})
        self._write_tags(name, None, tags)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        """Delete a tag of a model.

        Raises:
            NotFoundError: no model called ``name``, or no such tag.
        """
        self._write_tags(name, None, {validate_key("tag", key): None})

    def get_latest_versions(self, name: str, stages: Sequence[str] | None = None) -> list[ModelVersion]:
        """The newest version in each stage (all stages when ``stages`` is empty).

        Raises:
            NotFoundError: no model called ``name``.
            InvalidArgumentError: an unknown stage.
        """
        wanted = {parse_stage(s) for s in stages or []}
        model = self.get_registered_model(name)
        return [v for v in model.latest_versions if not wanted or v.current_stage in wanted]
