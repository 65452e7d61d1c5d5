"""Permission checks: a user's level on an experiment or registered model, declared per route.

Levels are MLflow's (``lakeops.services.auth.LEVELS``): READ to see, EDIT to change, MANAGE to
delete and to grant. Admins have MANAGE on everything; without a grant a user has the configured
default (``auth.default_permission``); creating an experiment or a model grants its creator MANAGE.
Nothing is checked while authentication is off.

Every route of the app declares what it needs in ``RULES`` (by endpoint), and one dependency
(``authorize``, installed app-wide in ``create_app``) applies it before the handler runs. A route
without a declaration is refused while authentication is on, and ``tests/api/test_permissions.py``
fails on it: forgetting one cannot open a hole. The forms of a declaration:

* ``"open"``: any authenticated user (health, docs, the portal's files, creating experiments);
* ``"admin"``: admins only;
* ``"handler"``: the handler checks (user management, tokens, searches that filter their answer);
* ``"all"``: the user must be able to read every experiment and model (user SQL and the Iceberg
  catalog read whole tables: they are for admins and for users no grant or default holds back);
* ``"<LEVEL> <resource> <field>[|<field>...]"``: the level on the resource named by the first of
  these fields found in the path, the query or the JSON body. Resources: ``experiment`` (an id),
  ``experiment_name``, ``run``, ``logged_model`` and ``trace`` (each its experiment), ``model`` (a
  registered model's name), ``artifact`` (a path whose first segment is an experiment id; other
  paths need authentication only), ``target`` (a comment target: ``run:``, ``model:``,
  ``version:``) and ``workspace`` (a workspace's name: the caller's membership level there). A field
  holding a list names several resources, each checked. A resource that does not exist is not
  checked: the handler answers 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from api.auth import OPEN_PATHS, request_user
from lakeops.errors import LakeopsError, PermissionDeniedError, UnauthenticatedError
from lakeops.services.auth import LEVELS, AuthService, User
from lakeops.sql import Readable
from lakeops.stores.auth_state import DEFAULT_WORKSPACE

_SPECIAL = ("open", "admin", "handler", "all")
_RESOURCES = (
    "experiment",
    "experiment_name",
    "run",
    "logged_model",
    "trace",
    "model",
    "artifact",
    "target",
    "workspace",
)

_T = "api.routers.mlflow_tracking."
_R = "api.routers.mlflow_registry."
_X = "api.routers.mlflow_traces."
_N = "api.routers.native."
_G = "api.routers.registry."
_A = "api.routers.artifacts."
_L = "api.routers.lineage."
_U = "api.routers.users."

RULES: dict[str, str] = {
    # -- the service itself ------------------------------------------------------------------------
    "api.main.create_app.<locals>.mlflow_version": "open",
    "api.main.create_app.<locals>.server_info": "open",
    "api.main.create_app.<locals>.service_version": "open",
    "fastapi.applications.FastAPI.setup.<locals>.openapi": "open",
    "fastapi.applications.FastAPI.setup.<locals>.redoc_html": "open",
    "fastapi.applications.FastAPI.setup.<locals>.swagger_ui_html": "open",
    "fastapi.applications.FastAPI.setup.<locals>.swagger_ui_redirect": "open",
    "api.observability.health": "open",
    "api.observability.metrics": "admin",
    "api.routers.portal.index": "open",
    "api.routers.login.login_page": "open",
    "api.routers.login.login": "open",
    "api.routers.login.logout": "open",
    "api.routers.portal.vendor_asset": "open",
    "api.routers.portal.portal_asset": "open",
    # -- MLflow tracking -----------------------------------------------------------------------------
    _T + "create_experiment": "open",
    _T + "get_experiment": "READ experiment experiment_id",
    _T + "get_experiment_by_name": "READ experiment_name experiment_name",
    _T + "search_experiments_post": "handler",
    _T + "search_experiments_get": "handler",
    _T + "update_experiment": "EDIT experiment experiment_id",
    _T + "delete_experiment": "MANAGE experiment experiment_id",
    _T + "restore_experiment": "MANAGE experiment experiment_id",
    _T + "set_experiment_tag": "EDIT experiment experiment_id",
    _T + "delete_experiment_tag": "EDIT experiment experiment_id",
    _T + "create_run": "EDIT experiment experiment_id",
    _T + "update_run": "EDIT run run_id|run_uuid",
    _T + "delete_run": "MANAGE run run_id",
    _T + "restore_run": "MANAGE run run_id",
    _T + "get_run": "READ run run_id|run_uuid",
    _T + "log_metric": "EDIT run run_id|run_uuid",
    _T + "log_param": "EDIT run run_id|run_uuid",
    _T + "set_tag": "EDIT run run_id|run_uuid",
    _T + "delete_tag": "EDIT run run_id|run_uuid",
    _T + "log_batch": "EDIT run run_id|run_uuid",
    _T + "search_runs": "READ experiment experiment_ids",
    _T + "get_metric_history": "READ run run_id|run_uuid",
    _T + "get_metric_history_bulk_interval": "READ run run_ids",
    _T + "log_inputs": "EDIT run run_id",
    _T + "log_outputs": "EDIT run run_id",
    _T + "create_logged_model": "EDIT experiment experiment_id",
    _T + "search_logged_models": "READ experiment experiment_ids",
    _T + "get_logged_model": "READ logged_model model_id",
    _T + "finalize_logged_model": "EDIT logged_model model_id",
    _T + "delete_logged_model": "MANAGE logged_model model_id",
    _T + "set_logged_model_tags": "EDIT logged_model model_id",
    _T + "delete_logged_model_tag": "EDIT logged_model model_id",
    _T + "log_logged_model_params": "EDIT logged_model model_id",
    # -- MLflow traces and assessments -----------------------------------------------------------------
    _X + "start_trace": "handler",  # EDIT on the trace's experiment, read from the nested trace_info
    _X + "export_spans": "handler",  # EDIT on the x-mlflow-experiment-id header's experiment
    _X + "search_traces_v3": "handler",  # READ on each experiment of the nested locations
    _X + "search_traces_v2": "READ experiment experiment_ids",
    _X + "get_trace": "READ trace trace_id",
    _X + "get_trace_info_v2": "READ trace trace_id",
    _X + "get_trace_info_v3": "READ trace trace_id",
    _X + "batch_get_traces": "READ trace trace_ids",
    _X + "batch_get_traces_post": "READ trace trace_ids",
    _X + "batch_get_trace_infos": "READ trace trace_ids",
    _X + "set_trace_tag": "EDIT trace trace_id",
    _X + "delete_trace_tag": "EDIT trace trace_id",
    _X + "delete_traces": "MANAGE experiment experiment_id",
    _X + "link_traces_to_run": "EDIT run run_id",
    _X + "link_prompts_to_trace": "EDIT trace trace_id",
    _X + "create_assessment": "EDIT trace trace_id",
    _X + "get_assessment": "READ trace trace_id",
    _X + "update_assessment": "EDIT trace trace_id",
    _X + "delete_assessment": "EDIT trace trace_id",
    _X + "query_metrics": "READ experiment experiment_ids",
    # -- MLflow's web UI paths and GraphQL: each read checks READ on what it returns ------------------
    "api.routers.graphql.graphql_get": "handler",
    "api.routers.graphql.graphql_post": "handler",
    "api.routers.mlflow_ui.get_artifact": "handler",
    "api.routers.mlflow_ui.get_metric_history_bulk": "handler",
    "api.routers.mlflow_ui.get_model_version_artifact": "handler",
    "api.routers.mlflow_ui.list_artifacts": "handler",
    "api.routers.mlflow_ui.search_datasets": "handler",
    "api.routers.mlflow_ui.assistant_config": "open",  # answers that no assistant provider is set up
    "api.routers.mlflow_ui.assistant_providers": "open",
    "api.routers.mlflow_webui.ui_index": "open",  # MLflow's web UI files; its data calls are checked
    "api.routers.mlflow_webui.ui_root": "open",
    "api.routers.mlflow_webui.ui_static": "open",
    # -- evaluation datasets: each handler checks the level on the dataset's experiments ---------------
    **{
        "api.routers.mlflow_datasets." + name: "handler"
        for name in (
            "add_experiments",
            "create_dataset",
            "delete_dataset",
            "delete_records",
            "delete_tag",
            "get_dataset",
            "get_experiment_ids",
            "get_records",
            "remove_experiments",
            "search_datasets",
            "set_tags",
            "upsert_records",
        )
    },
    # -- webhooks: they send registry events to any URL, so only admins set them up ---------------------
    **{
        "api.routers.mlflow_webhooks." + name: "admin"
        for name in (
            "create_webhook",
            "delete_webhook",
            "get_webhook",
            "list_webhooks",
            "test_webhook",
            "update_webhook",
        )
    },
    # -- MLflow model registry -----------------------------------------------------------------------
    _R + "create_registered_model": "open",
    _R + "get_registered_model": "READ model name",
    _R + "rename_registered_model": "EDIT model name",  # as MLflow; the grants follow the new name
    _R + "update_registered_model": "EDIT model name",
    _R + "delete_registered_model": "MANAGE model name",
    _R + "search_registered_models": "handler",
    _R + "get_latest_versions_post": "READ model name",
    _R + "get_latest_versions_get": "READ model name",
    _R + "set_registered_model_tag": "EDIT model name",
    _R + "delete_registered_model_tag": "EDIT model name",
    _R + "set_registered_model_alias": "EDIT model name",  # forcing past the quality gate: MANAGE (handler)
    _R + "delete_registered_model_alias": "EDIT model name",
    _R + "get_model_version_by_alias": "READ model name",
    _R + "create_model_version": "EDIT model name",
    _R + "get_model_version": "READ model name",
    _R + "update_model_version": "EDIT model name",
    _R + "delete_model_version": "MANAGE model name",
    _R + "transition_model_version_stage": "EDIT model name",
    _R + "search_model_versions": "handler",
    _R + "get_model_version_download_uri": "READ model name",
    _R + "set_model_version_tag": "EDIT model name",
    _R + "delete_model_version_tag": "EDIT model name",
    # -- native tracking -----------------------------------------------------------------------------
    _N + "create_experiment": "open",
    _N + "list_experiments": "handler",
    _N + "get_experiment_by_name": "READ experiment_name name",
    _N + "get_experiment": "READ experiment experiment_id",
    _N + "rename_experiment": "EDIT experiment experiment_id",
    _N + "delete_experiment": "MANAGE experiment experiment_id",
    _N + "restore_experiment": "MANAGE experiment experiment_id",
    _N + "set_experiment_tag": "EDIT experiment experiment_id",
    _N + "delete_experiment_tag": "EDIT experiment experiment_id",
    _N + "create_run": "EDIT experiment experiment_id",
    _N + "search_runs": "READ experiment experiment_ids",
    _N + "group_runs": "READ experiment experiment_ids",
    _N + "get_run": "READ run run_id",
    _N + "update_run": "EDIT run run_id",
    _N + "delete_run": "MANAGE run run_id",
    _N + "restore_run": "MANAGE run run_id",
    _N + "log_run_batch": "EDIT run run_id",
    _N + "set_run_tag": "EDIT run run_id",
    _N + "delete_run_tag": "EDIT run run_id",
    _N + "metric_history": "READ run run_id",
    _N + "ingest_metrics": "handler",  # EDIT on the run of every point, checked once the body is parsed
    "api.routers.charts.downsampled_history": "READ run run_id",
    "api.routers.charts.downsampled_histories": "READ run run_ids",
    "api.routers.checkpoints.create_checkpoint": "EDIT run run_id",
    "api.routers.checkpoints.list_checkpoints": "READ run run_id",
    "api.routers.checkpoints.latest_checkpoint": "READ run run_id",
    "api.routers.checkpoints.best_checkpoint": "READ run run_id",
    "api.routers.checkpoints.get_checkpoint": "READ run run_id",
    "api.routers.checkpoints.delete_checkpoint": "EDIT run run_id",
    "api.routers.comments.list_comments": "READ target target",
    "api.routers.comments.post_comment": "READ target target",
    "api.routers.comments.delete_comment": "EDIT target target",
    # -- native registry -----------------------------------------------------------------------------
    _G + "create_registered_model": "open",
    _G + "search_registered_models": "handler",
    _G + "get_registered_model": "READ model name",
    _G + "update_registered_model": "EDIT model name",
    _G + "delete_registered_model": "MANAGE model name",
    _G + "set_registered_model_tag": "EDIT model name",
    _G + "delete_registered_model_tag": "EDIT model name",
    _G + "create_model_version": "EDIT model name",
    _G + "list_model_versions": "READ model name",
    _G + "search_model_versions": "handler",
    _G + "get_model_version": "READ model name",
    _G + "update_model_version": "EDIT model name",
    _G + "delete_model_version": "MANAGE model name",
    _G + "set_model_version_tag": "EDIT model name",
    _G + "delete_model_version_tag": "EDIT model name",
    _G + "get_model_version_download_uri": "READ model name",
    _G + "set_alias": "EDIT model name",  # forcing past the quality gate: MANAGE (handler)
    _G + "delete_alias": "EDIT model name",
    _G + "get_version_by_alias": "READ model name",
    _G + "alias_history": "READ model name",
    _G + "record_deployment": "EDIT model name",
    _G + "retire_deployment": "EDIT model name",
    _G + "current_deployments": "all",
    _G + "deployment_history": "READ model name",
    _G + "application_versions": "READ model name",
    # -- artifacts -------------------------------------------------------------------------------------
    _A + "mlflow_upload": "EDIT artifact artifact_path",
    _A + "mlflow_list": "READ artifact path",
    _A + "mlflow_download": "READ artifact artifact_path",
    _A + "mlflow_delete": "MANAGE artifact artifact_path",
    _A + "mlflow_mpu_create": "EDIT artifact artifact_path",
    _A + "mlflow_mpu_complete": "EDIT artifact artifact_path",
    _A + "mlflow_mpu_abort": "EDIT artifact artifact_path",
    _A + "mlflow_presigned": "READ artifact artifact_path",
    _A + "start_upload": "EDIT artifact path",
    _A + "complete_upload": "EDIT artifact path",
    _A + "abort_upload": "open",
    _A + "download_url": "READ artifact artifact_path",
    _A + "transfers": "admin",
    _A + "upload": "EDIT artifact artifact_path",
    _A + "list_artifacts": "READ artifact prefix",
    _A + "download": "READ artifact artifact_path",
    _A + "versions": "READ artifact artifact_path",
    _A + "delete": "MANAGE artifact artifact_path",
    # -- datasets, lineage, quality --------------------------------------------------------------------
    _L + "log_dataset": "EDIT run run_id",
    _L + "log_dataframe": "EDIT run run_id",
    _L + "list_datasets": "open",
    _L + "list_dataset_versions": "open",
    _L + "get_dataset_version": "open",
    _L + "link_dataset_version": "EDIT run run_id",
    _L + "attach_suite": "open",
    _L + "list_suites": "open",
    _L + "get_suite": "open",
    _L + "detach_suite": "open",
    _L + "validate_dataset_version": "open",
    _L + "list_validations": "open",
    _L + "check_gate": "open",
    _L + "post_openlineage_event": "open",
    _L + "get_lineage": "all",
    _L + "get_run_openlineage": "READ run run_id",
    # -- SQL -------------------------------------------------------------------------------------------
    # SQL answers only the rows of what the user may read (sql_readable): any user may query.
    "api.routers.sql.run_sql": "open",
    "api.routers.sql.save_query": "open",
    "api.routers.sql.list_queries": "open",
    "api.routers.sql.get_query": "open",
    "api.routers.sql.update_query": "all",
    "api.routers.sql.delete_query": "all",
    "api.routers.sql.run_query": "open",
    # -- the Iceberg REST catalog: whole tables, like SQL ---------------------------------------------
    "api.routers.iceberg_rest.get_config": "all",
    "api.routers.iceberg_rest.list_namespaces": "all",
    "api.routers.iceberg_rest.load_namespace": "all",
    "api.routers.iceberg_rest.namespace_exists": "all",
    "api.routers.iceberg_rest.list_tables": "all",
    "api.routers.iceberg_rest.list_views": "all",
    "api.routers.iceberg_rest.load_table": "all",
    "api.routers.iceberg_rest.table_exists": "all",
    # -- MLflow 3's workspaces: admins create, change and delete; members read -----------------------
    "api.routers.workspaces.list_workspaces": "handler",  # lists the caller's workspaces only
    "api.routers.workspaces.create_workspace": "admin",
    "api.routers.workspaces.get_workspace": "READ workspace workspace_name",
    "api.routers.workspaces.update_workspace": "admin",
    "api.routers.workspaces.delete_workspace": "admin",
    "api.routers.workspaces.list_members": "READ workspace workspace_name",
    # -- users, tokens, grants: checked in the handlers (admin, self, MANAGE on the resource) ------
    **{
        _U + name: "handler"
        for name in (
            "create_user",
            "get_user",
            "current_user",
            "list_users",
            "update_password",
            "update_admin",
            "delete_user",
            "create_experiment_permission",
            "get_experiment_permission",
            "update_experiment_permission",
            "delete_experiment_permission",
            "create_model_permission",
            "get_model_permission",
            "update_model_permission",
            "delete_model_permission",
            "grant_user_permission",
            "revoke_user_permission",
            "get_user_permission",
            "current_permissions",
            "create_token",
            "list_tokens",
            "revoke_token",
            "me",
        )
    },
}


@dataclass(frozen=True)
class Rule:
    """What one route needs."""

    kind: str  # open, admin, handler, all, or a resource
    level: str = "READ"
    fields: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Rule:
        """A rule from its declaration (see the module docstring)."""
        if text in _SPECIAL:
            return cls(kind=text)
        level, resource, fields = text.split()
        if level not in LEVELS or resource not in _RESOURCES:
            raise ValueError(f"bad permission rule {text!r}")
        return cls(kind=resource, level=level, fields=tuple(fields.split("|")))


PARSED: dict[str, Rule] = {name: Rule.parse(text) for name, text in RULES.items()}


def endpoint_name(endpoint: Any) -> str:
    """The key of an endpoint in ``RULES``: ``module.function`` of the handler as written."""
    inner = getattr(endpoint, "__wrapped__", endpoint)
    return f"{inner.__module__}.{inner.__qualname__}"


def _auth(request: Request) -> AuthService | None:
    auth: AuthService | None = getattr(request.app.state, "auth", None)
    return auth if auth is not None and auth.enabled else None


def _user(request: Request) -> User:
    user = request_user(request)
    if user is None:
        raise UnauthenticatedError("Authentication required")
    return user


def _refuse(user: User, have: str, need: str, kind: str, resource_id: str) -> PermissionDeniedError:
    what = {"experiment": "experiment", "workspace": "workspace"}.get(kind, "registered model")
    return PermissionDeniedError(
        f"Permission denied: user {user.username!r} has {have} on {what} {resource_id!r}; this needs {need}",
        details={"resource_type": kind, "resource_id": resource_id, "needs": need, "has": have},
    )


def require_level(request: Request, kind: str, resource_id: str, level: str) -> None:
    """Refuse (403) unless the caller has at least ``level`` on the resource.

    Raises:
        UnauthenticatedError: authentication is on and the request carries no user.
        PermissionDeniedError: the caller's level is lower.
    """
    auth = _auth(request)
    if auth is None:
        return
    user = _user(request)
    have = auth.level(user, kind, resource_id)
    if LEVELS[have] < LEVELS[level]:
        raise _refuse(user, have, level, kind, resource_id)


def can_read(request: Request, kind: str, resource_id: str) -> bool:
    """Whether the caller may see a resource (for searches that leave out what may not be seen)."""
    auth = _auth(request)
    if auth is None:
        return True
    user = request_user(request)
    return user is not None and LEVELS[auth.level(user, kind, resource_id)] >= LEVELS["READ"]


def readable_only(request: Request, answer: dict[str, Any], items: str, kind: str, id_key: str) -> dict[str, Any]:
    """``answer`` without the entries of its list ``items`` the caller may not read (MLflow's searches do so)."""
    if _auth(request) is not None:
        answer[items] = [i for i in answer.get(items, []) if can_read(request, kind, str(i[id_key]))]
    return answer


def require_all(request: Request) -> None:
    """Refuse unless the caller may read every experiment and model (whole-table reads: SQL, Iceberg).

    Raises:
        PermissionDeniedError: the default level is below READ for this user, or a grant holds them back.
    """
    auth = _auth(request)
    if auth is None:
        return
    user = _user(request)
    if not auth.may_read_everything(user):
        raise PermissionDeniedError(
            f"Permission denied: user {user.username!r} may not read every experiment and model, and this reads "
            "whole tables (SQL, the Iceberg catalog); ask an admin"
        )


def sql_readable(request: Request) -> Readable | None:
    """What the caller's SQL may read (``SqlEngine.query(readable=...)``): None without authentication or for
    users who may read everything.

    Raises:
        UnauthenticatedError: authentication is on and the request carries no user.
    """
    auth = _auth(request)
    return None if auth is None else auth.readable(_user(request))


async def _values(request: Request, fields: tuple[str, ...]) -> list[str]:
    """The first of ``fields`` present in the path, the query or the JSON body, as a list of ids."""
    for name in fields:
        if name in request.path_params:
            return [str(request.path_params[name])]
        listed = request.query_params.getlist(name)
        if listed:
            return [str(v) for v in listed]
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and request.headers.get("content-type", "").startswith(
        "application/json"
    ):
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return []  # the handler answers the malformed body
        if isinstance(body, dict):
            for name in fields:
                value = body.get(name)
                if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                    return [str(value)]
                if isinstance(value, list):
                    return [str(v) for v in value if isinstance(v, str | int)]
    return []


def resources_of(request: Request, kind: str, value: str) -> list[tuple[str, str]]:
    """The (resource type, id) pairs a field's value names; none if it names nothing that exists."""
    state = request.app.state
    try:
        if kind == "experiment":
            return [("experiment", value)]
        if kind == "experiment_name":  # names are looked up in the request's workspace: elsewhere, the handler's 404
            experiment_id = state.tracking.get_experiment_by_name(value).experiment_id
            named = (request.headers.get("x-mlflow-workspace") or "").strip() or DEFAULT_WORKSPACE
            return (
                [("experiment", experiment_id)] if state.auth.workspace_of("experiment", experiment_id) == named else []
            )
        if kind == "run":  # straight from the state: no run entity built on every logging call
            run = state.store.state.runs.get(value)
            return [] if run is None else [("experiment", run.experiment_id)]
        if kind == "logged_model":
            return [("experiment", state.tracking.get_logged_model(value, allow_deleted=True).experiment_id)]
        if kind == "trace":
            return [("experiment", state.traces.get_trace_info(value).experiment_id)]
        if kind == "model":
            return [("registered_model", value)]
        if kind == "workspace":
            return [("workspace", value)] if state.workspaces.exists(value) else []
        if kind == "artifact":
            first = value.strip("/").split("/", 1)[0]
            return [("experiment", first)] if first in state.store.state.experiments else []
        if kind == "target":
            target_kind, _, rest = value.partition(":")
            if target_kind == "run":
                return [("experiment", state.tracking.get_run(rest).info.experiment_id)]
            if target_kind in ("model", "version"):
                return [("registered_model", rest.rsplit("/", 1)[0] if target_kind == "version" else rest)]
            return []
    except LakeopsError:
        return []  # does not exist: the handler says so
    return []


async def authorize(request: Request) -> None:
    """The app-wide dependency: apply the route's declared rule (nothing while authentication is off).

    Raises:
        UnauthenticatedError: no user on a request that needs one.
        PermissionDeniedError: the route has no declared rule, or the user lacks the level it needs.
    """
    auth = _auth(request)
    if auth is None or request.url.path in OPEN_PATHS:
        return
    name = endpoint_name(request.scope.get("endpoint"))
    rule = PARSED.get(name)
    if rule is None:
        raise PermissionDeniedError(f"No permission is declared for this route ({name}); refused")
    user = _user(request)
    if rule.kind in ("open", "handler"):
        return
    if rule.kind == "admin":
        if not user.is_admin:
            raise PermissionDeniedError("Permission denied: admins only")
        return
    if rule.kind == "all":
        require_all(request)
        return
    for value in await _values(request, rule.fields):
        for kind, resource_id in resources_of(request, rule.kind, value):
            have = auth.level(user, kind, resource_id)
            if LEVELS[have] < LEVELS[rule.level]:
                raise _refuse(user, have, rule.level, kind, resource_id)


def app_endpoints(app: Any) -> dict[str, list[str]]:
    """Every endpoint of ``app`` (``RULES`` keys) with the methods and paths that reach it."""
    found: dict[str, list[str]] = {}

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:  # an included router (FastAPI resolves them lazily)
                context = getattr(route, "include_context", None)
                walk(inner.routes, prefix + str(getattr(context, "prefix", "") or ""))
                continue
            endpoint = getattr(route, "endpoint", None)
            if endpoint is None:
                continue
            methods = ",".join(sorted(getattr(route, "methods", None) or []))
            found.setdefault(endpoint_name(endpoint), []).append(f"{methods} {prefix}{route.path}")

    walk(app.router.routes, "")
    return found
