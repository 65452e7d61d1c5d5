"""Experiments: create with a unique name, read, rename, delete and restore, tag, search.

The default experiment ``0`` is created by ``TrackingService`` when a lake has none.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from catalog.tables import EXPERIMENT_CHANGES, TAG_CHANGES
from lakeops.entities import Experiment, ExperimentPage, LifecycleStage, ViewType
from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.search import compile_experiment_filter, decode_token, encode_token, sort_experiments
from lakeops.stores.iceberg import Rows
from lakeops.stores.state import ExperimentState, TrackingState
from lakeops.tracking.core import DEFAULT_EXPERIMENT_ID, TrackingCore, record_batch, with_changes
from lakeops.tracking.validation import (
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    check_max_results,
    validate_key,
    validate_text,
)


def _new_experiment_id() -> str:
    # Numeric, like MLflow's ids, and random so that replicas never collide.
    return str(uuid.uuid4().int >> 68)


def absolute_location(location: str) -> str:
    """A relative local path (``artifacts``, ``file:artifacts``) made absolute against the working
    directory, as an MLflow server does with an experiment's ``artifact_location``; URIs pass as given."""
    parsed = urllib.parse.urlsplit(location)
    if parsed.scheme not in ("", "file") or (len(parsed.scheme) == 1 and location[1:2] == ":"):
        return location
    path = parsed.path if parsed.scheme == "file" else location
    if PurePosixPath(path).is_absolute() or parsed.netloc:
        return location
    absolute = (Path.cwd() / path).as_posix()
    return urllib.parse.urlunsplit(("file", "", absolute, parsed.query, parsed.fragment)) if parsed.scheme else absolute


def _experiment_entity(exp: ExperimentState) -> Experiment:
    return Experiment(
        experiment_id=exp.experiment_id,
        name=exp.name,
        artifact_location=exp.artifact_location,
        lifecycle_stage=LifecycleStage(exp.lifecycle_stage),
        creation_time=exp.creation_time,
        last_update_time=exp.last_update_time,
        tags=dict(exp.tags),
    )


class ExperimentsMixin(TrackingCore):
    """Experiments: create (unique names), read, rename, delete and restore, tag, search."""

    def _experiment_row(self, exp: ExperimentState, operation: str) -> Rows:
        change = self._change(operation)
        row = {
            "experiment_id": [exp.experiment_id],
            "name": [exp.name],
            "artifact_location": [exp.artifact_location],
            "lifecycle_stage": [exp.lifecycle_stage],
            "created_at": [exp.creation_time * 1000],
            **{k: [v] for k, v in change.items()},
        }
        return {EXPERIMENT_CHANGES.name: record_batch(EXPERIMENT_CHANGES, row)}

    def create_experiment(
        self, name: str, *, artifact_location: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        """Create an experiment with a unique name; returns its id."""
        return self._create_experiment(_new_experiment_id(), name, artifact_location, dict(tags or {}))

    def _create_experiment(
        self,
        experiment_id: str,
        name: str,
        artifact_location: str | None,
        tags: dict[str, str],
        *,
        only_if_missing: bool = False,
    ) -> str:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("Invalid experiment name: must be a non-empty string")
        if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
            raise InvalidArgumentError(f"Invalid experiment name: longer than {MAX_EXPERIMENT_NAME_LENGTH} characters")
        clean_tags = {validate_key("tag", k): validate_text("tag", v, MAX_TAG_VALUE_LENGTH) for k, v in tags.items()}
        artifact_location = absolute_location(artifact_location) if artifact_location else None
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            if only_if_missing and experiment_id in state.experiments:
                return {}
            if name in state.experiment_ids_by_name:
                raise AlreadyExistsError(f"Experiment '{name}' already exists.", details={"name": name})
            exp = ExperimentState(
                experiment_id=experiment_id,
                name=name,
                artifact_location=artifact_location or f"{self._artifact_root}/{experiment_id}",
                lifecycle_stage=LifecycleStage.ACTIVE,
                creation_time=now,
                last_update_time=now,
            )
            rows = self._experiment_row(exp, "create")
            if clean_tags:
                rows[TAG_CHANGES.name] = self._tag_rows("experiment", experiment_id, clean_tags)
            return rows

        self.store.write(build)
        return experiment_id

    def get_experiment(self, experiment_id: str) -> Experiment:
        """An experiment by id."""
        return _experiment_entity(self._experiment(self.state, experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment:
        """An experiment by its unique name."""
        experiment_id = self.state.experiment_ids_by_name.get(name)
        if experiment_id is None:
            raise NotFoundError(f"Could not find experiment with name '{name}'", details={"name": name})
        return self.get_experiment(experiment_id)

    def _update_experiment(
        self, experiment_id: str, operation: str, change: Callable[[ExperimentState, TrackingState], ExperimentState]
    ) -> None:
        def build(state: TrackingState) -> Rows:
            exp = self._experiment(state, experiment_id)
            return self._experiment_row(change(exp, state), operation)

        self.store.write(build)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        """Give an experiment a new unique name."""
        if not isinstance(new_name, str) or not new_name.strip():
            raise InvalidArgumentError("Invalid experiment name: must be a non-empty string")

        def change(exp: ExperimentState, state: TrackingState) -> ExperimentState:
            if exp.lifecycle_stage != LifecycleStage.ACTIVE:
                raise InvalidArgumentError("Cannot rename a deleted experiment")
            if new_name != exp.name and new_name in state.experiment_ids_by_name:
                raise AlreadyExistsError(f"Experiment '{new_name}' already exists.", details={"name": new_name})
            renamed: ExperimentState = with_changes(exp, name=new_name)
            return renamed

        self._update_experiment(experiment_id, "rename", change)

    def delete_experiment(self, experiment_id: str) -> None:
        """Move an experiment (and, for searches, its runs) to the trash."""
        if str(experiment_id) == DEFAULT_EXPERIMENT_ID:
            raise InvalidArgumentError("Cannot delete the default experiment '0'.")
        self._update_experiment(
            experiment_id, "delete", lambda e, _s: with_changes(e, lifecycle_stage=LifecycleStage.DELETED)
        )

    def restore_experiment(self, experiment_id: str) -> None:
        """Bring a deleted experiment back."""
        self._update_experiment(
            experiment_id, "restore", lambda e, _s: with_changes(e, lifecycle_stage=LifecycleStage.ACTIVE)
        )

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        """Set one tag on an experiment."""
        self._write_tags(
            "experiment",
            str(experiment_id),
            {validate_key("tag", key): validate_text("tag", value, MAX_TAG_VALUE_LENGTH)},
        )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Remove one tag from an experiment."""
        self._write_tags("experiment", str(experiment_id), {key: None})

    def search_experiments(
        self,
        *,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> ExperimentPage:
        """Experiments matching MLflow's experiment filter, ordered and paged."""
        check_max_results(max_results)
        predicate = compile_experiment_filter(filter_string)
        token = decode_token(page_token)
        offset = int(token.get("offset", 0))
        matches = [
            e for e in list(self.state.experiments.values()) if view_type.admits(e.lifecycle_stage) and predicate(e)
        ]
        ordered = sort_experiments(matches, order_by)
        page = ordered[offset : offset + max_results]
        nxt = encode_token({"offset": offset + max_results}) if offset + max_results < len(ordered) else None
        return ExperimentPage(experiments=[_experiment_entity(e) for e in page], next_page_token=nxt)
