"""One way to open a lake: the store and every service over it, from settings, with one actor.

The HTTP app, the client's embedded mode and the CLI all open a lake through ``Lake``, so a
service is wired (its store, its object store, its collaborators, who its changes are recorded
as) in exactly one place. Services are built on first use: a ``lakeops sql`` command or a CLI
subcommand pays only for what it touches (the quality service, for instance, imports
great-expectations).

Adding a service: one ``cached_property`` here; the app exposes it as ``app.state.<name>``
(``api/main.py`` copies every name in ``Lake.SERVICES``), and ``tests/lakeops/test_lake.py``
fails for a property missing from that list.
"""

from __future__ import annotations

from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING

from lakeops.actor import default_actor
from lakeops.settings import LakeopsSettings
from lakeops.stores import IcebergStore, open_store

if TYPE_CHECKING:
    from catalog.objects import ObjectStore
    from lakeops.datasets import DatasetService
    from lakeops.lineage import LineageService
    from lakeops.quality.gate import QualityGate
    from lakeops.quality.suites import QualityService
    from lakeops.registry import AliasGate, RegistryService
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
    from lakeops.sql import SqlEngine
    from lakeops.tracking import TrackingService


class Lake:
    """A lake opened from settings: ``store``, ``objects`` and the services, built once each."""

    # The services the HTTP app serves (each a property below, copied to ``app.state``).
    SERVICES = (
        "tracking",
        "auth",
        "workspaces",
        "artifacts",
        "checkpoints",
        "datasets",
        "lineage",
        "openlineage",
        "quality",
        "quality_gate",
        "registry",
        "comments",
        "iceberg_catalog",
        "traces",
        "evaluation_datasets",
        "webhooks",
        "sql",
        "saved_queries",
    )

    def __init__(
        self,
        settings: LakeopsSettings,
        *,
        actor: str | None = None,
        start_committer: bool = True,
        alias_gate: AliasGate | None = None,
    ) -> None:
        self.settings = settings
        self.actor = actor or default_actor()
        self._alias_gate = alias_gate
        self.store: IcebergStore = open_store(settings, start_committer=start_committer)

    def __enter__(self) -> Lake:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the SQL engine if one was opened, then the store (committing what is pending)."""
        engine = self.__dict__.get("sql")
        if engine is not None:
            engine.close()
        self.store.close()

    @cached_property
    def objects(self) -> ObjectStore:
        """The object store artifacts, checkpoints and dataset files live in."""
        return self.settings.storage.open_objects(self.settings.home)

    @cached_property
    def tracking(self) -> TrackingService:
        from lakeops.tracking import TrackingService

        return TrackingService(self.store, actor=self.actor, sql=lambda: self.sql)

    @cached_property
    def auth(self) -> AuthService:
        from lakeops.services.auth import AuthService

        return AuthService(self.store, self.settings.auth)

    @cached_property
    def workspaces(self) -> WorkspaceService:
        from lakeops.services.workspaces import WorkspaceService

        return WorkspaceService(self.store)

    @cached_property
    def artifacts(self) -> ArtifactService:
        from lakeops.services.artifacts import ArtifactService

        return ArtifactService(self.store, self.objects, actor=self.actor)

    @cached_property
    def checkpoints(self) -> CheckpointService:
        from lakeops.services.checkpoints import CheckpointService

        return CheckpointService(self.store, self.artifacts, actor=self.actor)

    @cached_property
    def datasets(self) -> DatasetService:
        from lakeops.datasets import DatasetService

        return DatasetService(self.store, self.artifacts, actor=self.actor)

    @cached_property
    def lineage(self) -> LineageService:
        from lakeops.lineage import LineageService

        return LineageService(self.store)

    @cached_property
    def openlineage(self) -> OpenLineageService:
        from lakeops.services.openlineage import OpenLineageService

        return OpenLineageService(self.store, actor=self.actor)

    @cached_property
    def quality(self) -> QualityService:
        from lakeops.quality.suites import QualityService

        return QualityService(self.store, self.datasets, actor=self.actor)

    @cached_property
    def quality_gate(self) -> QualityGate:
        from lakeops.quality.gate import QualityGate

        return QualityGate(self.store)

    @cached_property
    def registry(self) -> RegistryService:
        """The registry; protected aliases are guarded by the training data's validations unless a gate is given."""
        from lakeops.registry import RegistryService

        return RegistryService(
            self.store,
            gate=self._alias_gate if self._alias_gate is not None else self.quality_gate,
            protected_aliases=self.settings.registry.protected_aliases,
            actor=self.actor,
        )

    @cached_property
    def comments(self) -> CommentService:
        from lakeops.services.comments import CommentService

        return CommentService(self.store, actor=self.actor)

    @cached_property
    def iceberg_catalog(self) -> IcebergCatalogService:
        from lakeops.services.iceberg_rest import IcebergCatalogService

        return IcebergCatalogService(self.store)

    @cached_property
    def traces(self) -> TraceService:
        from lakeops.services.traces import TraceService

        return TraceService(self.store, actor=self.actor)

    @cached_property
    def evaluation_datasets(self) -> EvaluationDatasetService:
        from lakeops.services.evaluation_datasets import EvaluationDatasetService

        return EvaluationDatasetService(self.store, actor=self.actor)

    @cached_property
    def webhooks(self) -> WebhookService:
        """Webhook registrations and deliveries (the app starts and stops its delivery thread)."""
        from lakeops.services.webhooks import WebhookService

        config = self.settings.webhooks
        return WebhookService(
            self.store,
            actor=self.actor,
            max_attempts=config.max_attempts,
            first_backoff_s=config.first_backoff_s,
            timeout_s=config.timeout_s,
        )

    @cached_property
    def sql(self) -> SqlEngine:
        """DuckDB over the lake's views, reading this store's tables."""
        from lakeops.sql import SqlEngine

        return SqlEngine(self.settings, store=self.store)

    @cached_property
    def saved_queries(self) -> SavedQueryService:
        from lakeops.services.queries import SavedQueryService

        return SavedQueryService(self.store, self.sql, actor=self.actor)
