"""Users, API tokens and permission grants over HTTP.

MLflow's basic-auth REST API, so ``mlflow.server.get_app_client("basic-auth", tracking_uri=...)``
(``AuthServiceClient``) manages lakeops unchanged: ``users/{create,get,current,list,update-password,
update-admin,delete}``, the per-resource ``experiments/permissions/*`` and
``registered-models/permissions/*`` routes, and MLflow 3's ``users/permissions/{grant,revoke,get}``
(also for workspace memberships: ``resource_type`` "workspace", ``resource_id`` its name or ``*`` for
the request's ``X-MLFLOW-WORKSPACE``, as ``AuthServiceClient`` sends it under ``mlflow.set_workspace``).
The native API adds API tokens (``/api/v1/tokens``): issued to the caller, shown once.

Who may call what is decided here, as in MLflow: user management is for admins (a user may read
and change their own account); granting on a resource needs MANAGE on it (``api/permissions.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from api.auth import request_user
from api.deps import AuthDep
from api.encoding import JSONBody, RawJSONRoute
from api.permissions import require_level
from api.routers.workspaces import request_workspace
from lakeops.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from lakeops.services.auth import LEVELS, AuthService, User
from lakeops.services.workspaces import WorkspaceService

mlflow_router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)
mlflow3_router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)
native_router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UserCreate(_Body):
    username: str
    password: str


class PasswordUpdate(_Body):
    username: str
    password: str
    current_password: str | None = None


class AdminUpdate(_Body):
    username: str
    is_admin: bool


class UserRef(_Body):
    username: str


class ExperimentGrant(_Body):
    experiment_id: str
    username: str
    permission: str | None = None


class ModelGrant(_Body):
    name: str
    username: str
    permission: str | None = None


class ResourceGrant(_Body):
    username: str
    resource_type: str
    resource_id: str
    permission: str | None = None


class TokenCreate(_Body):
    name: str | None = None
    days: float | None = None
    username: str | None = None


def _admin(request: Request, auth: AuthService) -> None:
    """Refuse unless the caller is an admin (anyone may, while authentication is off)."""
    user = request_user(request)
    if auth.enabled and (user is None or not user.is_admin):
        raise PermissionDeniedError("Only admins may manage users")


def _admin_or_self(request: Request, auth: AuthService, username: str) -> User | None:
    user = request_user(request)
    if auth.enabled and (user is None or not (user.is_admin or user.username == username)):
        raise PermissionDeniedError("Only admins may manage other users")
    return user


def _permission(level: str | None) -> str:
    if level is None:
        raise InvalidArgumentError("Missing value for required parameter 'permission'")
    return level


# -- users (MLflow's /api/2.0/mlflow/users/*) -----------------------------------------------------


@mlflow_router.post("/users/create")
def create_user(body: UserCreate, request: Request, auth: AuthDep) -> dict[str, Any]:
    _admin(request, auth)
    return {"user": auth.create_user(body.username, body.password).to_dict()}


@mlflow_router.get("/users/get")
def get_user(username: str, request: Request, auth: AuthDep) -> dict[str, Any]:
    _admin_or_self(request, auth, username)
    return {"user": auth.get_user(username).to_dict()}


@mlflow_router.get("/users/current")
def current_user(request: Request, auth: AuthDep) -> dict[str, Any]:
    user = request_user(request)
    if user is None:
        raise InvalidArgumentError("Authentication is off: requests are made by nobody in particular")
    return {"user": auth.get_user(user.username).to_dict(), "is_basic_auth": True}


@mlflow_router.get("/users/list")
def list_users(request: Request, auth: AuthDep) -> dict[str, Any]:
    _admin(request, auth)
    return {"users": [u.to_dict() for u in auth.list_users()]}


@mlflow_router.patch("/users/update-password")
def update_password(body: PasswordUpdate, request: Request, auth: AuthDep) -> dict[str, Any]:
    caller = _admin_or_self(request, auth, body.username)
    if caller is not None and caller.username == body.username:  # self-service: prove the current password
        if not body.current_password or auth.authenticate_password(body.username, body.current_password) is None:
            raise InvalidArgumentError("Changing your own password needs your current password (current_password)")
        if body.password == body.current_password:
            raise InvalidArgumentError("New password must differ from the current password.")
    auth.update_password(body.username, body.password)
    return {}


@mlflow_router.patch("/users/update-admin")
def update_admin(body: AdminUpdate, request: Request, auth: AuthDep) -> dict[str, Any]:
    _admin(request, auth)
    auth.update_admin(body.username, body.is_admin)
    return {}


@mlflow_router.delete("/users/delete")
def delete_user(body: UserRef, request: Request, auth: AuthDep) -> dict[str, Any]:
    _admin(request, auth)
    caller = request_user(request)
    if caller is not None and caller.username == body.username:
        raise InvalidArgumentError("Users cannot delete their own account; ask another admin")
    auth.delete_user(body.username)
    return {}


# -- permissions on one experiment or registered model ---------------------------------------------


def _grant_json(auth: AuthService, kind: str, resource_id: str, username: str) -> dict[str, Any]:
    level = auth.granted(kind, resource_id, username)
    if level is None:
        raise NotFoundError(f"No permission for user {username!r} on {kind} {resource_id!r}")
    return {"user_id": auth.get_user(username).user_id, "permission": level}


@mlflow_router.post("/experiments/permissions/create")
def create_experiment_permission(body: ExperimentGrant, request: Request, auth: AuthDep) -> dict[str, Any]:
    require_level(request, "experiment", body.experiment_id, "MANAGE")
    auth.grant("experiment", body.experiment_id, body.username, _permission(body.permission))
    grant = _grant_json(auth, "experiment", body.experiment_id, body.username)
    return {"experiment_permission": {"experiment_id": body.experiment_id, **grant}}


@mlflow_router.get("/experiments/permissions/get")
def get_experiment_permission(experiment_id: str, username: str, request: Request, auth: AuthDep) -> dict[str, Any]:
    require_level(request, "experiment", experiment_id, "MANAGE")
    grant = _grant_json(auth, "experiment", experiment_id, username)
    return {"experiment_permission": {"experiment_id": experiment_id, **grant}}


@mlflow_router.patch("/experiments/permissions/update")
def update_experiment_permission(body: ExperimentGrant, request: Request, auth: AuthDep) -> dict[str, Any]:
    require_level(request, "experiment", body.experiment_id, "MANAGE")
    _grant_json(auth, "experiment", body.experiment_id, body.username)  # update needs an existing grant
    auth.grant("experiment", body.experiment_id, body.username, _permission(body.permission))
    return {}


@mlflow_router.delete("/experiments/permissions/delete")
def delete_experiment_permission(body: ExperimentGrant, request: Request, auth: AuthDep) -> dict[str, Any]:
    require_level(request, "experiment", body.experiment_id, "MANAGE")
    auth.revoke("experiment", body.experiment_id, body.username)
    return {}


@mlflow_router.post("/registered-models/permissions/create")
def create_model_permission(body: ModelGrant, request: Request, auth: AuthDep) -> dict[str, Any]:
    require_level(request, "registered_model", body.name, "MANAGE")
    auth.grant("registered_model", body.name, body.username, _permission(body.permission))
    grant = _grant_json(auth, "registered_model", body.name, body.username)
    return {"registered_model_permission": {"name": body.name, **grant}}


@mlflow_router.get("/registered-models/permissions/get")
def get_model_permission(name: str, username: str, request: Request, auth: AuthDep) -> dict[str, Any]:
    require_level(request, "registered_model", name, "MANAGE")
    return {"registered_model_permission": {"name": name, **_grant_json(auth, "registered_model", name, username)}}


@mlflow_router.patch("/registered-models/permissions/update")
def update_model_permission(body: ModelGrant, request: Request, auth: AuthDep) -> dict[str, Any]:
    require_level(request, "registered_model", body.name, "MANAGE")
    _grant_json(auth, "registered_model", body.name, body.username)
    auth.grant("registered_model", body.name, body.username, _permission(body.permission))
    return {}


@mlflow_router.delete("/registered-models/permissions/delete")
def delete_model_permission(body: ModelGrant, request: Request, auth: AuthDep) -> dict[str, Any]:
    require_level(request, "registered_model", body.name, "MANAGE")
    auth.revoke("registered_model", body.name, body.username)
    return {}


# -- MLflow 3's unified per-user grants (/api/3.0/mlflow/users/permissions/*) ----------------------


def _resource(request: Request, kind: str, resource_id: str) -> tuple[str, str]:
    """(resource type, id) of a grant; a workspace membership's id is the workspace's name, or ``*``: the
    workspace the request names in ``X-MLFLOW-WORKSPACE`` (as MLflow's client sends it)."""
    if kind not in ("experiment", "registered_model", "workspace"):
        raise InvalidArgumentError(f"Invalid resource_type {kind!r}: experiment, registered_model or workspace")
    if kind == "workspace":
        workspaces: WorkspaceService = request.app.state.workspaces
        return kind, request_workspace(request) if resource_id == "*" else workspaces.require(resource_id)
    return kind, resource_id


@mlflow3_router.post("/users/permissions/grant")
def grant_user_permission(body: ResourceGrant, request: Request, auth: AuthDep) -> dict[str, Any]:
    kind, resource_id = _resource(request, body.resource_type, body.resource_id)
    require_level(request, kind, resource_id, "MANAGE")
    auth.grant(kind, resource_id, body.username, _permission(body.permission))
    return {}


@mlflow3_router.post("/users/permissions/revoke")
def revoke_user_permission(body: ResourceGrant, request: Request, auth: AuthDep) -> dict[str, Any]:
    kind, resource_id = _resource(request, body.resource_type, body.resource_id)
    require_level(request, kind, resource_id, "MANAGE")
    auth.revoke(kind, resource_id, body.username)
    return {}


@mlflow3_router.get("/users/permissions/get")
def get_user_permission(
    username: str, resource_type: str, resource_id: str, request: Request, auth: AuthDep
) -> dict[str, Any]:
    kind, resource_id = _resource(request, resource_type, resource_id)
    caller = request_user(request)
    if caller is not None and not (caller.is_admin or caller.username == username):
        require_level(request, kind, resource_id, "MANAGE")  # who manages a resource sees who may use it
    if kind == "workspace":  # a membership: its own level (USE included), NO_PERMISSIONS for a non-member
        user = auth.get_user(username)
        level = "MANAGE" if user.is_admin else auth.membership(resource_id, username) or "NO_PERMISSIONS"
        return {"allowed": level != "NO_PERMISSIONS", "permission": level}
    level = auth.level(auth.get_user(username), kind, resource_id)
    return {"allowed": LEVELS[level] >= LEVELS["EDIT"], "permission": level}


@mlflow3_router.get("/users/current/permissions")
def current_permissions(request: Request, auth: AuthDep) -> dict[str, Any]:
    user = request_user(request)
    if user is None:
        return {"is_admin": True, "permissions": []}
    return {"is_admin": user.is_admin, "permissions": auth.grants_of(user.username)}


# -- API tokens (native) ---------------------------------------------------------------------------


@native_router.post("/tokens", status_code=201)
def create_token(body: TokenCreate, request: Request, auth: AuthDep) -> dict[str, Any]:
    """A new API token for the caller (an admin may name another user); the token is in this answer only."""
    caller = request_user(request)
    username = body.username or (caller.username if caller else None)
    if username is None:
        raise InvalidArgumentError("Authentication is off: name the user the token is for (username)")
    _admin_or_self(request, auth, username)
    token, info = auth.create_token(username, name=body.name, days=body.days)
    return {"token": token, **info.to_dict()}


@native_router.get("/tokens")
def list_tokens(request: Request, auth: AuthDep) -> dict[str, Any]:
    """The caller's tokens (an admin's: everyone's), without the tokens themselves."""
    caller = request_user(request)
    username = None if caller is None or caller.is_admin else caller.username
    return {"tokens": [t.to_dict() for t in auth.list_tokens(username)]}


@native_router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, request: Request, auth: AuthDep) -> Response:
    """Revoke one of the caller's tokens (an admin: anyone's)."""
    _admin_or_self(request, auth, auth.get_token(token_id).username)
    auth.revoke_token(token_id)
    return Response(status_code=204)


@native_router.get("/users/me")
def me(request: Request) -> dict[str, Any]:
    """Who the caller is (null while authentication is off)."""
    user = request_user(request)
    return {"user": None if user is None else user.to_dict()}
