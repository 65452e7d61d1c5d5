"""The registry's entities as the services return them: models, versions, alias moves, deployments, pages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One version of a registered model."""

    name: str
    version: int
    registered_model_id: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None
    user_id: str | None
    current_stage: str
    source: str
    storage_location: str | None
    run_id: str | None
    model_id: str | None
    run_link: str | None
    status: str
    status_message: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model with its versions' aliases, tags and latest version per stage."""

    name: str
    registered_model_id: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_versions: list[ModelVersion] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AliasChange:
    """One move (or deletion) of an alias, as recorded."""

    alias: str
    version: int | None
    changed_at: int
    actor: str | None
    operation: str
    is_forced: bool
    force_reason: str | None
    gate_reasons: list[str]


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model version deployed to an environment as part of an application version."""

    deployment_id: str
    model_name: str
    version: int
    environment: str
    application_version: str | None
    target: str | None
    deployed_at: int
    deployed_by: str | None
    since: int  # when this version started running there without interruption
    is_retired: bool = False


@dataclass(frozen=True, slots=True)
class ApplicationUse:
    """An application version that shipped a model, with which versions, where and when."""

    application_version: str | None
    environment: str
    versions: list[int]
    first_deployed_at: int
    last_deployed_at: int


@dataclass(frozen=True, slots=True)
class RegisteredModelPage:
    """One page of a registered-model search."""

    registered_models: list[RegisteredModel]
    next_page_token: str | None


@dataclass(frozen=True, slots=True)
class ModelVersionPage:
    """One page of a model-version search."""

    model_versions: list[ModelVersion]
    next_page_token: str | None
