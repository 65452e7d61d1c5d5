"""Authentication at the edge: HTTP Basic (user, password) or Bearer (API token) on every route.

With ``auth.enabled`` off (the embedded default, bound to localhost) every request passes as
nobody in particular. With it on, every request but ``/health`` must carry credentials:
``Authorization: Basic`` (what the stock mlflow client sends for ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``) or ``Authorization: Bearer <token>`` (``MLFLOW_TRACKING_TOKEN``,
``lakeops.connect(url, token=...)``). A request without valid ones gets 401 with a
``WWW-Authenticate: Basic`` challenge (so a browser asks for a login), in the protocol's error
shape. The authenticated user is the actor of everything the request changes
(``lakeops.actor``) and ``request.state.user`` for the permission checks (``api/permissions.py``).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from lakeops.actor import acting_as
from lakeops.services.auth import AuthService, User

OPEN_PATHS = frozenset({"/health"})
CHALLENGE = {"WWW-Authenticate": 'Basic realm="lakeops", charset="UTF-8"'}


class AuthMiddleware:
    """Authenticate each HTTP request against ``app.state.auth`` (a no-op while auth is off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        auth: AuthService | None = getattr(scope["app"].state, "auth", None)
        if auth is None or not auth.enabled or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        user, problem = await authenticate(auth, header)
        if user is None:
            response = error_response(Request(scope, receive), 401, "unauthenticated", 401, "UNAUTHENTICATED", problem)
            response.headers.update(CHALLENGE)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["user"] = user
        with acting_as(user.username):
            await self.app(scope, receive, send)


async def authenticate(auth: AuthService, header: bytes) -> tuple[User | None, str]:
    """(the user an ``Authorization`` header proves, or None; why not)."""
    scheme, _, value = header.decode("latin-1").partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if not header:
        return None, "Authentication required: send HTTP Basic (user, password) or Bearer (API token) credentials"
    if scheme == "bearer" and value:
        user = auth.authenticate_token(value)
        return user, "" if user else "Invalid, expired or revoked API token"
    if scheme == "basic" and value:
        try:
            username, colon, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, "Malformed Basic credentials"
        if not colon:
            return None, "Malformed Basic credentials"
        # Tools that can only send a user and a password (psql, BI tools) may send a token as the password.
        user = auth.cached_password(username, password) or auth.authenticate_token(password)
        if user is None:
            user = await run_in_threadpool(auth.authenticate_password, username, password)  # argon2: tens of ms
        if user is not None and user.username != username:
            user = None
        return user, "" if user else "Invalid username or password"
    return None, "Unsupported Authorization scheme: use Basic or Bearer"


def request_user(request: Request) -> User | None:
    """The authenticated user of a request (None while authentication is off)."""
    user = getattr(request.state, "user", None)
    return user if isinstance(user, User) else None
