"""The portal's login and logout (with authentication on): a session cookie instead of Basic credentials.

``GET /login`` is a small self-contained form; ``POST /login`` (form fields ``username`` and
``password``) checks the password and answers a redirect to the portal with two cookies: the
session token (``lakeops_session``: HttpOnly, SameSite=Strict, Secure over HTTPS, lasting
``auth.session_hours``; server-side it is an API token stored as its SHA-256, expiring and
revocable) and its CSRF value (``lakeops_csrf``, readable by the portal's script, which sends it
back as ``X-CSRF-Token`` on every request that may change something; see ``api/auth.py``).
``POST /logout`` revokes the session and clears both cookies.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from api.auth import CSRF_COOKIE, SESSION_COOKIE, csrf_token, session_cookie
from lakeops.services.auth import AuthService

router = APIRouter(include_in_schema=False)

_MAX_FORM_BYTES = 8192

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Log in - lakeops</title>
  <link rel="icon" href="data:,">
  <style>
    body {{ font: 15px system-ui, sans-serif; display: grid; place-items: center; min-height: 90vh; margin: 0; }}
    form {{ display: grid; gap: .6rem; width: 18rem; }}
    input, button {{ font: inherit; padding: .45rem .6rem; }}
    .problem {{ color: #b00020; }}
  </style>
</head>
<body>
  <main>
    <h1>lakeops</h1>
    <form method="post" action="/login">
      <label>User <input name="username" autocomplete="username" required autofocus value="{username}"></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
      {problem}
      <button type="submit">Log in</button>
    </form>
  </main>
</body>
</html>
"""


def _page(*, username: str = "", problem: str = "", status: int = 200) -> HTMLResponse:
    shown = f'<p class="problem" role="alert">{html.escape(problem)}</p>' if problem else ""
    return HTMLResponse(
        _PAGE.format(username=html.escape(username), problem=shown),
        status_code=status,
        headers={"cache-control": "no-store", "x-frame-options": "DENY"},
    )


def _auth(request: Request) -> AuthService | None:
    auth: AuthService | None = getattr(request.app.state, "auth", None)
    return auth if auth is not None and auth.enabled else None


@router.get("/login")
def login_page(request: Request) -> Response:
    """The login form (the portal itself when authentication is off)."""
    if _auth(request) is None:
        return RedirectResponse("/", status_code=303)
    return _page()


@router.post("/login")
async def login(request: Request) -> Response:
    """Check a user's password; on success set the session cookies and go to the portal."""
    auth = _auth(request)
    if auth is None:
        return RedirectResponse("/", status_code=303)
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        return _page(problem="The form is too large", status=413)
    fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    username = (fields.get("username") or [""])[0]
    password = (fields.get("password") or [""])[0]
    if not username or not password:
        return _page(username=username, problem="Enter a user name and a password", status=400)
    session = await run_in_threadpool(auth.start_session, username, password)
    if session is None:
        return _page(username=username, problem="Invalid username or password", status=401)
    response = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https"
    max_age = int(auth.config.session_hours * 3600)
    response.set_cookie(
        SESSION_COOKIE, session, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf_token(session), max_age=max_age, httponly=False, samesite="strict", secure=secure, path="/"
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the portal session: revoke it and clear its cookies."""
    auth = _auth(request)
    session = session_cookie({k.lower().encode(): v.encode() for k, v in request.headers.items()})
    if auth is not None and session is not None:
        auth.end_session(session)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")
    return response
