"""Deployments: which model version runs in which environment, since when, shipped with which
application version. Each deployment is a ``deployment_events`` row plus a lineage edge
(model version -> deployment); retiring is a row too.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from catalog.tables import DEPLOYMENT_EVENTS, LINEAGE_EDGES
from lakeops.errors import NotFoundError
from lakeops.lineage.edges import LineageEdge, NodeKind, Relation, lineage_edge_rows, model_version_node
from lakeops.registry.core import RegistryCore, record_batch
from lakeops.registry.entities import ApplicationUse, Deployment
from lakeops.registry.validation import as_of_ms, parse_version, required_text
from lakeops.stores.iceberg import Rows
from lakeops.stores.registry_state import DeploymentRecord, latest
from lakeops.stores.state import TrackingState


class DeploymentsMixin(RegistryCore):
    """Deployments: which version runs where, since when, as part of which application version."""

    def record_deployment(
        self,
        name: str,
        version: int | str,
        *,
        environment: str,
        application_version: str | None = None,
        target: str | None = None,
        deployed_by: str | None = None,
    ) -> Deployment:
        """Record that a version was deployed to ``environment`` as part of ``application_version``.

        Raises:
            NotFoundError: no such model or version.
            InvalidArgumentError: an empty environment.
        """
        environment = required_text("environment", environment)
        return self._deployment_event(
            name, version, environment, application_version, target, deployed_by, retire=False
        )

    def retire_deployment(
        self, name: str, *, environment: str, application_version: str | None = None, deployed_by: str | None = None
    ) -> Deployment:
        """Record that the model stopped running in ``environment``.

        Raises:
            NotFoundError: the model does not run in that environment.
        """
        environment = required_text("environment", environment)
        running = [d for d in self.current_deployments(environment=environment) if d.model_name == name]
        if not running:
            raise NotFoundError(f"Model {name} is not deployed to {environment}", details={"environment": environment})
        return self._deployment_event(
            name, running[0].version, environment, application_version, running[0].target, deployed_by, retire=True
        )

    def _deployment_event(
        self,
        name: str,
        version: int | str,
        environment: str,
        application_version: str | None,
        target: str | None,
        deployed_by: str | None,
        *,
        retire: bool,
    ) -> Deployment:
        deployment_id = uuid.uuid4().hex
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            v = self._version(reg, model, version)
            change = self._change("retire" if retire else "deploy", now)
            change["actor"] = deployed_by or self.actor
            row = {
                "deployment_id": deployment_id,
                "registered_model_id": model.registered_model_id,
                "model_name": model.name,
                "version": v.version,
                "environment": environment,
                "application_version": application_version,
                "target": target,
                "is_retired": retire,
                **change,
            }
            rows: Rows = {DEPLOYMENT_EVENTS.name: record_batch(DEPLOYMENT_EVENTS, {k: [val] for k, val in row.items()})}
            if not retire:
                edge = LineageEdge(
                    NodeKind.MODEL_VERSION,
                    model_version_node(model.name, v.version),
                    NodeKind.DEPLOYMENT,
                    deployment_id,
                    Relation.DEPLOYED,
                    properties={"environment": environment, "application_version": application_version},
                )
                rows[LINEAGE_EDGES.name] = lineage_edge_rows([edge], actor=change["actor"], created_at_us=now * 1000)
            return rows

        self.store.write(build)
        found = [d for d in self.deployment_history(name) if d.deployment_id == deployment_id]
        return found[-1]

    def current_deployments(
        self, *, environment: str | None = None, as_of: datetime | int | None = None
    ) -> list[Deployment]:
        """What runs where (now or at ``as_of``): the last deployment per (environment, model), since when."""
        when = as_of_ms(as_of)
        reg = self.registry
        streams: dict[tuple[str, str], list[DeploymentRecord]] = {}
        for d in list(reg.deployments):
            if (when is None or d.changed_at <= when) and (environment is None or d.environment == environment):
                streams.setdefault((d.environment, d.registered_model_id), []).append(d)
        out: list[Deployment] = []
        for events in streams.values():
            last = events[-1]
            if last.is_retired:
                continue
            model = latest(reg.models.get(last.registered_model_id, []), when)
            if model is None or model.is_deleted:
                continue
            since = last.changed_at
            for event in reversed(events):
                if event.is_retired or event.version != last.version:
                    break
                since = event.changed_at
            out.append(_deployment(last, model.name, since))
        return sorted(out, key=lambda d: (d.environment, d.model_name))

    def deployment_history(self, name: str, *, version: int | str | None = None) -> list[Deployment]:
        """Every deployment event of a model (optionally one version), oldest first.

        Raises:
            NotFoundError: no such model.
        """
        reg = self.registry
        model = self._model(reg, name)
        number = None if version is None else parse_version(version)
        return [
            _deployment(d, model.name, d.changed_at)
            for d in reg.deployments
            if d.registered_model_id == model.registered_model_id and (number is None or d.version == number)
        ]

    def application_versions(self, name: str, *, version: int | str | None = None) -> list[ApplicationUse]:
        """Which application versions ran the model (optionally one version), where and when.

        Raises:
            NotFoundError: no such model.
        """
        uses: dict[tuple[str | None, str], list[Deployment]] = {}
        for d in self.deployment_history(name, version=version):
            if not d.is_retired:
                uses.setdefault((d.application_version, d.environment), []).append(d)
        return [
            ApplicationUse(
                application_version=app,
                environment=env,
                versions=sorted({d.version for d in events}),
                first_deployed_at=events[0].deployed_at,
                last_deployed_at=events[-1].deployed_at,
            )
            for (app, env), events in sorted(uses.items(), key=lambda kv: kv[1][0].deployed_at)
        ]


def _deployment(d: DeploymentRecord, name: str, since: int) -> Deployment:
    return Deployment(
        deployment_id=d.deployment_id,
        model_name=name,
        version=d.version,
        environment=d.environment,
        application_version=d.application_version,
        target=d.target,
        deployed_at=d.changed_at,
        deployed_by=d.actor,
        since=since,
        is_retired=d.is_retired,
    )
