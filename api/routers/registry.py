"""The native registry API under ``/api/v1``: registered models, versions, aliases, deployments.

Every read takes ``as_of`` (an ISO 8601 time) and answers as the registry stood then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AuthDep, RegistryDep
from api.encoding import JSONBody, RawJSONRoute
from api.permissions import readable_only, require_level
from lakeops.entities import to_dict
from lakeops.registry.validation import DEFAULT_SEARCH_MODELS, DEFAULT_SEARCH_VERSIONS

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelCreate(_Body):
    name: str
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ModelUpdate(_Body):
    name: str | None = Field(default=None, description="a new name (rename)")
    description: str | None = None


class TagValue(_Body):
    value: str


class VersionCreate(_Body):
    source: str
    run_id: str | None = None
    model_id: str | None = None
    description: str | None = None
    run_link: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class VersionUpdate(_Body):
    description: str | None = None
    stage: str | None = None
    archive_existing_versions: bool = False


class AliasSet(_Body):
    version: int
    force: bool = Field(default=False, description="override a quality gate's refusal (needs a reason)")
    reason: str | None = None


class DeploymentCreate(_Body):
    model_name: str
    version: int
    environment: str
    application_version: str | None = None
    target: str | None = None
    deployed_by: str | None = None


class DeploymentRetire(_Body):
    model_name: str
    environment: str
    application_version: str | None = None
    deployed_by: str | None = None


# -- registered models -------------------------------------------------------------------------------


@router.post("/registered-models", status_code=201)
def create_registered_model(body: ModelCreate, registry: RegistryDep, auth: AuthDep) -> dict[str, Any]:
    model = registry.create_registered_model(body.name, description=body.description, tags=body.tags)
    auth.grant_creator("registered_model", model.name)
    return to_dict(model)


@router.get("/registered-models")
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
    return readable_only(request, to_dict(page), "registered_models", "registered_model", "name")


@router.get("/registered-models/{name}")
def get_registered_model(name: str, registry: RegistryDep, as_of: datetime | None = None) -> dict[str, Any]:
    return to_dict(registry.get_registered_model(name, as_of=as_of))


@router.patch("/registered-models/{name}")
def update_registered_model(name: str, body: ModelUpdate, registry: RegistryDep, auth: AuthDep) -> dict[str, Any]:
    if "description" in body.model_fields_set:
        registry.update_registered_model(name, description=body.description)
    if body.name is not None and body.name != name:
        model = registry.rename_registered_model(name, body.name)
        auth.rename_resource("registered_model", name, model.name)  # grants follow the model
        return to_dict(model)
    return to_dict(registry.get_registered_model(name))


@router.delete("/registered-models/{name}", status_code=204)
def delete_registered_model(name: str, registry: RegistryDep) -> Response:
    registry.delete_registered_model(name)
    return Response(status_code=204)


@router.put("/registered-models/{name}/tags/{key:path}")
def set_registered_model_tag(name: str, key: str, body: TagValue, registry: RegistryDep) -> dict[str, Any]:
    registry.set_registered_model_tag(name, key, body.value)
    return to_dict(registry.get_registered_model(name))


@router.delete("/registered-models/{name}/tags/{key:path}", status_code=204)
def delete_registered_model_tag(name: str, key: str, registry: RegistryDep) -> Response:
    registry.delete_registered_model_tag(name, key)
    return Response(status_code=204)


# -- versions ----------------------------------------------------------------------------------------


@router.post("/registered-models/{name}/versions", status_code=201)
def create_model_version(name: str, body: VersionCreate, registry: RegistryDep) -> dict[str, Any]:
    version = registry.create_model_version(
        name,
        body.source,
        run_id=body.run_id,
        model_id=body.model_id,
        tags=body.tags,
        run_link=body.run_link,
        description=body.description,
    )
    return to_dict(version)


@router.get("/registered-models/{name}/versions")
def list_model_versions(
    name: str,
    registry: RegistryDep,
    max_results: int = DEFAULT_SEARCH_VERSIONS,
    page_token: str | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    registry.get_registered_model(name, as_of=as_of)  # 404 for an unknown model rather than an empty page
    quoted = name.replace("'", "''")
    page = registry.search_model_versions(
        f"name = '{quoted}'", max_results=max_results, page_token=page_token, as_of=as_of
    )
    return to_dict(page)


@router.get("/model-versions")
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
    return readable_only(request, to_dict(page), "model_versions", "registered_model", "name")


@router.get("/registered-models/{name}/versions/{version}")
def get_model_version(name: str, version: str, registry: RegistryDep, as_of: datetime | None = None) -> dict[str, Any]:
    return to_dict(registry.get_model_version(name, version, as_of=as_of))


@router.patch("/registered-models/{name}/versions/{version}")
def update_model_version(name: str, version: str, body: VersionUpdate, registry: RegistryDep) -> dict[str, Any]:
    if "description" in body.model_fields_set:
        registry.update_model_version(name, version, description=body.description)
    if body.stage is not None:
        registry.transition_model_version_stage(
            name, version, body.stage, archive_existing_versions=body.archive_existing_versions
        )
    return to_dict(registry.get_model_version(name, version))


@router.delete("/registered-models/{name}/versions/{version}", status_code=204)
def delete_model_version(name: str, version: str, registry: RegistryDep) -> Response:
    registry.delete_model_version(name, version)
    return Response(status_code=204)


@router.put("/registered-models/{name}/versions/{version}/tags/{key:path}")
def set_model_version_tag(name: str, version: str, key: str, body: TagValue, registry: RegistryDep) -> dict[str, Any]:
    registry.set_model_version_tag(name, version, key, body.value)
    return to_dict(registry.get_model_version(name, version))


@router.delete("/registered-models/{name}/versions/{version}/tags/{key:path}", status_code=204)
def delete_model_version_tag(name: str, version: str, key: str, registry: RegistryDep) -> Response:
    registry.delete_model_version_tag(name, version, key)
    return Response(status_code=204)


@router.get("/registered-models/{name}/versions/{version}/download-uri")
def get_model_version_download_uri(name: str, version: str, registry: RegistryDep) -> dict[str, Any]:
    return {"artifact_uri": registry.get_model_version_download_uri(name, version)}


# -- aliases -----------------------------------------------------------------------------------------


@router.put("/registered-models/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, body: AliasSet, request: Request, registry: RegistryDep) -> dict[str, Any]:
    if body.force:  # past the quality gate: the model's managers only
        require_level(request, "registered_model", name, "MANAGE")
    return to_dict(registry.set_registered_model_alias(name, alias, body.version, force=body.force, reason=body.reason))


@router.delete("/registered-models/{name}/aliases/{alias}", status_code=204)
def delete_alias(name: str, alias: str, registry: RegistryDep) -> Response:
    registry.delete_registered_model_alias(name, alias)
    return Response(status_code=204)


@router.get("/registered-models/{name}/aliases/{alias}")
def get_version_by_alias(name: str, alias: str, registry: RegistryDep, as_of: datetime | None = None) -> dict[str, Any]:
    return to_dict(registry.get_model_version_by_alias(name, alias, as_of=as_of))


@router.get("/registered-models/{name}/aliases/{alias}/history")
def alias_history(name: str, alias: str, registry: RegistryDep) -> dict[str, Any]:
    return {"changes": [to_dict(c) for c in registry.alias_history(name, alias)]}


# -- deployments -------------------------------------------------------------------------------------


@router.post("/deployments", status_code=201)
def record_deployment(body: DeploymentCreate, registry: RegistryDep) -> dict[str, Any]:
    deployment = registry.record_deployment(
        body.model_name,
        body.version,
        environment=body.environment,
        application_version=body.application_version,
        target=body.target,
        deployed_by=body.deployed_by,
    )
    return to_dict(deployment)


@router.post("/deployments/retire", status_code=201)
def retire_deployment(body: DeploymentRetire, registry: RegistryDep) -> dict[str, Any]:
    deployment = registry.retire_deployment(
        body.model_name,
        environment=body.environment,
        application_version=body.application_version,
        deployed_by=body.deployed_by,
    )
    return to_dict(deployment)


@router.get("/deployments")
def current_deployments(
    registry: RegistryDep, environment: str | None = None, as_of: datetime | None = None
) -> dict[str, Any]:
    """What runs where (in ``environment``), since when."""
    return {"deployments": [to_dict(d) for d in registry.current_deployments(environment=environment, as_of=as_of)]}


@router.get("/registered-models/{name}/deployments")
def deployment_history(name: str, registry: RegistryDep, version: int | None = None) -> dict[str, Any]:
    return {"deployments": [to_dict(d) for d in registry.deployment_history(name, version=version)]}


@router.get("/registered-models/{name}/application-versions")
def application_versions(name: str, registry: RegistryDep, version: int | None = None) -> dict[str, Any]:
    """Which application versions ran the model (or one version of it)."""
    return {"application_versions": [to_dict(a) for a in registry.application_versions(name, version=version)]}
