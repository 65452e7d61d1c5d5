"""Users, API tokens and permission levels per experiment and registered model.

Users and their argon2id password hashes (argon2-cffi), API tokens and permission grants are
append-only Iceberg tables like everything else (``user_changes``, ``api_token_changes``,
``permission_changes``), written through the store's one write primitive; the usernames are a
constrained key, so two replicas cannot create the same user twice.

Levels follow MLflow's basic-auth plugin: ``READ`` < ``EDIT`` < ``MANAGE``, and ``NO_PERMISSIONS``.
A user's level on a resource is: MANAGE for admins; else the user's grant on it; else what their
membership of the resource's workspace gives; else, in the workspace "default" only, the configured
default (a resource of another workspace is closed to non-members). Creating an experiment or a
registered model grants its creator MANAGE.

Workspaces (MLflow 3's): every experiment and registered model belongs to one, "default" unless
created elsewhere (``workspace_resource_changes``). A membership is a grant on ("workspace", name)
in ``permission_changes``, so it shows in the ``activity`` view like any grant; its level is one of
``MEMBER_LEVELS``: READ, EDIT or MANAGE on every resource of the workspace, or MLflow's ``USE`` (the
configured default on them, and the right to create). Creating in a workspace needs USE, EDIT or
MANAGE there; granting membership needs MANAGE there.

Verifying an argon2 hash costs tens of milliseconds by design, too much for every ``log_metric``.
A password verified once is remembered for a few minutes as an HMAC under a key that lives only
in this process (never the password), and only while the user's stored hash is the one it was
verified against: a password change or a deletion takes effect at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from catalog.tables import API_TOKEN_CHANGES, PERMISSION_CHANGES, USER_CHANGES, WORKSPACE_RESOURCE_CHANGES
from lakeops.actor import current_user
from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.settings import AuthConfig
from lakeops.sql import Readable
from lakeops.stores.auth_state import DEFAULT_WORKSPACE, TokenState, UserState
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import TrackingState

ResourceType = Literal["experiment", "registered_model"]
RESOURCE_TYPES: tuple[str, ...] = ("experiment", "registered_model")
LEVELS: dict[str, int] = {"NO_PERMISSIONS": 0, "READ": 1, "EDIT": 3, "MANAGE": 4}
MEMBER_LEVELS: tuple[str, ...] = ("READ", "USE", "EDIT", "MANAGE")  # a workspace membership's levels
_CREATORS = frozenset({"USE", "EDIT", "MANAGE"})  # members who may create in their workspace
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+\-]{0,127}$")
_CACHE_TTL_S = 300.0
_CACHE_MAX = 10_000
SESSION_NAME = "portal session"  # the name of the API tokens behind portal logins
TOKEN_PREFIX = "lko_"  # noqa: S105 - the public prefix of every API token, not a secret


@dataclass(frozen=True)
class User:
    """A user, without secrets."""

    user_id: int
    username: str
    is_admin: bool
    created_at: int

    @classmethod
    def of(cls, state: UserState) -> User:
        """The entity for a state entry."""
        return cls(user_id=state.user_id, username=state.username, is_admin=state.is_admin, created_at=state.created_at)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (MLflow's ``User`` shape plus ``created_at``)."""
        return {"id": self.user_id, "username": self.username, "is_admin": self.is_admin, "created_at": self.created_at}


@dataclass(frozen=True)
class Token:
    """An API token's public facts (never the token)."""

    token_id: str
    username: str
    name: str | None
    expires_at: int | None
    created_at: int

    @classmethod
    def of(cls, state: TokenState) -> Token:
        """The entity for a state entry."""
        return cls(
            token_id=state.token_id,
            username=state.username,
            name=state.name,
            expires_at=state.expires_at,
            created_at=state.created_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "token_id": self.token_id,
            "username": self.username,
            "name": self.name,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
        }


def check_level(permission: object) -> str:
    """A permission level name, checked."""
    if not isinstance(permission, str) or permission not in LEVELS:
        raise InvalidArgumentError(f"Invalid permission {permission!r}: one of {', '.join(LEVELS)}")
    return permission


def _check_resource_type(resource_type: object) -> str:
    if resource_type not in (*RESOURCE_TYPES, "workspace"):
        raise InvalidArgumentError(
            f"Invalid resource type {resource_type!r}: one of {', '.join(RESOURCE_TYPES)}, workspace"
        )
    return str(resource_type)


def check_member_level(permission: object) -> str:
    """A workspace membership's level, checked."""
    if not isinstance(permission, str) or permission not in MEMBER_LEVELS:
        raise InvalidArgumentError(
            f"Invalid permission {permission!r} for a workspace member: one of {', '.join(MEMBER_LEVELS)}"
        )
    return permission


def _check_username(username: object) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise InvalidArgumentError(
            f"Invalid username {username!r}: 1-128 letters, digits, '_', '.', '@', '+' or '-', "
            "starting with a letter or digit"
        )
    return username


def _check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidArgumentError(
            f"Invalid password: a string of {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    return password


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class AuthService:
    """Create and check users and tokens; grant and resolve permission levels."""

    def __init__(self, store: IcebergStore, config: AuthConfig, *, now_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.config = config
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._hasher = PasswordHasher()
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[str, float]] = {}  # HMAC(user, password) -> (hash verified, until)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether requests must authenticate."""
        return self.config.enabled

    # -- users ---------------------------------------------------------------------------------

    def _user_row(self, user: UserState, operation: str, *, is_deleted: bool = False) -> Rows:
        now = self._now_ms()
        columns = {
            "user_id": [user.user_id],
            "username": [user.username],
            "password_hash": [user.password_hash],
            "is_admin": [user.is_admin],
            "is_deleted": [is_deleted],
            "created_at": [user.created_at * 1000],
            "changed_at": [now * 1000],
            "actor": [self.store_actor()],
            "operation": [operation],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return {USER_CHANGES.name: pa.RecordBatch.from_pydict(columns, schema=USER_CHANGES.arrow_schema)}

    def store_actor(self) -> str:
        """Who is making a change now (the request's user, else ``lakeops`` itself)."""
        return current_user() or "lakeops"

    def bootstrap(self) -> None:
        """With authentication on, create the configured admin if there is no user at all.

        Raises:
            InvalidArgumentError: authentication is on, there is no user, and no admin password is set.
        """
        if not self.enabled or self.store.state.auth.users:
            return
        if self.config.admin_password is None:
            raise InvalidArgumentError(
                "authentication is on but there is no user yet: set LAKEOPS_AUTH__ADMIN_PASSWORD (admin: "
                f"{self.config.admin_username}, LAKEOPS_AUTH__ADMIN_USERNAME) to create the first admin"
            )
        with contextlib.suppress(AlreadyExistsError):  # another replica bootstrapped it first
            self.create_user(self.config.admin_username, self.config.admin_password.get_secret_value(), is_admin=True)

    def create_user(self, username: str, password: str, *, is_admin: bool = False) -> User:
        """A new user.

        Raises:
            InvalidArgumentError: a bad username or a password too short or too long.
            AlreadyExistsError: the username is taken.
        """
        username = _check_username(username)
        password_hash = self._hasher.hash(_check_password(password))
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            if username in state.auth.users:
                raise AlreadyExistsError(f"User '{username}' already exists", details={"username": username})
            user = UserState(
                user_id=secrets.randbits(52),
                username=username,
                password_hash=password_hash,
                is_admin=bool(is_admin),
                created_at=now,
            )
            return self._user_row(user, "create")

        self.store.write(build)
        return self.get_user(username)

    def _user(self, state: TrackingState, username: str) -> UserState:
        found = state.auth.users.get(username) if isinstance(username, str) else None
        if found is None:
            raise NotFoundError(f"User with username={username!r} not found", details={"username": username})
        return found

    def get_user(self, username: str) -> User:
        """One user.

        Raises:
            NotFoundError: no such user.
        """
        return User.of(self._user(self.store.state, username))

    def list_users(self) -> list[User]:
        """Every user, by name."""
        return [User.of(u) for _n, u in sorted(self.store.state.auth.users.items())]

    def _change_user(self, username: str, operation: str, **changes: Any) -> None:
        def build(state: TrackingState) -> Rows:
            old = self._user(state, username)
            new = UserState(
                user_id=old.user_id,
                username=old.username,
                password_hash=changes.get("password_hash", old.password_hash),
                is_admin=changes.get("is_admin", old.is_admin),
                created_at=old.created_at,
            )
            return self._user_row(new, operation, is_deleted=operation == "delete")

        self.store.write(build)

    def update_password(self, username: str, password: str) -> None:
        """Set a user's password (API tokens stay valid).

        Raises:
            NotFoundError: no such user.
            InvalidArgumentError: a password too short or too long.
        """
        self._user(self.store.state, username)
        self._change_user(username, "update_password", password_hash=self._hasher.hash(_check_password(password)))

    def update_admin(self, username: str, is_admin: bool) -> None:
        """Make a user an admin, or not.

        Raises:
            NotFoundError: no such user.
            InvalidArgumentError: ``is_admin`` is not a boolean.
        """
        if not isinstance(is_admin, bool):
            raise InvalidArgumentError(f"Invalid is_admin {is_admin!r}: true or false")
        self._change_user(username, "update_admin", is_admin=is_admin)

    def delete_user(self, username: str) -> None:
        """Delete a user with their API tokens and grants (a later user of the same name starts afresh).

        Raises:
            NotFoundError: no such user.
        """

        def build(state: TrackingState) -> Rows:
            rows = self._user_row(self._user(state, username), "delete", is_deleted=True)
            tokens = [
                self._token_row(t, "revoke", is_revoked=True)[API_TOKEN_CHANGES.name]
                for t in state.auth.tokens.values()
                if t.username == username
            ]
            grants = [
                self._grant_row(kind, rid, username, users[username], "revoke")[PERMISSION_CHANGES.name]
                for (kind, rid), users in state.auth.grants.items()
                if username in users
            ]
            for name, batches in ((API_TOKEN_CHANGES.name, tokens), (PERMISSION_CHANGES.name, grants)):
                if batches:
                    rows[name] = _concat(batches)
            return rows

        self.store.write(build)

    def rename_resource(self, resource_type: str, old_id: str, new_id: str) -> None:
        """Carry every grant on a resource, and its workspace, over to its new id (a registered model renamed)."""
        workspace = self.workspace_of(resource_type, old_id)
        self.assign(resource_type, new_id, workspace, operation="rename")
        self.assign(resource_type, old_id, DEFAULT_WORKSPACE, operation="rename")
        granted = dict(self.store.state.auth.grants.get((resource_type, old_id), {}))
        for username, level in granted.items():
            if username in self.store.state.auth.users:
                self.grant(resource_type, new_id, username, level)

    # -- authentication --------------------------------------------------------------------------

    def _cache_entry(self, username: str, password: str) -> bytes:
        return hmac.new(self._cache_key, f"{username}\0{password}".encode(errors="surrogatepass"), "sha256").digest()

    def cached_password(self, username: str, password: str) -> User | None:
        """The user if this password was verified for them recently and their hash has not changed since."""
        user = self.store.state.auth.users.get(username)
        if user is None:
            return None
        with self._lock:
            hit = self._verified.get(self._cache_entry(username, password))
        if hit is not None and hit[0] == user.password_hash and hit[1] > time.monotonic():
            return User.of(user)
        return None

    def authenticate_password(self, username: str, password: str) -> User | None:
        """The user if the password is theirs, else None (never says which part was wrong)."""
        cached = self.cached_password(username, password)
        if cached is not None:
            return cached
        user = self.store.state.auth.users.get(username)
        if user is None:
            self._hasher.hash(password[:MAX_PASSWORD_LENGTH])  # as slow as a wrong password: names do not leak
            return None
        try:
            self._hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        with self._lock:
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
            until = time.monotonic() + _CACHE_TTL_S
            self._verified[self._cache_entry(username, password)] = (user.password_hash, until)
        return User.of(user)

    def login(self, username: str, secret: str) -> User | None:
        """The user for a name and a password or an API token of theirs (tools that send only a password)."""
        by_token = self.authenticate_token(secret)
        if by_token is not None:
            return by_token if by_token.username == username else None
        return self.authenticate_password(username, secret)

    def authenticate_token(self, token: str) -> User | None:
        """The token's user if the token is live (issued, not revoked, not expired), else None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        found = self.store.state.auth.tokens_by_hash.get(hashlib.sha256(token.encode(errors="replace")).hexdigest())
        if found is None or (found.expires_at is not None and found.expires_at <= self._now_ms()):
            return None
        user = self.store.state.auth.users.get(found.username)
        return None if user is None else User.of(user)

    # -- API tokens -----------------------------------------------------------------------------

    def _token_row(self, token: TokenState, operation: str, *, is_revoked: bool = False) -> Rows:
        columns = {
            "token_id": [token.token_id],
            "username": [token.username],
            "token_sha256": [token.token_sha256],
            "name": [token.name],
            "expires_at": [None if token.expires_at is None else token.expires_at * 1000],
            "is_revoked": [is_revoked],
            "created_at": [token.created_at * 1000],
            "changed_at": [self._now_ms() * 1000],
            "actor": [self.store_actor()],
            "operation": [operation],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return {API_TOKEN_CHANGES.name: pa.RecordBatch.from_pydict(columns, schema=API_TOKEN_CHANGES.arrow_schema)}

    def create_token(self, username: str, *, name: str | None = None, days: float | None = None) -> tuple[str, Token]:
        """A new API token for ``username``: (the token, shown this once; its public facts).

        Raises:
            NotFoundError: no such user.
            InvalidArgumentError: ``days`` is not positive, or the name is too long.
        """
        days = self.config.token_days if days is None else days
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 36_500:
            raise InvalidArgumentError(f"Invalid days {days!r}: a number of days between 0 and 36500")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise InvalidArgumentError("Invalid token name: at most 200 characters")
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = self._now_ms()
        state = TokenState(
            token_id=token_id,
            username=username,
            token_sha256=hashlib.sha256(token.encode()).hexdigest(),
            name=name,
            expires_at=now + int(days * 86_400_000),
            created_at=now,
        )

        def build(tracking: TrackingState) -> Rows:
            self._user(tracking, username)
            return self._token_row(state, "create")

        self.store.write(build)
        return token, Token.of(state)

    def start_session(self, username: str, password: str) -> str | None:
        """A portal login: a session token for ``username`` if the password is right, else None.

        A session is an API token named ``SESSION_NAME`` lasting ``auth.session_hours``: stored as its
        SHA-256, expiring, revoked by ``end_session`` (logout) or like any token.
        """
        user = self.authenticate_password(username, password)
        if user is None:
            return None
        token, _ = self.create_token(user.username, name=SESSION_NAME, days=self.config.session_hours / 24)
        return token

    def end_session(self, token: str) -> None:
        """Log a portal session out (revoke its token); nothing if it is not a live token."""
        found = self.store.state.auth.tokens_by_hash.get(hashlib.sha256(token.encode(errors="replace")).hexdigest())
        if found is not None:
            with contextlib.suppress(NotFoundError):
                self.revoke_token(found.token_id)

    def list_tokens(self, username: str | None = None) -> list[Token]:
        """Live and expired tokens not revoked (of one user, or everyone's), oldest first."""
        tokens = self.store.state.auth.tokens.values()
        return sorted(
            (Token.of(t) for t in tokens if username is None or t.username == username), key=lambda t: t.created_at
        )

    def get_token(self, token_id: str) -> Token:
        """One token's public facts.

        Raises:
            NotFoundError: no such token (or revoked).
        """
        found = self.store.state.auth.tokens.get(token_id)
        if found is None:
            raise NotFoundError(f"No API token {token_id!r}", details={"token_id": token_id})
        return Token.of(found)

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token: it stops working at once.

        Raises:
            NotFoundError: no such token (or already revoked).
        """

        def build(state: TrackingState) -> Rows:
            found = state.auth.tokens.get(token_id)
            if found is None:
                raise NotFoundError(f"No API token {token_id!r}", details={"token_id": token_id})
            return self._token_row(found, "revoke", is_revoked=True)

        self.store.write(build)

    # -- permissions -----------------------------------------------------------------------------

    def _grant_row(self, resource_type: str, resource_id: str, username: str, permission: str, operation: str) -> Rows:
        columns = {
            "resource_type": [resource_type],
            "resource_id": [resource_id],
            "username": [username],
            "permission": [permission],
            "is_deleted": [operation == "revoke"],
            "changed_at": [self._now_ms() * 1000],
            "actor": [self.store_actor()],
            "operation": [operation],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return {PERMISSION_CHANGES.name: pa.RecordBatch.from_pydict(columns, schema=PERMISSION_CHANGES.arrow_schema)}

    def grant(self, resource_type: str, resource_id: str, username: str, permission: str) -> None:
        """Give ``username`` ``permission`` on a resource (replacing any grant they had on it).

        Raises:
            InvalidArgumentError: a bad resource type or level.
            NotFoundError: no such user.
        """
        kind = _check_resource_type(resource_type)
        level = check_member_level(permission) if kind == "workspace" else check_level(permission)
        if not isinstance(resource_id, str) or not resource_id:
            raise InvalidArgumentError(f"Invalid resource id {resource_id!r}")

        def build(state: TrackingState) -> Rows:
            self._user(state, username)
            if kind == "workspace" and resource_id != DEFAULT_WORKSPACE and resource_id not in state.auth.workspaces:
                raise NotFoundError(f"Workspace '{resource_id}' not found", details={"workspace": resource_id})
            old = state.auth.grants.get((kind, resource_id), {}).get(username)
            return self._grant_row(kind, resource_id, username, level, "update" if old else "create")

        self.store.write(build)

    def revoke(self, resource_type: str, resource_id: str, username: str) -> None:
        """Remove ``username``'s grant on a resource (the default level applies again).

        Raises:
            NotFoundError: there is no such grant.
        """
        kind = _check_resource_type(resource_type)

        def build(state: TrackingState) -> Rows:
            old = state.auth.grants.get((kind, resource_id), {}).get(username)
            if old is None:
                raise NotFoundError(
                    f"No permission for user {username!r} on {kind} {resource_id!r}",
                    details={"username": username, "resource_type": kind, "resource_id": resource_id},
                )
            return self._grant_row(kind, resource_id, username, old, "revoke")

        self.store.write(build)

    def granted(self, resource_type: str, resource_id: str, username: str) -> str | None:
        """``username``'s explicit grant on a resource, or None."""
        return self.store.state.auth.grants.get((resource_type, resource_id), {}).get(username)

    def workspace_of(self, resource_type: str, resource_id: str) -> str:
        """The workspace an experiment (by id) or a registered model (by name) belongs to."""
        return self.store.state.auth.workspace_of.get((resource_type, resource_id), DEFAULT_WORKSPACE)

    def membership(self, workspace: str, username: str) -> str | None:
        """``username``'s membership level in ``workspace`` (``MEMBER_LEVELS``), or None."""
        return self.granted("workspace", workspace, username)

    def _through_workspace(self, username: str, workspace: str) -> str:
        """The level a user has on a resource of ``workspace`` that no grant of theirs names."""
        member = self.membership(workspace, username)
        if member is None:
            return self.config.default_permission if workspace == DEFAULT_WORKSPACE else "NO_PERMISSIONS"
        return self.config.default_permission if member == "USE" else member

    def level(self, user: User, resource_type: str, resource_id: str) -> str:
        """``user``'s effective level on a resource (see the module docstring); on a workspace, what their
        membership lets them do to the workspace itself (READ: see it; MANAGE: grant membership)."""
        if user.is_admin:
            return "MANAGE"
        if resource_type == "workspace":
            member = self.membership(resource_id, user.username)
            if member is None:
                return "READ" if resource_id == DEFAULT_WORKSPACE else "NO_PERMISSIONS"
            return "READ" if member == "USE" else member
        granted = self.granted(resource_type, resource_id, user.username)
        if granted is not None:
            return granted
        return self._through_workspace(user.username, self.workspace_of(resource_type, resource_id))

    def may_create_in(self, user: User | None, workspace: str) -> bool:
        """Whether ``user`` may create experiments and models in ``workspace`` (anyone, without authentication)."""
        if not self.enabled or user is None or user.is_admin or workspace == DEFAULT_WORKSPACE:
            return True
        return self.membership(workspace, user.username) in _CREATORS

    def may_read_everything(self, user: User) -> bool:
        """Whether ``user`` may read every experiment and model (what whole-table reads need: SQL, Iceberg)."""
        if user.is_admin:
            return True
        held_back = any(
            LEVELS[g["permission"]] < LEVELS["READ"]
            for g in self.grants_of(user.username)
            if g["resource_type"] != "workspace"
        )
        workspaces = {DEFAULT_WORKSPACE, *self.store.state.auth.workspace_of.values()}
        return not held_back and all(
            LEVELS[self._through_workspace(user.username, ws)] >= LEVELS["READ"] for ws in workspaces
        )

    def readable(self, user: User) -> Readable | None:
        """What ``user``'s SQL may read (``SqlEngine.query(readable=...)``); None: everything.

        Admins and users whom neither the default nor a grant holds back read every row; others read
        the experiments and models their grants and the default let them read.
        """
        if self.may_read_everything(user):
            return None
        found: dict[str, tuple[set[str], set[str]]] = {kind: (set(), set()) for kind in RESOURCE_TYPES}
        named = [(g["resource_type"], g["resource_id"]) for g in self.grants_of(user.username)]
        # Resources of other workspaces than "default" are listed one by one, each with the user's level.
        for kind, resource_id in [*named, *self.store.state.auth.workspace_of]:
            if kind in found:
                shown, hidden = found[kind]
                readable = LEVELS[self.level(user, kind, resource_id)] >= LEVELS["READ"]
                (shown if readable else hidden).add(resource_id)
        member_of = [
            g["resource_id"]
            for g in self.grants_of(user.username)
            if g["resource_type"] == "workspace" and g["permission"] != "NO_PERMISSIONS"
        ]
        return Readable(
            by_default=LEVELS[self._through_workspace(user.username, DEFAULT_WORKSPACE)] >= LEVELS["READ"],
            workspaces=frozenset({DEFAULT_WORKSPACE, *member_of}),
            experiments=frozenset(found["experiment"][0]),
            hidden_experiments=frozenset(found["experiment"][1]),
            models=frozenset(found["registered_model"][0]),
            hidden_models=frozenset(found["registered_model"][1]),
        )

    def grant_creator(self, resource_type: str, resource_id: str, *, workspace: str = DEFAULT_WORKSPACE) -> None:
        """Place what was just created in its workspace, and give the acting user MANAGE on it (not without
        authentication)."""
        self.assign(resource_type, resource_id, workspace)
        username = current_user()
        if self.enabled and username is not None and username in self.store.state.auth.users:
            self.grant(resource_type, resource_id, username, "MANAGE")

    def _assign_row(self, resource_type: str, resource_id: str, workspace: str, operation: str) -> pa.RecordBatch:
        columns = {
            "resource_type": [resource_type],
            "resource_id": [resource_id],
            "workspace": [workspace],
            "changed_at": [self._now_ms() * 1000],
            "actor": [self.store_actor()],
            "operation": [operation],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return pa.RecordBatch.from_pydict(columns, schema=WORKSPACE_RESOURCE_CHANGES.arrow_schema)

    def assign(self, resource_type: str, resource_id: str, workspace: str, *, operation: str = "assign") -> None:
        """Put a resource in ``workspace`` (nothing is written when it is there already)."""

        def build(state: TrackingState) -> Rows:
            if state.auth.workspace_of.get((resource_type, resource_id), DEFAULT_WORKSPACE) == workspace:
                return {}
            return {WORKSPACE_RESOURCE_CHANGES.name: self._assign_row(resource_type, resource_id, workspace, operation)}

        self.store.write(build)

    def grants_of(self, username: str) -> list[dict[str, str]]:
        """Every explicit grant ``username`` holds."""
        return [
            {"resource_type": kind, "resource_id": rid, "permission": users[username]}
            for (kind, rid), users in sorted(self.store.state.auth.grants.items())
            if username in users
        ]
