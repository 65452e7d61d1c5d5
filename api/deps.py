"""Dependency injection: the services built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from lakeops.datasets import DatasetService
from lakeops.health import HealthMonitor
from lakeops.lineage import LineageService
from lakeops.quality.gate import QualityGate
from lakeops.quality.suites import QualityService
from lakeops.registry import RegistryService
from lakeops.services.artifacts import ArtifactService
from lakeops.services.auth import AuthService
from lakeops.services.checkpoints import CheckpointService
from lakeops.services.comments import CommentService
from lakeops.services.evaluation_datasets import EvaluationDatasetService
from lakeops.services.iceberg_rest import IcebergCatalogService
from lakeops.services.openlineage import OpenLineageService
from lakeops.services.queries import SavedQueryService
from lakeops.services.traces import TraceService
from lakeops.services.webhooks import WebhookService
from lakeops.services.workspaces import WorkspaceService
from lakeops.settings import LakeopsSettings
from lakeops.sql import SqlEngine
from lakeops.tracking import TrackingService


def _from_state(name: str) -> Callable[[Request], Any]:
    """A dependency returning what the lifespan put on ``app.state.<name>``."""

    def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency


TrackingDep = Annotated[TrackingService, Depends(_from_state("tracking"))]
ArtifactsDep = Annotated[ArtifactService, Depends(_from_state("artifacts"))]
CheckpointsDep = Annotated[CheckpointService, Depends(_from_state("checkpoints"))]
RegistryDep = Annotated[RegistryService, Depends(_from_state("registry"))]
SettingsDep = Annotated[LakeopsSettings, Depends(_from_state("settings"))]
DatasetsDep = Annotated[DatasetService, Depends(_from_state("datasets"))]
LineageDep = Annotated[LineageService, Depends(_from_state("lineage"))]
OpenLineageDep = Annotated[OpenLineageService, Depends(_from_state("openlineage"))]
QualityDep = Annotated[QualityService, Depends(_from_state("quality"))]
GateDep = Annotated[QualityGate, Depends(_from_state("quality_gate"))]
SqlDep = Annotated[SqlEngine, Depends(_from_state("sql"))]
SavedQueriesDep = Annotated[SavedQueryService, Depends(_from_state("saved_queries"))]
HealthDep = Annotated[HealthMonitor, Depends(_from_state("health"))]
CommentsDep = Annotated[CommentService, Depends(_from_state("comments"))]
IcebergCatalogDep = Annotated[IcebergCatalogService, Depends(_from_state("iceberg_catalog"))]
AuthDep = Annotated[AuthService, Depends(_from_state("auth"))]
TracesDep = Annotated[TraceService, Depends(_from_state("traces"))]
WebhooksDep = Annotated[WebhookService, Depends(_from_state("webhooks"))]
EvaluationDatasetsDep = Annotated[EvaluationDatasetService, Depends(_from_state("evaluation_datasets"))]
WorkspacesDep = Annotated[WorkspaceService, Depends(_from_state("workspaces"))]
