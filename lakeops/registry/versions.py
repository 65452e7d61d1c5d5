"""Model versions: register from a run, a logged model or another version, describe, move between
legacy stages, tag and delete. A version's lineage edges (run/logged model -> version) are written
in the same atomic write as the version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from catalog.tables import LINEAGE_EDGES, MODEL_ALIAS_CHANGES, MODEL_VERSION_CHANGES, REGISTRY_TAG_CHANGES
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.lineage.edges import LineageEdge, NodeKind, Relation, lineage_edge_rows, model_version_node
from lakeops.registry.core import RegistryCore, with_changes
from lakeops.registry.entities import ModelVersion
from lakeops.registry.validation import (
    ARCHIVING_STAGES,
    MAX_DESCRIPTION_LENGTH,
    READY,
    as_of_ms,
    optional_text,
    parse_stage,
    validate_model_name,
    validate_tags,
)
from lakeops.stores.iceberg import Rows
from lakeops.stores.registry_state import ModelRecord, RegistryState, VersionRecord
from lakeops.stores.state import TrackingState
from lakeops.tracking.validation import validate_key


class VersionsMixin(RegistryCore):
    """Model versions: register, read, describe, move between legacy stages, tag, delete and search."""

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
        clean_tags = validate_tags(tags or {})
        description = optional_text("description", description, MAX_DESCRIPTION_LENGTH)
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
        description = optional_text("description", description, MAX_DESCRIPTION_LENGTH)
        self._update_versions(
            name, version, "update", lambda _m, v, _r: ([with_changes(v, description=description)], {})
        )
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
            return [with_changes(v, is_deleted=True)], extra

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
            moved = [with_changes(v, stage=target)]
            if archive_existing_versions:
                moved += [
                    with_changes(other, stage="Archived")
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
        self._write_tags(name, version, validate_tags({key: value}))

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
