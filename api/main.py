"""The FastAPI application: the composition root of the service.

``create_app(settings)`` opens the store once in the lifespan, keeps the services on
``app.state`` and mounts the native API at ``/api/v1`` and MLflow's protocol at
``/api/2.0/mlflow`` (mirrored at ``/ajax-api/2.0/mlflow``), and the Iceberg REST catalog
protocol (read-only) at ``/iceberg``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any, cast

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from api.auth import AuthMiddleware
from api.encoding import JSONBody
from api.errors import BodyLimitMiddleware, install_error_handlers
from api.observability import RequestMetricsMiddleware, ServiceMetrics
from api.observability import router as operations_router
from api.permissions import authorize
from api.refresh_on_miss import RefreshOnMissMiddleware
from api.routers import (
    artifacts,
    charts,
    checkpoints,
    comments,
    graphql,
    iceberg_rest,
    lineage,
    login,
    mlflow_datasets,
    mlflow_registry,
    mlflow_traces,
    mlflow_tracking,
    mlflow_ui,
    mlflow_webhooks,
    mlflow_webui,
    native,
    portal,
    registry,
    sql,
    users,
    workspaces,
)
from lakeops.errors import InvalidArgumentError
from lakeops.health import HealthMonitor
from lakeops.lake import Lake
from lakeops.registry import AliasGate
from lakeops.services.auth import AuthService, User
from lakeops.settings import LakeopsSettings, LimitsConfig
from lakeops.sql import Readable

MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
# MLflow registers its 3.0 RPCs (traces, assessments) under both versions, and mirrors each at /ajax-api.
MLFLOW_TRACE_PREFIXES = ("/api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/2.0/mlflow", "/ajax-api/3.0/mlflow")
# The MLflow release whose REST protocol lakeops speaks (answered at GET /version, as MLflow does).
MLFLOW_PROTOCOL_VERSION = "3.17.2"
MLFLOW_ARTIFACT_UPLOADS = "/api/2.0/mlflow-artifacts/artifacts/"


def body_limits(limits: LimitsConfig) -> tuple[Callable[[str], int], Callable[[str], bool]]:
    """(the most bytes a body to a path may hold, whether the path takes a streamed, non-JSON body)."""
    streamed: tuple[tuple[str, str, int], ...] = (  # (path prefix, path suffix, limit)
        (MLFLOW_ARTIFACT_UPLOADS, "", limits.artifact_bytes),
        ("/api/v1/artifacts/", "", limits.artifact_bytes),
        ("/api/v1/metrics/ingest", "", limits.ingest_bytes),
        ("/api/v1/datasets/", "/dataframe", limits.dataframe_bytes),
    )

    def streamed_limit(path: str) -> int | None:
        for prefix, suffix, limit in streamed:
            if path.startswith(prefix) and path.endswith(suffix):
                return limit
        return None

    def limit_for(path: str) -> int:
        limit = streamed_limit(path)
        return limits.json_body_bytes if limit is None else limit

    def is_streamed(path: str) -> bool:
        return streamed_limit(path) is not None

    return limit_for, is_streamed


def _server_tls(settings: LakeopsSettings) -> ssl.SSLContext | None:
    """The TLS context of the PostgreSQL endpoint from ``tls.certfile``/``tls.keyfile`` (None: no TLS).

    Raises:
        InvalidArgumentError: the certificate or key cannot be read or do not match.
    """
    tls = settings.tls
    if tls.certfile is None or tls.keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(tls.certfile), str(tls.keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgumentError(f"cannot use the TLS certificate {tls.certfile}: {exc}") from exc
    return context


def _sql_login(auth: AuthService, username: str, secret: str) -> Callable[[], Readable | None] | None:
    """A PostgreSQL-wire login: None if it fails, else what the session's SQL may read, asked per query
    (a grant or a revocation applies to open sessions at once; a deleted user reads nothing)."""
    user = auth.login(username, secret)
    if user is None:
        return None

    def readable() -> Readable | None:
        current = auth.store.state.auth.users.get(username)
        if current is None:
            return Readable(by_default=False)
        return auth.readable(User.of(current))

    return readable


def create_app(
    settings: LakeopsSettings | None = None,
    *,
    alias_gate: AliasGate | None = None,
    pg_port: int | None = None,
    pg_host: str = "127.0.0.1",
) -> FastAPI:
    """Build the app for ``settings`` (default: read from the environment).

    ``alias_gate`` guards the registry's protected aliases; by default the quality gate over the
    training data. With ``pg_port``, the lifespan also serves the SQL views over the PostgreSQL
    wire protocol on ``pg_host:pg_port`` (login ``sql.pg_user`` / ``sql.pg_password``).
    """
    settings = settings or LakeopsSettings()
    if pg_port is not None and settings.sql.pg_password is None and not settings.auth.enabled:
        raise InvalidArgumentError(
            "serving the PostgreSQL endpoint needs a password: set LAKEOPS_SQL__PG_PASSWORD (user: "
            f"{settings.sql.pg_user}, LAKEOPS_SQL__PG_USER)"
        )

    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lake = await run_in_threadpool(Lake, settings, alias_gate=alias_gate)
        store = lake.store
        app.state.settings = settings
        app.state.lake = lake
        app.state.store = store
        for name in Lake.SERVICES:  # built here, at start-up, rather than on a first request
            setattr(app.state, name, await run_in_threadpool(getattr, lake, name))
        await run_in_threadpool(app.state.auth.bootstrap)
        app.state.health = HealthMonitor(store)
        metrics.watch(app.state.health)
        await run_in_threadpool(app.state.webhooks.start)  # resumes deliveries a previous process left
        await run_in_threadpool(app.state.artifacts.start)  # and hashing of uploads it left pending
        engine = app.state.sql
        pg = None
        if pg_port is not None:
            from api.pgwire import PgWireServer  # buenavista is imported only when the endpoint is served

            password = settings.sql.pg_password.get_secret_value() if settings.sql.pg_password else ""
            auth = app.state.auth
            pg = PgWireServer(
                engine,
                host=pg_host,
                port=pg_port,
                user=settings.sql.pg_user,
                password=password,
                # With authentication on, lakeops users log in (a password or an API token as the password),
                # and each session's SQL reads only the rows its user may read (as POST /api/v1/sql).
                check_login=(lambda user, secret: _sql_login(auth, user, secret)) if auth.enabled else None,
                ssl_context=_server_tls(settings),
            )
            pg.start()
        try:
            yield
        finally:
            if pg is not None:
                await run_in_threadpool(pg.stop)
            await run_in_threadpool(app.state.webhooks.stop)
            await run_in_threadpool(app.state.artifacts.stop)
            metrics.unwatch()
            await run_in_threadpool(lake.close)

    app = FastAPI(
        title="lakeops",
        version=version("lakeops"),
        description="Lakehouse-native ML metadata: experiments, runs and metrics on Apache Iceberg.",
        lifespan=lifespan,
        default_response_class=JSONBody,
        # Every route's declared permission (api/permissions.py), checked before its handler runs.
        dependencies=[Depends(authorize)],
    )
    install_error_handlers(app)
    # Innermost: a read that misses an id another replica just created waits for its commit.
    app.add_middleware(RefreshOnMissMiddleware, wait_s=settings.write.miss_wait())
    app.add_middleware(mlflow_webui.UiPrefixMiddleware)  # innermost: MLflow's UI at /mlflow/ calls our routes
    limit_for, is_streamed = body_limits(settings.limits)
    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for, streamed=is_streamed)
    app.add_middleware(AuthMiddleware)  # outside the body limit: no credentials, no body read
    if settings.http.cors_origins:  # closed by default: only the origins configured may call from a browser
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.state.metrics = metrics
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)  # outermost: times 413s too
    app.include_router(operations_router)
    # Span ingest first: FastAPI tries routes in order (~2 us each), and the tracing SDK posts every span.
    app.include_router(mlflow_traces.otlp_router, tags=["mlflow"])
    app.include_router(login.router)
    app.include_router(native.router, prefix="/api/v1", tags=["native"])
    app.include_router(artifacts.native_router, prefix="/api/v1", tags=["artifacts"])
    app.include_router(checkpoints.router, prefix="/api/v1", tags=["checkpoints"])
    app.include_router(registry.router, prefix="/api/v1", tags=["registry"])
    app.include_router(lineage.router, prefix="/api/v1", tags=["lineage"])
    app.include_router(sql.router, prefix="/api/v1", tags=["sql"])
    app.include_router(charts.router, prefix="/api/v1", tags=["native"])
    app.include_router(comments.router, prefix="/api/v1", tags=["comments"])
    app.include_router(users.native_router, prefix="/api/v1", tags=["users"])
    app.include_router(artifacts.mlflow_router, prefix="/api/2.0/mlflow-artifacts", tags=["mlflow"])
    app.include_router(iceberg_rest.router, prefix=iceberg_rest.PREFIX, tags=["iceberg"])
    for prefix in MLFLOW_PREFIXES:
        app.include_router(
            mlflow_tracking.router, prefix=prefix, tags=["mlflow"], include_in_schema=prefix.startswith("/api")
        )
        app.include_router(
            mlflow_registry.router, prefix=prefix, tags=["mlflow"], include_in_schema=prefix.startswith("/api")
        )
        app.include_router(
            users.mlflow_router, prefix=prefix, tags=["users"], include_in_schema=prefix.startswith("/api")
        )
    for prefix in ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow"):
        app.include_router(
            users.mlflow3_router, prefix=prefix, tags=["users"], include_in_schema=prefix.startswith("/api")
        )
        app.include_router(
            workspaces.router, prefix=prefix, tags=["workspaces"], include_in_schema=prefix.startswith("/api")
        )
    app.include_router(workspaces.native_router, prefix="/api/v1", tags=["workspaces"])

    for prefix in MLFLOW_TRACE_PREFIXES:
        app.include_router(
            mlflow_traces.router, prefix=prefix, tags=["mlflow"], include_in_schema=prefix.startswith("/api")
        )
        app.include_router(
            mlflow_datasets.router, prefix=prefix, tags=["mlflow"], include_in_schema=prefix.startswith("/api")
        )
    # What MLflow's own web UI calls besides the client's protocol.
    for prefix in MLFLOW_PREFIXES:
        app.include_router(
            mlflow_ui.router, prefix=prefix, tags=["mlflow"], include_in_schema=prefix.startswith("/api")
        )
    app.include_router(mlflow_ui.root_router, tags=["mlflow"])
    app.include_router(mlflow_ui.assistant_router, prefix="/ajax-api/3.0/mlflow", include_in_schema=False)
    app.include_router(graphql.router, tags=["mlflow"])
    for prefix in MLFLOW_PREFIXES:
        app.include_router(
            mlflow_webhooks.router, prefix=prefix, tags=["mlflow"], include_in_schema=prefix.startswith("/api")
        )

    app.include_router(mlflow_webui.router)
    app.include_router(portal.router)

    @app.get("/version", tags=["mlflow"], response_class=PlainTextResponse)
    def mlflow_version() -> str:
        # What an MLflow server answers: its version as plain text. The stock client reads it before
        # exporting spans (it needs >= 3.4), so lakeops answers the MLflow protocol version it speaks.
        return MLFLOW_PROTOCOL_VERSION

    @app.get("/api/v1/version", tags=["service"])
    def service_version() -> dict[str, Any]:
        return {"lakeops": version("lakeops"), "mlflow_protocol": MLFLOW_PROTOCOL_VERSION, **settings.describe()}

    @app.get("/api/3.0/mlflow/server-info", tags=["mlflow"])
    @app.get("/ajax-api/3.0/mlflow/server-info", include_in_schema=False)
    def server_info() -> dict[str, Any]:
        direct = app.state.artifacts.direct is not None  # S3 stores: bytes go straight to the store
        return {
            "store_type": "IcebergStore",
            "artifact_serving_enabled": True,
            "workspaces_enabled": True,
            "multipart_uploads_enabled": direct,
            "multipart_downloads_enabled": direct,
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            "features_enabled": {},
        }

    _skip_routers_outside_their_prefix(app)
    return app


def _skip_routers_outside_their_prefix(app: FastAPI) -> None:
    """Let a router included under a prefix answer "no match" at once for a path outside it.

    FastAPI 0.165 matches a request against each route of every router included before the one
    that serves it, with scope bookkeeping around each attempt: ~1.2 ms of CPU to reach MLflow's
    log-batch (the 18th of 47 inclusions) and ~2 ms for ``GET /version``, of the ~5 ms a logging
    request costs the server. A router included with prefix P only has routes under P, so for any
    other path its answer is known without trying them; the check is a superset (``startswith``),
    so no path that could match is skipped. (Measured with a loop over ``app.router.routes``.)
    """
    for route in app.router.routes:
        prefix = getattr(getattr(route, "include_context", None), "prefix", "")
        if not prefix:
            continue

        def matches(scope: Scope, _matches: Any = route.matches, _prefix: str = prefix) -> tuple[Match, Scope]:
            path: str = scope["path"]
            root_path: str = scope.get("root_path", "")
            if root_path and path.startswith(root_path):  # as starlette reads the route path
                path = path[len(root_path) :]
            if path.startswith(_prefix):
                return cast(tuple[Match, Scope], _matches(scope))
            return Match.NONE, {}

        setattr(route, "matches", matches)  # noqa: B010 - an instance's method, replaced on that instance
