"""One table from domain error to HTTP status, and the handlers that apply it.

Native routes answer ``{"error": {"code", "message", "details"}}``; MLflow routes answer
MLflow's ``{"error_code", "message"}``, because the stock client reads those codes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakeops.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    ConflictError,
    DataQualityError,
    InvalidArgumentError,
    LakeopsError,
    NotFoundError,
)

log = logging.getLogger(__name__)

# error class -> (HTTP status, native code, MLflow status, MLflow error_code)
ERROR_TABLE: dict[type[LakeopsError], tuple[int, str, int, str]] = {
    NotFoundError: (404, "not_found", 404, "RESOURCE_DOES_NOT_EXIST"),
    AlreadyExistsError: (409, "already_exists", 400, "RESOURCE_ALREADY_EXISTS"),
    ConflictError: (409, "conflict", 409, "ABORTED"),
    InvalidArgumentError: (400, "invalid_argument", 400, "INVALID_PARAMETER_VALUE"),
    DataQualityError: (422, "data_quality", 400, "INVALID_PARAMETER_VALUE"),
    BackendUnavailableError: (503, "backend_unavailable", 503, "TEMPORARILY_UNAVAILABLE"),
}

_MLFLOW_PREFIXES = ("/api/2.0/", "/api/3.0/", "/ajax-api/")
# MLflow's client appends its routes to the tracking URI: with a URI that has a path
# (``http://host:5000/api/v1``) they arrive as ``/api/v1/api/2.0/mlflow/...``.
_MLFLOW_MARKERS = ("/api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/")


def is_mlflow_path(path: str) -> bool:
    """Whether a request is for the MLflow protocol (also under a wrong leading path)."""
    return path.startswith(_MLFLOW_PREFIXES) or any(marker in path for marker in _MLFLOW_MARKERS)


def _no_route_message(request: Request) -> str:
    """What a 404 for an unknown route says: the route, and where the URL went wrong if we can tell."""
    path = request.url.path
    text = f"lakeops has no route {request.method} {path}"
    for marker in (*_MLFLOW_MARKERS, "/api/v1/"):
        at = path.find(marker, 1)
        if at > 0:
            prefix = path[:at]
            return (
                f"{text}: the URL should be the server root (e.g. {request.base_url.scheme}://"
                f"{request.base_url.netloc}), without {prefix!r}"
            )
    return f"{text}; the native API is under /api/v1, MLflow's under /api/2.0/mlflow (see /docs)"


def _lookup(exc: LakeopsError) -> tuple[int, str, int, str]:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return 500, "internal", 500, "INTERNAL_ERROR"


def error_response(
    request: Request,
    status: int,
    code: str,
    mlflow_status: int,
    mlflow_code: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    """The error body for this request's protocol."""
    if is_mlflow_path(request.url.path):
        return JSONResponse({"error_code": mlflow_code, "message": message}, status_code=mlflow_status)
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}}, status_code=status)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LakeopsError)
    status, code, ml_status, ml_code = _lookup(exc)
    return error_response(request, status, code, ml_status, ml_code, exc.message, exc.details)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "problem": err.get("msg", "")}
        for err in exc.errors()
    ]
    text = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems) or "invalid request"
    return error_response(
        request,
        422,
        "invalid_request",
        400,
        "INVALID_PARAMETER_VALUE",
        f"Invalid request: {text}",
        {"errors": problems},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {
        404: ("not_found", "ENDPOINT_NOT_FOUND"),
        405: ("method_not_allowed", "BAD_REQUEST"),
        413: ("too_large", "INVALID_PARAMETER_VALUE"),
    }
    code, ml_code = codes.get(exc.status_code, ("http_error", "BAD_REQUEST"))
    # Routers never raise HTTPException for domain cases, so a 404 here is a route that does not exist.
    message = _no_route_message(request) if exc.status_code == 404 else str(exc.detail)
    return error_response(request, exc.status_code, code, exc.status_code, ml_code, message)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "internal", 500, "INTERNAL_ERROR", "Internal server error; see the server log.")


class BodyLimitMiddleware:
    """Refuse request bodies over a size limit with 413, before the handler reads them.

    Checks ``Content-Length`` and, for chunked bodies, counts bytes as they arrive.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, exempt: tuple[str, ...]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise StarletteHTTPException(413, f"Request body larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = error_response(
            request,
            413,
            "too_large",
            400,
            "INVALID_PARAMETER_VALUE",
            f"Request body larger than {self.max_bytes} bytes",
        )
        await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the one mapping on ``app``."""
    app.add_exception_handler(LakeopsError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
