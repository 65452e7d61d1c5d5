"""MLflow 3's workspaces: named groups of experiments and registered models, with members.

A workspace is rows of ``workspace_changes`` (created, updated, deleted; the name is a constrained
key, so two replicas cannot create the same one twice). The workspace ``default`` is implicit: it
always exists, cannot be created, updated or deleted, and holds every experiment and model not
placed elsewhere (``workspace_resource_changes``, written by ``AuthService.assign`` when something
is created in a workspace). Members and their levels are grants on ("workspace", name)
(``AuthService.grant``), and what they open up is decided in ``AuthService.level``.

Names follow MLflow's ``WorkspaceNameValidator``: 2-63 lowercase letters, digits and inner hyphens,
not one of its reserved words. Deleting follows MLflow's modes: ``RESTRICT`` (the default) refuses
while the workspace holds an experiment or a model, ``SET_DEFAULT`` moves them to ``default``;
``CASCADE`` (deleting what it holds) is refused: lakeops deletes experiments and models one by one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from catalog.tables import PERMISSION_CHANGES, WORKSPACE_CHANGES, WORKSPACE_RESOURCE_CHANGES
from lakeops.actor import current_user
from lakeops.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from lakeops.stores.auth_state import DEFAULT_WORKSPACE, WorkspaceState
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import TrackingState

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED = frozenset({"workspaces", "api", "ajax-api", "static-files"})
MAX_DESCRIPTION_LENGTH = 5000
MAX_ARTIFACT_ROOT_LENGTH = 2000
DELETION_MODES = ("RESTRICT", "SET_DEFAULT", "CASCADE")


@dataclass(frozen=True)
class Workspace:
    """A workspace's public facts."""

    name: str
    description: str | None = None
    default_artifact_root: str | None = None

    @classmethod
    def of(cls, state: WorkspaceState) -> Workspace:
        """The entity for a state entry."""
        return cls(name=state.name, description=state.description, default_artifact_root=state.default_artifact_root)

    def to_dict(self) -> dict[str, Any]:
        """MLflow's ``Workspace`` JSON (unset fields left out, as proto JSON does)."""
        found: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            found["description"] = self.description
        if self.default_artifact_root:
            found["default_artifact_root"] = self.default_artifact_root
        return found


DEFAULT = Workspace(name=DEFAULT_WORKSPACE, description="The workspace of everything not placed in another")


def check_name(name: object) -> str:
    """A workspace name as MLflow's ``WorkspaceNameValidator`` accepts it ("default" included).

    Raises:
        InvalidArgumentError: not such a name.
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(f"Workspace name must be a string, got {type(name).__name__}.")
    if name == DEFAULT_WORKSPACE:
        return name
    if not 2 <= len(name) <= 63:
        raise InvalidArgumentError(f"Workspace name {name!r} must be between 2 and 63 characters.")
    if not _NAME.match(name):
        raise InvalidArgumentError(
            f"Workspace name {name!r} must match the pattern {_NAME.pattern} "
            "(lowercase alphanumeric with optional internal hyphens)."
        )
    if name in _RESERVED:
        raise InvalidArgumentError(f"Workspace name {name!r} is reserved and cannot be used.")
    return name


def _check_text(value: object, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidArgumentError(f"Invalid {field}: a string of at most {limit} characters")
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise InvalidArgumentError(f"Invalid {field}: it holds a NUL or a lone surrogate")
    return value


def _check_artifact_root(value: object) -> str | None:
    root = _check_text(value, "default_artifact_root", MAX_ARTIFACT_ROOT_LENGTH)
    if root is None:
        return None
    root = root.strip()
    if root and "://" not in root and not root.startswith(("/", "mlflow-artifacts:")):
        raise InvalidArgumentError(
            "Invalid value for 'default_artifact_root'. Expected a URI (for example 's3://bucket/prefix' or "
            f"'mlflow-artifacts:/prefix') or an absolute path, got {root!r}."
        )
    return root


class WorkspaceService:
    """Create, read, update and delete workspaces."""

    def __init__(self, store: IcebergStore, *, now_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))

    def _row(self, workspace: WorkspaceState, operation: str, *, is_deleted: bool = False) -> pa.RecordBatch:
        columns = {
            "name": [workspace.name],
            "description": [workspace.description],
            "default_artifact_root": [workspace.default_artifact_root],
            "is_deleted": [is_deleted],
            "created_at": [workspace.created_at * 1000],
            "changed_at": [self._now_ms() * 1000],
            "actor": [current_user() or "lakeops"],
            "operation": [operation],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return pa.RecordBatch.from_pydict(columns, schema=WORKSPACE_CHANGES.arrow_schema)

    def exists(self, name: str) -> bool:
        """Whether a workspace of that name exists ("default" always does)."""
        return name == DEFAULT_WORKSPACE or name in self.store.state.auth.workspaces

    def require(self, name: str) -> str:
        """``name`` if it names a workspace.

        Raises:
            InvalidArgumentError: not a workspace name.
            NotFoundError: no such workspace.
        """
        if not self.exists(check_name(name)):
            raise NotFoundError(f"Workspace '{name}' not found", details={"workspace": name})
        return name

    def list_workspaces(self) -> list[Workspace]:
        """Every workspace, "default" first, then by name."""
        others = sorted(self.store.state.auth.workspaces.items())
        return [DEFAULT, *(Workspace.of(w) for _n, w in others)]

    def get_workspace(self, name: str) -> Workspace:
        """One workspace.

        Raises:
            InvalidArgumentError: not a workspace name.
            NotFoundError: no such workspace.
        """
        self.require(name)
        return DEFAULT if name == DEFAULT_WORKSPACE else Workspace.of(self.store.state.auth.workspaces[name])

    def create_workspace(
        self, name: str, *, description: str | None = None, default_artifact_root: str | None = None
    ) -> Workspace:
        """A new workspace.

        Raises:
            InvalidArgumentError: a bad name (or "default", which always exists), description or artifact root.
            AlreadyExistsError: the name is taken.
        """
        if name == DEFAULT_WORKSPACE:
            raise InvalidArgumentError(f"The '{DEFAULT_WORKSPACE}' workspace is reserved and cannot be created")
        check_name(name)
        state = WorkspaceState(
            name=name,
            description=_check_text(description, "description", MAX_DESCRIPTION_LENGTH),
            default_artifact_root=_check_artifact_root(default_artifact_root) or None,
            created_at=self._now_ms(),
        )

        def build(tracking: TrackingState) -> Rows:
            if name in tracking.auth.workspaces:
                raise AlreadyExistsError(f"Workspace '{name}' already exists.", details={"workspace": name})
            return {WORKSPACE_CHANGES.name: self._row(state, "create")}

        self.store.write(build)
        return self.get_workspace(name)

    def update_workspace(
        self, name: str, *, description: str | None = None, default_artifact_root: str | None = None
    ) -> Workspace:
        """Change a workspace's description or artifact root (None: unchanged; "" clears the artifact root).

        Raises:
            InvalidArgumentError: nothing to change, the "default" workspace, or a bad value.
            NotFoundError: no such workspace.
        """
        self.require(name)
        if name == DEFAULT_WORKSPACE:
            raise InvalidArgumentError(f"The '{DEFAULT_WORKSPACE}' workspace cannot be updated")
        if description is None and default_artifact_root is None:
            raise InvalidArgumentError("Workspace update must have at least one key")
        description = _check_text(description, "description", MAX_DESCRIPTION_LENGTH)
        root = _check_artifact_root(default_artifact_root)

        def build(tracking: TrackingState) -> Rows:
            old = tracking.auth.workspaces.get(name)
            if old is None:
                raise NotFoundError(f"Workspace '{name}' not found", details={"workspace": name})
            new = WorkspaceState(
                name=name,
                description=old.description if description is None else description,
                default_artifact_root=old.default_artifact_root if root is None else (root or None),
                created_at=old.created_at,
            )
            return {WORKSPACE_CHANGES.name: self._row(new, "update")}

        self.store.write(build)
        return self.get_workspace(name)

    def holdings(self, state: TrackingState, name: str) -> list[tuple[str, str]]:
        """The experiments and registered models (that still exist) placed in workspace ``name``."""
        return [
            (kind, rid)
            for (kind, rid), workspace in state.auth.workspace_of.items()
            if workspace == name
            and (rid in state.experiments if kind == "experiment" else rid in state.registry.model_ids_by_name)
        ]

    def delete_workspace(self, name: str, *, mode: str = "RESTRICT") -> None:
        """Delete a workspace and its memberships.

        Raises:
            InvalidArgumentError: the "default" workspace, a bad name or mode, or CASCADE.
            NotFoundError: no such workspace.
            ConflictError: RESTRICT and the workspace still holds experiments or models.
        """
        if name == DEFAULT_WORKSPACE:
            raise InvalidArgumentError(f"The '{DEFAULT_WORKSPACE}' workspace is reserved and cannot be deleted")
        if mode not in DELETION_MODES:
            raise InvalidArgumentError(f"Invalid deletion mode {mode!r}. Must be one of: {', '.join(DELETION_MODES)}")
        if mode == "CASCADE":
            raise InvalidArgumentError(
                "Deletion mode CASCADE is not supported: delete the workspace's experiments and models first, "
                "or use SET_DEFAULT to move them to the default workspace"
            )
        self.require(name)
        now = self._now_ms() * 1000
        actor = current_user() or "lakeops"

        def build(tracking: TrackingState) -> Rows:
            old = tracking.auth.workspaces.get(name)
            if old is None:
                raise NotFoundError(f"Workspace '{name}' not found", details={"workspace": name})
            held = self.holdings(tracking, name)
            if held and mode == "RESTRICT":
                raise ConflictError(
                    f"Cannot delete workspace '{name}': it still holds {len(held)} experiment(s) or registered "
                    "model(s). Remove or reassign them, or delete with mode=SET_DEFAULT to move them to 'default'.",
                    details={"workspace": name, "resources": len(held)},
                )
            # Every placement in it, even of what no longer exists, goes back to default (a name reused later
            # must not land in a workspace of the same name created after this one).
            placed = [key for key, workspace in tracking.auth.workspace_of.items() if workspace == name]
            members = sorted(tracking.auth.grants.get(("workspace", name), {}).items())
            rows: Rows = {WORKSPACE_CHANGES.name: self._row(old, "delete", is_deleted=True)}
            if placed:
                n = len(placed)
                rows[WORKSPACE_RESOURCE_CHANGES.name] = pa.RecordBatch.from_pydict(
                    {
                        "resource_type": [k for k, _ in placed],
                        "resource_id": [r for _, r in placed],
                        "workspace": [DEFAULT_WORKSPACE] * n,
                        "changed_at": [now] * n,
                        "actor": [actor] * n,
                        "operation": ["set_default"] * n,
                        "writer_id": [self.store.writer_id] * n,
                        "wal_seq": [0] * n,
                    },
                    schema=WORKSPACE_RESOURCE_CHANGES.arrow_schema,
                )
            if members:
                n = len(members)
                rows[PERMISSION_CHANGES.name] = pa.RecordBatch.from_pydict(
                    {
                        "resource_type": ["workspace"] * n,
                        "resource_id": [name] * n,
                        "username": [u for u, _ in members],
                        "permission": [p for _, p in members],
                        "is_deleted": [True] * n,
                        "changed_at": [now] * n,
                        "actor": [actor] * n,
                        "operation": ["revoke"] * n,
                        "writer_id": [self.store.writer_id] * n,
                        "wal_seq": [0] * n,
                    },
                    schema=PERMISSION_CHANGES.arrow_schema,
                )
            return rows

        self.store.write(build)

    def members(self, name: str) -> list[dict[str, str]]:
        """A workspace's members and their levels, by username.

        Raises:
            NotFoundError: no such workspace.
        """
        self.require(name)
        granted = self.store.state.auth.grants.get(("workspace", name), {})
        return [{"username": u, "permission": p} for u, p in sorted(granted.items())]
