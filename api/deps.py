"""Dependency injection: the services built once in the app's lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lakeops.services.artifacts import ArtifactService
from lakeops.services.registry import RegistryService
from lakeops.services.tracking import TrackingService
from lakeops.settings import LakeopsSettings


def _tracking(request: Request) -> TrackingService:
    service: TrackingService = request.app.state.tracking
    return service


def _artifacts(request: Request) -> ArtifactService:
    service: ArtifactService = request.app.state.artifacts
    return service


def _registry(request: Request) -> RegistryService:
    service: RegistryService = request.app.state.registry
    return service


def _settings(request: Request) -> LakeopsSettings:
    settings: LakeopsSettings = request.app.state.settings
    return settings


ArtifactsDep = Annotated[ArtifactService, Depends(_artifacts)]
TrackingDep = Annotated[TrackingService, Depends(_tracking)]
RegistryDep = Annotated[RegistryService, Depends(_registry)]
SettingsDep = Annotated[LakeopsSettings, Depends(_settings)]
