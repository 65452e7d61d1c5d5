"""One table from domain error to HTTP status, and the handlers that apply it.

Native routes answer ``{"error": {"code", "message", "details"}}``; MLflow routes answer
MLflow's ``{"error_code", "message"}``, because the stock client reads those codes; the Iceberg REST
catalog's routes answer the spec's ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
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
    PermissionDeniedError,
    UnauthenticatedError,
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
    UnauthenticatedError: (401, "unauthenticated", 401, "UNAUTHENTICATED"),
    PermissionDeniedError: (403, "permission_denied", 403, "PERMISSION_DENIED"),
}

_MLFLOW_PREFIXES = ("/api/2.0/", "/api/3.0/", "/ajax-api/")
# MLflow's client appends its routes to the tracking URI: with a URI that has a path
# (``http://host:5000/api/v1``) they arrive as ``/api/v1/api/2.0/mlflow/...``.
_MLFLOW_MARKERS = ("/api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/")


def is_mlflow_path(path: str) -> bool:
    """Whether a request is for the MLflow protocol (also under a wrong leading path)."""
    return path.startswith(_MLFLOW_PREFIXES) or any(marker in path for marker in _MLFLOW_MARKERS)


ICEBERG_PREFIX = "/iceberg/"
# HTTP status -> the Iceberg REST spec's error type (404 is told apart by the route below).
_ICEBERG_TYPES = {
    400: "BadRequestException",
    401: "NotAuthorizedException",
    403: "ForbiddenException",
    405: "MethodNotAllowedException",
    409: "AlreadyExistsException",
    422: "BadRequestException",
    503: "ServiceUnavailableException",
}


def _iceberg_error(path: str, status: int, message: str, details: dict[str, Any] | None) -> JSONResponse:
    if details and isinstance(details.get("iceberg_type"), str):
        kind = details["iceberg_type"]
    elif status == 404:
        kind = "NoSuchTableException" if "/tables/" in path else "NoSuchNamespaceException"
    else:
        kind = _ICEBERG_TYPES.get(status, "InternalServerError")
    if status == 405:
        message = "lakeops serves the Iceberg REST catalog read-only: write through lakeops' API"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


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
    if request.url.path.startswith(ICEBERG_PREFIX):
        return _iceberg_error(request.url.path, status, message, details)
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
    """Refuse request bodies over their route's size limit with 413, counting bytes as they arrive.

    ``limit_for(path)`` says how many bytes a route takes (JSON routes a few MB, uploads more). A
    ``Content-Length`` over it is refused before a byte is read; a chunked body is counted as it
    streams, so no route reads more than its limit into memory. Bodies of routes that are not
    streamed (JSON) are also checked for lone UTF-16 surrogates (``"\\ud800"``): JSON allows the
    escape, but no text column, Parquet file or log can hold it, so it is refused here, at the edge.
    """

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int], streamed: Callable[[str], bool]) -> None:
        self.app = app
        self.limit_for = limit_for
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, 413, f"Request body larger than {limit} bytes")
            return
        if self.streamed(path):
            seen = 0

            async def counted() -> Message:
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise StarletteHTTPException(413, f"Request body larger than {limit} bytes")
                return message

            await self.app(scope, counted, send)
            return
        # A JSON body: read it whole (at most ``limit`` bytes), check it, hand it on.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, receive, send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, 413, f"Request body larger than {limit} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = lone_surrogate(body)
        if problem is not None:
            await self._refuse(scope, receive, send, 400, f"Request body is not valid Unicode: {problem}")
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        request = Request(scope, receive)
        code = "too_large" if status == 413 else "invalid_argument"
        response = error_response(request, status, code, 400, "INVALID_PARAMETER_VALUE", message)
        await response(scope, receive, send)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def lone_surrogate(body: bytes) -> str | None:
    """Why a JSON body holds a lone UTF-16 surrogate escape, or None (also for bodies that are not JSON)."""
    if not _SURROGATE_ESCAPE.search(body):  # the common case: one scan of the bytes, no parse
        return None
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # orjson refuses unpaired surrogates (Python's json accepts them)
        if "surrogate" in str(exc):
            return f"{str(exc).split(':', 1)[0]} (a \\ud800-\\udfff escape without its pair)"
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Register the one mapping on ``app``."""
    app.add_exception_handler(LakeopsError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
