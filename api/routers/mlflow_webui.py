"""MLflow's own web UI at ``/mlflow/``, served from the installed ``mlflow`` package (never copied here).

The UI's build lives in the wheel under ``mlflow/server/js/build``; its page loads
``static-files/...`` and calls ``ajax-api/...``, ``graphql`` and ``get-artifact`` relative to itself,
so from ``/mlflow/`` those calls arrive as ``/mlflow/ajax-api/...``: ``UiPrefixMiddleware`` strips the
prefix and they reach the same routes as everywhere else. Without ``mlflow`` installed, ``/mlflow/``
answers 503 saying so.
"""

from __future__ import annotations

import importlib.util
import mimetypes
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lakeops.errors import BackendUnavailableError, NotFoundError

UI_PREFIX = "/mlflow"
STATIC = f"{UI_PREFIX}/static-files/"
router = APIRouter(include_in_schema=False)


@cache
def build_dir() -> Path | None:
    """The UI build of the installed mlflow package, if there is one."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or spec.origin is None:
        return None
    found = Path(spec.origin).parent / "server" / "js" / "build"
    return found if (found / "index.html").is_file() else None


def _build() -> Path:
    found = build_dir()
    if found is None:
        raise BackendUnavailableError("MLflow's UI is served from the mlflow package: pip install mlflow")
    return found


@router.get(UI_PREFIX)
def ui_root() -> Response:
    return RedirectResponse(f"{UI_PREFIX}/")


@router.get(f"{UI_PREFIX}/")
def ui_index() -> Response:
    """The UI's single page; its fragment (``#/experiments/...``) picks the view."""
    return FileResponse(_build() / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})


@router.get(STATIC + "{path:path}")
def ui_static(path: str) -> Response:
    """A file of the UI's build (scripts, styles, fonts)."""
    root = _build().resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file():
        raise NotFoundError(f"No file {path!r} in MLflow's UI build")
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media_type, headers={"cache-control": "max-age=3600"})


class UiPrefixMiddleware:
    """Route the UI's relative calls (``/mlflow/ajax-api/...``, ``/mlflow/graphql``, ...) to the app's own paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        ui_call = path.startswith(f"{UI_PREFIX}/") and path != f"{UI_PREFIX}/" and not path.startswith(STATIC)
        if scope["type"] == "http" and ui_call:
            scope = dict(scope)
            scope["path"] = path[len(UI_PREFIX) :]
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.startswith(UI_PREFIX.encode()):
                scope["raw_path"] = raw[len(UI_PREFIX) :]
        await self.app(scope, receive, send)
