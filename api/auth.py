"""Authentication at the edge: HTTP Basic (user, password) or Bearer (API token) on every route.

With ``auth.enabled`` off (the embedded default, bound to localhost) every request passes as
nobody in particular. With it on, every request but ``/health`` must carry credentials:
``Authorization: Basic`` (what the stock mlflow client sends for ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``) or ``Authorization: Bearer <token>`` (``MLFLOW_TRACKING_TOKEN``,
``lakeops.connect(url, token=...)``). A request without valid ones gets 401 with a
``WWW-Authenticate: Basic`` challenge (so a browser asks for a login), in the protocol's error
shape. The authenticated user is the actor of everything the request changes
(``lakeops.actor``) and ``request.state.user`` for the permission checks (``api/permissions.py``).

The web portal logs in through ``/login`` (``api/routers/login.py``) instead: a session token (an
API token named "portal session", stored hashed, expiring) in an HttpOnly, SameSite=Strict cookie.
A request carrying no ``Authorization`` header but that cookie is authenticated by it, and if it
may change something (any method but GET, HEAD, OPTIONS) it must also send the header
``X-CSRF-Token`` with the value of the ``lakeops_csrf`` cookie (derived from the session token, so a
page of another site can neither read nor forge it): a request a foreign page makes the browser
send is refused (403). A browser asking for the portal without credentials is sent to ``/login``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie

from fastapi import Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from lakeops.actor import acting_as
from lakeops.services.auth import AuthService, User

OPEN_PATHS = frozenset({"/health", "/login"})
CHALLENGE = {"WWW-Authenticate": 'Basic realm="lakeops", charset="UTF-8"'}
SESSION_COOKIE = "lakeops_session"
CSRF_COOKIE = "lakeops_csrf"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PORTAL_PAGES = frozenset({"/"})  # what a browser opens; the rest (API, files) answers 401


def csrf_token(session: str) -> str:
    """The CSRF value of a session: a one-way function of the session token (which only the cookie holds)."""
    return hashlib.sha256(b"lakeops-csrf:" + session.encode(errors="replace")).hexdigest()


def session_cookie(headers: dict[bytes, bytes]) -> str | None:
    """The portal session token a request's cookies carry, if any."""
    raw = headers.get(b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except CookieError:
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


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
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"")
        session = None if header else session_cookie(headers)
        if session is not None:
            user = auth.authenticate_token(session)
            problem = "" if user else "The portal session has expired or was logged out: log in again at /login"
        else:
            user, problem = await authenticate(auth, header)
        if user is None:
            request = Request(scope, receive)
            if not header and scope["method"] == "GET" and scope["path"] in PORTAL_PAGES:
                await RedirectResponse("/login", status_code=303)(scope, receive, send)
                return
            response = error_response(request, 401, "unauthenticated", 401, "UNAUTHENTICATED", problem)
            if session is None:  # no challenge for the portal: the browser would ask with its own dialog
                response.headers.update(CHALLENGE)
            await response(scope, receive, send)
            return
        if session is not None and scope["method"] not in SAFE_METHODS:
            sent = headers.get(CSRF_HEADER, b"").decode("latin-1")
            if not hmac.compare_digest(sent, csrf_token(session)):
                message = "CSRF check failed: a request made with the portal's session cookie must send X-CSRF-Token"
                response = error_response(
                    Request(scope, receive), 403, "permission_denied", 403, "PERMISSION_DENIED", message
                )
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
