"""Dependency injection: the services built once in the app's lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lakeops.services.artifacts import ArtifactService
from lakeops.services.queries import SavedQueryService
from lakeops.services.tracking import TrackingService
from lakeops.settings import LakeopsSettings
from lakeops.sql import SqlEngine


def _tracking(request: Request) -> TrackingService:
    service: TrackingService = request.app.state.tracking
    return service


def _artifacts(request: Request) -> ArtifactService:
    service: ArtifactService = request.app.state.artifacts
    return service


def _settings(request: Request) -> LakeopsSettings:
    settings: LakeopsSettings = request.app.state.settings
    return settings


def _sql(request: Request) -> SqlEngine:
    engine: SqlEngine = request.app.state.sql
    return engine


def _saved_queries(request: Request) -> SavedQueryService:
    service: SavedQueryService = request.app.state.saved_queries
    return service


ArtifactsDep = Annotated[ArtifactService, Depends(_artifacts)]
TrackingDep = Annotated[TrackingService, Depends(_tracking)]
SettingsDep = Annotated[LakeopsSettings, Depends(_settings)]
SqlDep = Annotated[SqlEngine, Depends(_sql)]
SavedQueriesDep = Annotated[SavedQueryService, Depends(_saved_queries)]
