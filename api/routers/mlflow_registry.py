"""MLflow's ModelRegistryService (``/api/2.0/mlflow/registered-models/...``, ``/model-versions/...``).

Shapes follow ``model_registry.proto``: versions are strings, tags are ``[{key, value}]``,
a registered model's aliases are ``[{alias, version}]`` and a version's are plain strings.
A quality gate's refusal of a protected alias answers INVALID_PARAMETER_VALUE (400) with the
reasons in the message; ``force`` and ``reason`` (lakeops extensions) override it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import Field

from api.deps import AuthDep, RegistryDep, WebhooksDep
from api.encoding import JSONBody, RawJSONRoute, kv
from api.permissions import require_level
from api.routers.mlflow_tracking import KeyValue, _paged, _Req, _tags
from api.routers.workspaces import RequestWorkspace, require_create_in, scoped
from lakeops.errors import InvalidArgumentError
from lakeops.registry.entities import ModelVersion, RegisteredModel
from lakeops.registry.validation import DEFAULT_SEARCH_MODELS, DEFAULT_SEARCH_VERSIONS
from lakeops.services.webhooks import emit_registry_event

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


def mlflow_model_version(v: ModelVersion) -> dict[str, Any]:
    """A model version in MLflow's JSON shape."""
    out: dict[str, Any] = {
        "name": v.name,
        "version": str(v.version),
        "creation_timestamp": v.creation_timestamp,
        "last_updated_timestamp": v.last_updated_timestamp,
        "current_stage": v.current_stage,
        "source": v.source,
        "status": v.status,
        "tags": kv(v.tags),
        "aliases": v.aliases,
    }
    optional = {
        "user_id": v.user_id,
        "description": v.description,
        "run_id": v.run_id,
        "status_message": v.status_message,
        "run_link": v.run_link,
        "model_id": v.model_id,
    }
    out.update({k: val for k, val in optional.items() if val is not None})
    return out


def mlflow_registered_model(m: RegisteredModel) -> dict[str, Any]:
    """A registered model in MLflow's JSON shape."""
    out: dict[str, Any] = {
        "name": m.name,
        "creation_timestamp": m.creation_timestamp,
        "last_updated_timestamp": m.last_updated_timestamp,
        "latest_versions": [mlflow_model_version(v) for v in m.latest_versions],
        "tags": kv(m.tags),
        "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(m.aliases.items())],
    }
    if m.description is not None:
        out["description"] = m.description
    return out


def _version(value: str | int | None) -> str:
    if value is None or value == "":
        raise InvalidArgumentError("Missing value for required parameter 'version'")
    return str(value)


class ModelName(_Req):
    name: str


class CreateRegisteredModel(ModelName):
    tags: list[KeyValue] = Field(default_factory=list)
    description: str | None = None


class RenameRegisteredModel(ModelName):
    new_name: str


class UpdateRegisteredModel(ModelName):
    description: str | None = None


class ModelTag(ModelName):
    key: str
    value: str | None = None


class LatestVersions(ModelName):
    stages: list[str] = Field(default_factory=list)


class CreateModelVersion(ModelName):
    source: str
    run_id: str | None = None
    tags: list[KeyValue] = Field(default_factory=list)
    run_link: str | None = None
    description: str | None = None
    model_id: str | None = None


class VersionRef(ModelName):
    version: str | int | None = None


class UpdateModelVersion(VersionRef):
    description: str | None = None


class TransitionStage(VersionRef):
    stage: str
    archive_existing_versions: bool = False


class VersionTag(VersionRef):
    key: str
    value: str | None = None


class SetAlias(VersionRef):
    alias: str
    force: bool = False  # lakeops extension: override a quality gate's refusal
    reason: str | None = None


class DeleteAlias(ModelName):
    alias: str


# -- registered models -----------------------------------------------------------------------------


@router.post("/registered-models/create")
def create_registered_model(
    body: CreateRegisteredModel,
    request: Request,
    registry: RegistryDep,
    auth: AuthDep,
    webhooks: WebhooksDep,
    workspace: RequestWorkspace,
) -> dict[str, Any]:
    require_create_in(request, auth, workspace)
    model = registry.create_registered_model(body.name, description=body.description, tags=_tags(body.tags))
    auth.grant_creator("registered_model", model.name, workspace=workspace)
    emit_registry_event(
        webhooks,
        model.tags,
        "model",
        "created",
        {"name": model.name, "tags": model.tags, "description": body.description},
    )
    return {"registered_model": mlflow_registered_model(model)}


@router.get("/registered-models/get")
def get_registered_model(
    registry: RegistryDep, name: str = Query(...), as_of: datetime | None = None
) -> dict[str, Any]:
    return {"registered_model": mlflow_registered_model(registry.get_registered_model(name, as_of=as_of))}


@router.post("/registered-models/rename")
def rename_registered_model(body: RenameRegisteredModel, registry: RegistryDep, auth: AuthDep) -> dict[str, Any]:
    model = registry.rename_registered_model(body.name, body.new_name)
    auth.rename_resource("registered_model", body.name, model.name)  # grants follow the model
    return {"registered_model": mlflow_registered_model(model)}


@router.patch("/registered-models/update")
def update_registered_model(body: UpdateRegisteredModel, registry: RegistryDep) -> dict[str, Any]:
    model = registry.update_registered_model(body.name, description=body.description)
    return {"registered_model": mlflow_registered_model(model)}


@router.delete("/registered-models/delete")
def delete_registered_model(body: ModelName, registry: RegistryDep) -> dict[str, Any]:
    registry.delete_registered_model(body.name)
    return {}


@router.get("/registered-models/search")
def search_registered_models(
    request: Request,
    registry: RegistryDep,
    filter: str | None = None,
    max_results: int = DEFAULT_SEARCH_MODELS,
    order_by: list[str] = Query(default_factory=list),
    page_token: str | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    page = registry.search_registered_models(
        filter, max_results=max_results, order_by=order_by, page_token=page_token, as_of=as_of
    )
    answer = _paged(
        "registered_models", [mlflow_registered_model(m) for m in page.registered_models], page.next_page_token
    )
    return scoped(request, answer, "registered_models", "registered_model", "name")


@router.post("/registered-models/get-latest-versions")
def get_latest_versions_post(body: LatestVersions, registry: RegistryDep) -> dict[str, Any]:
    return {"model_versions": [mlflow_model_version(v) for v in registry.get_latest_versions(body.name, body.stages)]}


@router.get("/registered-models/get-latest-versions")
def get_latest_versions_get(
    registry: RegistryDep, name: str = Query(...), stages: list[str] = Query(default_factory=list)
) -> dict[str, Any]:
    return {"model_versions": [mlflow_model_version(v) for v in registry.get_latest_versions(name, stages)]}


@router.post("/registered-models/set-tag")
def set_registered_model_tag(body: ModelTag, registry: RegistryDep) -> dict[str, Any]:
    registry.set_registered_model_tag(body.name, body.key, body.value or "")
    return {}


@router.delete("/registered-models/delete-tag")
def delete_registered_model_tag(body: ModelTag, registry: RegistryDep) -> dict[str, Any]:
    registry.delete_registered_model_tag(body.name, body.key)
    return {}


# -- aliases -----------------------------------------------------------------------------------------


@router.post("/registered-models/alias")
def set_registered_model_alias(
    body: SetAlias, request: Request, registry: RegistryDep, webhooks: WebhooksDep
) -> dict[str, Any]:
    if body.force:  # past the quality gate: the model's managers only
        require_level(request, "registered_model", body.name, "MANAGE")
    registry.set_registered_model_alias(
        body.name, body.alias, _version(body.version), force=body.force, reason=body.reason
    )
    payload = {"name": body.name, "alias": body.alias, "version": _version(body.version)}
    emit_registry_event(webhooks, registry.get_registered_model(body.name).tags, "alias", "created", payload)
    return {}


@router.delete("/registered-models/alias")
def delete_registered_model_alias(body: DeleteAlias, registry: RegistryDep, webhooks: WebhooksDep) -> dict[str, Any]:
    registry.delete_registered_model_alias(body.name, body.alias)
    payload = {"name": body.name, "alias": body.alias}
    emit_registry_event(webhooks, registry.get_registered_model(body.name).tags, "alias", "deleted", payload)
    return {}


@router.get("/registered-models/alias")
def get_model_version_by_alias(
    registry: RegistryDep, name: str = Query(...), alias: str = Query(...), as_of: datetime | None = None
) -> dict[str, Any]:
    return {"model_version": mlflow_model_version(registry.get_model_version_by_alias(name, alias, as_of=as_of))}


# -- model versions ---------------------------------------------------------------------------------


@router.post("/model-versions/create")
def create_model_version(body: CreateModelVersion, registry: RegistryDep, webhooks: WebhooksDep) -> dict[str, Any]:
    version = registry.create_model_version(
        body.name,
        body.source,
        run_id=body.run_id or None,
        model_id=body.model_id or None,
        tags=_tags(body.tags),
        run_link=body.run_link,
        description=body.description,
    )
    payload = {
        "name": body.name,
        "version": str(version.version),
        "source": version.source,
        "run_id": version.run_id,
        "tags": _tags(body.tags),
        "description": body.description or None,
    }
    emit_registry_event(webhooks, registry.get_registered_model(body.name).tags, "version", "created", payload)
    return {"model_version": mlflow_model_version(version)}


@router.get("/model-versions/get")
def get_model_version(
    registry: RegistryDep, name: str = Query(...), version: str = Query(...), as_of: datetime | None = None
) -> dict[str, Any]:
    return {"model_version": mlflow_model_version(registry.get_model_version(name, version, as_of=as_of))}


@router.patch("/model-versions/update")
def update_model_version(body: UpdateModelVersion, registry: RegistryDep) -> dict[str, Any]:
    version = registry.update_model_version(body.name, _version(body.version), description=body.description)
    return {"model_version": mlflow_model_version(version)}


@router.delete("/model-versions/delete")
def delete_model_version(body: VersionRef, registry: RegistryDep) -> dict[str, Any]:
    registry.delete_model_version(body.name, _version(body.version))
    return {}


@router.post("/model-versions/transition-stage")
def transition_model_version_stage(body: TransitionStage, registry: RegistryDep) -> dict[str, Any]:
    version = registry.transition_model_version_stage(
        body.name, _version(body.version), body.stage, archive_existing_versions=body.archive_existing_versions
    )
    return {"model_version": mlflow_model_version(version)}


@router.get("/model-versions/search")
def search_model_versions(
    request: Request,
    registry: RegistryDep,
    filter: str | None = None,
    max_results: int = DEFAULT_SEARCH_VERSIONS,
    order_by: list[str] = Query(default_factory=list),
    page_token: str | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    page = registry.search_model_versions(
        filter, max_results=max_results, order_by=order_by, page_token=page_token, as_of=as_of
    )
    answer = _paged("model_versions", [mlflow_model_version(v) for v in page.model_versions], page.next_page_token)
    return scoped(request, answer, "model_versions", "registered_model", "name")


@router.get("/model-versions/get-download-uri")
def get_model_version_download_uri(
    registry: RegistryDep, name: str = Query(...), version: str = Query(...)
) -> dict[str, Any]:
    return {"artifact_uri": registry.get_model_version_download_uri(name, version)}


@router.post("/model-versions/set-tag")
def set_model_version_tag(body: VersionTag, registry: RegistryDep, webhooks: WebhooksDep) -> dict[str, Any]:
    registry.set_model_version_tag(body.name, _version(body.version), body.key, body.value or "")
    payload = {"name": body.name, "version": _version(body.version), "key": body.key, "value": body.value or ""}
    emit_registry_event(webhooks, registry.get_registered_model(body.name).tags, "version_tag", "set", payload)
    return {}


@router.delete("/model-versions/delete-tag")
def delete_model_version_tag(body: VersionTag, registry: RegistryDep, webhooks: WebhooksDep) -> dict[str, Any]:
    registry.delete_model_version_tag(body.name, _version(body.version), body.key)
    payload = {"name": body.name, "version": _version(body.version), "key": body.key}
    emit_registry_event(webhooks, registry.get_registered_model(body.name).tags, "version_tag", "deleted", payload)
    return {}
