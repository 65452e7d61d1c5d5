"""Dependency injection: the services built once in the app's lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lakeops.quality.gate import QualityGate
from lakeops.quality.suites import QualityService
from lakeops.services.artifacts import ArtifactService
from lakeops.services.datasets import DatasetService
from lakeops.services.lineage import LineageService
from lakeops.services.openlineage import OpenLineageService
from lakeops.services.queries import SavedQueryService
from lakeops.services.registry import RegistryService
from lakeops.services.tracking import TrackingService
from lakeops.settings import LakeopsSettings
from lakeops.sql import SqlEngine


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


def _datasets(request: Request) -> DatasetService:
    service: DatasetService = request.app.state.datasets
    return service


def _lineage(request: Request) -> LineageService:
    service: LineageService = request.app.state.lineage
    return service


def _openlineage(request: Request) -> OpenLineageService:
    service: OpenLineageService = request.app.state.openlineage
    return service


def _quality(request: Request) -> QualityService:
    service: QualityService = request.app.state.quality
    return service


def _gate(request: Request) -> QualityGate:
    gate: QualityGate = request.app.state.quality_gate
    return gate


DatasetsDep = Annotated[DatasetService, Depends(_datasets)]
LineageDep = Annotated[LineageService, Depends(_lineage)]
OpenLineageDep = Annotated[OpenLineageService, Depends(_openlineage)]
QualityDep = Annotated[QualityService, Depends(_quality)]
GateDep = Annotated[QualityGate, Depends(_gate)]


def _sql(request: Request) -> SqlEngine:
    engine: SqlEngine = request.app.state.sql
    return engine


def _saved_queries(request: Request) -> SavedQueryService:
    service: SavedQueryService = request.app.state.saved_queries
    return service


ArtifactsDep = Annotated[ArtifactService, Depends(_artifacts)]
TrackingDep = Annotated[TrackingService, Depends(_tracking)]
RegistryDep = Annotated[RegistryService, Depends(_registry)]
SettingsDep = Annotated[LakeopsSettings, Depends(_settings)]
SqlDep = Annotated[SqlEngine, Depends(_sql)]
SavedQueriesDep = Annotated[SavedQueryService, Depends(_saved_queries)]
