"""Permission checks: a user's level on an experiment or registered model, enforced per route.

Levels are MLflow's (``lakeops.services.auth.LEVELS``): READ to see, EDIT to change, MANAGE to
delete and to grant. Admins have MANAGE on everything; without a grant a user has the configured
default (``auth.default_permission``). Nothing is checked while authentication is off.
"""

from __future__ import annotations

from fastapi import Request

from api.auth import request_user
from lakeops.errors import PermissionDeniedError, UnauthenticatedError
from lakeops.services.auth import LEVELS, AuthService


def require_level(request: Request, kind: str, resource_id: str, level: str) -> None:
    """Refuse (403) unless the caller has at least ``level`` on the resource.

    Raises:
        UnauthenticatedError: authentication is on and the request carries no user.
        PermissionDeniedError: the caller's level is lower.
    """
    auth: AuthService = request.app.state.auth
    if not auth.enabled:
        return
    user = request_user(request)
    if user is None:
        raise UnauthenticatedError("Authentication required")
    have = auth.level(user, kind, resource_id)
    if LEVELS[have] < LEVELS[level]:
        what = "experiment" if kind == "experiment" else "registered model"
        raise PermissionDeniedError(
            f"Permission denied: user {user.username!r} has {have} on {what} {resource_id!r}; this needs {level}",
            details={"resource_type": kind, "resource_id": resource_id, "needs": level, "has": have},
        )
