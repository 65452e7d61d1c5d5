"""Users, API tokens, permission grants and workspaces folded from their change rows.

The tables are append-only like every other (``catalog/tables.py``: ``user_changes``,
``api_token_changes``, ``permission_changes``, ``workspace_changes``, ``workspace_resource_changes``);
the current state is the latest row per key: per username, per token id, per (resource type,
resource id, username), per workspace name, per (resource type, resource id). A deleted user, a
revoked token or grant, a deleted workspace is simply absent here, and stays in the table's history.
A workspace membership is a grant on ("workspace", name); a resource with no workspace row is in
the workspace "default" (``DEFAULT_WORKSPACE``), which is never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from catalog.tables import (
    API_TOKEN_CHANGES,
    PERMISSION_CHANGES,
    USER_CHANGES,
    WORKSPACE_CHANGES,
    WORKSPACE_RESOURCE_CHANGES,
)
from lakeops.stores.epochs import epoch_ints


@dataclass(frozen=True, slots=True)
class UserState:
    """A user as it stands."""

    user_id: int
    username: str
    password_hash: str
    is_admin: bool
    created_at: int  # ms


@dataclass(frozen=True, slots=True)
class TokenState:
    """An API token that has not been revoked (it may have expired)."""

    token_id: str
    username: str
    token_sha256: str
    name: str | None
    expires_at: int | None  # ms; None: never
    created_at: int  # ms


DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True, slots=True)
class WorkspaceState:
    """A workspace as it stands."""

    name: str
    description: str | None
    default_artifact_root: str | None
    created_at: int  # ms


class AuthState:
    """Users by name, live tokens by id and hash, grants by resource."""

    def __init__(self) -> None:
        self.users: dict[str, UserState] = {}
        self.tokens: dict[str, TokenState] = {}
        self.tokens_by_hash: dict[str, TokenState] = {}
        # (resource_type, resource_id) -> {username: permission name}
        self.grants: dict[tuple[str, str], dict[str, str]] = {}
        self.workspaces: dict[str, WorkspaceState] = {}
        # (resource_type, resource_id) -> workspace name, for resources outside "default"
        self.workspace_of: dict[tuple[str, str], str] = {}

    def apply(self, table: str, rows: pa.Table | pa.RecordBatch) -> None:
        """Fold rows of one of the auth tables, in row order."""
        _HANDLERS[table](self, rows)

    def _apply_users(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(["user_id", "username", "password_hash", "is_admin", "is_deleted"]).to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms", null=0)
        for i, name in enumerate(cols["username"]):
            if cols["is_deleted"][i]:
                self.users.pop(name, None)
                continue
            self.users[name] = UserState(
                user_id=cols["user_id"][i],
                username=name,
                password_hash=cols["password_hash"][i],
                is_admin=cols["is_admin"][i],
                created_at=created[i] or 0,
            )

    def _apply_tokens(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(["token_id", "username", "token_sha256", "name", "is_revoked"]).to_pydict()
        expires = epoch_ints(rows.column("expires_at"), "ms")
        created = epoch_ints(rows.column("created_at"), "ms", null=0)
        for i, token_id in enumerate(cols["token_id"]):
            old = self.tokens.pop(token_id, None)
            if old is not None:
                self.tokens_by_hash.pop(old.token_sha256, None)
            if cols["is_revoked"][i]:
                continue
            token = TokenState(
                token_id=token_id,
                username=cols["username"][i],
                token_sha256=cols["token_sha256"][i],
                name=cols["name"][i],
                expires_at=expires[i],
                created_at=created[i] or 0,
            )
            self.tokens[token_id] = token
            self.tokens_by_hash[token.token_sha256] = token

    def _apply_permissions(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(["resource_type", "resource_id", "username", "permission", "is_deleted"]).to_pydict()
        for i, kind in enumerate(cols["resource_type"]):
            key = (kind, cols["resource_id"][i])
            if cols["is_deleted"][i]:
                granted = self.grants.get(key)
                if granted is not None:
                    granted.pop(cols["username"][i], None)
                continue
            self.grants.setdefault(key, {})[cols["username"][i]] = cols["permission"][i]

    def _apply_workspaces(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(["name", "description", "default_artifact_root", "is_deleted"]).to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms", null=0)
        for i, name in enumerate(cols["name"]):
            if cols["is_deleted"][i]:
                self.workspaces.pop(name, None)
                continue
            self.workspaces[name] = WorkspaceState(
                name=name,
                description=cols["description"][i],
                default_artifact_root=cols["default_artifact_root"][i],
                created_at=created[i] or 0,
            )

    def _apply_workspace_resources(self, rows: pa.Table | pa.RecordBatch) -> None:
        cols = rows.select(["resource_type", "resource_id", "workspace"]).to_pydict()
        for kind, resource_id, workspace in zip(
            cols["resource_type"], cols["resource_id"], cols["workspace"], strict=True
        ):
            if workspace == DEFAULT_WORKSPACE:
                self.workspace_of.pop((kind, resource_id), None)
            else:
                self.workspace_of[(kind, resource_id)] = workspace


_HANDLERS: dict[str, Callable[[AuthState, Any], None]] = {
    USER_CHANGES.name: AuthState._apply_users,
    API_TOKEN_CHANGES.name: AuthState._apply_tokens,
    PERMISSION_CHANGES.name: AuthState._apply_permissions,
    WORKSPACE_CHANGES.name: AuthState._apply_workspaces,
    WORKSPACE_RESOURCE_CHANGES.name: AuthState._apply_workspace_resources,
}
AUTH_TABLE_NAMES = frozenset(_HANDLERS)
