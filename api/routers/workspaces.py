"""MLflow 3's workspaces API (``/api/3.0/mlflow/workspaces``), as the stock client calls it.

``mlflow.create_workspace``/``list_workspaces``/``get_workspace``/``update_workspace``/
``delete_workspace`` (``RestWorkspaceStore``): create answers 201, delete 204 (``?mode=RESTRICT`` by
default, or ``SET_DEFAULT``), the rest 200 with ``{"workspace": {...}}`` or ``{"workspaces": [...]}``.
As in MLflow's basic-auth plugin, creating, updating and deleting are for admins, reading a workspace
for its members, and the list shows each caller the workspaces they belong to (and "default").

The client names its workspace (``mlflow.set_workspace``, ``MLFLOW_WORKSPACE``) in the header
``X-MLFLOW-WORKSPACE`` of every other call; ``request_workspace`` reads it for the routes it scopes
(creating and searching experiments and registered models): no header means ``default``, an unknown
workspace is 404, a malformed name 400.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict

from api.auth import request_user
from api.deps import AuthDep, WorkspacesDep
from api.encoding import JSONBody, RawJSONRoute
from api.permissions import readable_only
from lakeops.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from lakeops.services.auth import LEVELS, AuthService
from lakeops.services.workspaces import WorkspaceService
from lakeops.stores.auth_state import DEFAULT_WORKSPACE

WORKSPACE_HEADER = "x-mlflow-workspace"

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)
native_router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


def request_workspace(request: Request) -> str:
    """The workspace a request names in ``X-MLFLOW-WORKSPACE`` ("default" without one).

    Raises:
        InvalidArgumentError: a malformed workspace name.
        NotFoundError: no such workspace.
    """
    named = (request.headers.get(WORKSPACE_HEADER) or "").strip()
    if not named:
        return DEFAULT_WORKSPACE
    workspaces: WorkspaceService = request.app.state.workspaces
    return workspaces.require(named)


RequestWorkspace = Annotated[str, Depends(request_workspace)]


def require_create_in(request: Request, auth: AuthDep, workspace: str) -> None:
    """Refuse (403) unless the caller may create experiments and models in ``workspace``.

    Raises:
        PermissionDeniedError: the caller is not a member who may create there (USE, EDIT or MANAGE).
    """
    user = request_user(request)
    if not auth.may_create_in(user, workspace):
        who = user.username if user is not None else "?"
        raise PermissionDeniedError(
            f"Permission denied: user {who!r} may not create in workspace {workspace!r}; this needs membership "
            "with USE, EDIT or MANAGE",
            details={"resource_type": "workspace", "resource_id": workspace, "needs": "USE"},
        )


def scoped(request: Request, answer: dict[str, Any], items: str, kind: str, id_key: str) -> dict[str, Any]:
    """A search's ``answer`` keeping, of its list ``items``, what belongs to the request's workspace and the
    caller may read (MLflow's searches answer within the active workspace)."""
    workspace = request_workspace(request)
    auth: AuthService = request.app.state.auth
    answer[items] = [i for i in answer.get(items, []) if auth.workspace_of(kind, str(i[id_key])) == workspace]
    return readable_only(request, answer, items, kind, id_key)


def require_in_workspace(request: Request, kind: str, resource_id: str) -> None:
    """Answer 404 for a resource looked up by name outside the request's workspace (names are lake-wide).

    Raises:
        NotFoundError: the resource belongs to another workspace.
    """
    workspace = request_workspace(request)
    auth: AuthService = request.app.state.auth
    if auth.workspace_of(kind, resource_id) != workspace:
        what = "experiment" if kind == "experiment" else "registered model"
        raise NotFoundError(f"Could not find {what} {resource_id!r} in workspace {workspace!r}")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateWorkspace(_Body):
    name: str
    description: str | None = None
    default_artifact_root: str | None = None
    trace_archival_config: dict[str, Any] | None = None


class UpdateWorkspace(_Body):
    description: str | None = None
    default_artifact_root: str | None = None
    trace_archival_config: dict[str, Any] | None = None


def _no_trace_archival(config: dict[str, Any] | None) -> None:
    if config:
        raise InvalidArgumentError("trace_archival_config is not supported by lakeops: leave it out")


@router.get("/workspaces")
def list_workspaces(request: Request, workspaces: WorkspacesDep, auth: AuthDep) -> dict[str, Any]:
    user = request_user(request)
    found = workspaces.list_workspaces()
    if auth.enabled and user is not None:
        found = [w for w in found if LEVELS[auth.level(user, "workspace", w.name)] >= LEVELS["READ"]]
    return {"workspaces": [w.to_dict() for w in found]}


@router.post("/workspaces", status_code=201)
def create_workspace(body: CreateWorkspace, workspaces: WorkspacesDep) -> dict[str, Any]:
    _no_trace_archival(body.trace_archival_config)
    created = workspaces.create_workspace(
        body.name, description=body.description, default_artifact_root=body.default_artifact_root
    )
    return {"workspace": created.to_dict()}


@router.get("/workspaces/{workspace_name}")
def get_workspace(workspace_name: str, workspaces: WorkspacesDep) -> dict[str, Any]:
    return {"workspace": workspaces.get_workspace(workspace_name).to_dict()}


@router.patch("/workspaces/{workspace_name}")
def update_workspace(workspace_name: str, body: UpdateWorkspace, workspaces: WorkspacesDep) -> dict[str, Any]:
    _no_trace_archival(body.trace_archival_config)
    updated = workspaces.update_workspace(
        workspace_name, description=body.description, default_artifact_root=body.default_artifact_root
    )
    return {"workspace": updated.to_dict()}


@router.delete("/workspaces/{workspace_name}", status_code=204)
def delete_workspace(workspace_name: str, workspaces: WorkspacesDep, mode: str = "RESTRICT") -> Response:
    workspaces.delete_workspace(workspace_name, mode=mode)
    return Response(status_code=204)


@native_router.get("/workspaces/{workspace_name}/members")
def list_members(workspace_name: str, workspaces: WorkspacesDep) -> dict[str, Any]:
    """A workspace's members and their levels (grant and revoke with ``/api/3.0/mlflow/users/permissions``)."""
    return {"members": workspaces.members(workspace_name)}
