"""Aliases: point one at a version, delete, resolve, and the history of every move.

Aliases listed in ``protected_aliases`` are guarded by an ``AliasGate``: a version the gate
refuses gets such an alias only with ``force=True`` and a reason, both recorded in the
alias's change row.
"""

from __future__ import annotations

import json
from datetime import datetime

from catalog.tables import MODEL_ALIAS_CHANGES
from lakeops.errors import DataQualityError, InvalidArgumentError, NotFoundError
from lakeops.registry.core import iso_ms
from lakeops.registry.entities import AliasChange, ModelVersion
from lakeops.registry.validation import as_of_ms, validate_alias
from lakeops.registry.versions import VersionsMixin
from lakeops.stores.iceberg import Rows
from lakeops.stores.registry_state import AliasRecord
from lakeops.stores.state import TrackingState


class AliasesMixin(VersionsMixin):
    """Aliases: point one at a version (through the gate when protected), delete, resolve, history."""

    def set_registered_model_alias(
        self,
        name: str,
        alias: str,
        version: int | str,
        *,
        force: bool = False,
        reason: str | None = None,
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (moving it is a new row). Protected aliases pass the gate first.

        Raises:
            NotFoundError: no such model or version.
            InvalidArgumentError: an invalid alias name, or ``force`` without a reason.
            DataQualityError: the gate refused the version for a protected alias and it was not forced.
        """
        validate_alias(alias)
        if force and not (isinstance(reason, str) and reason.strip()):
            raise InvalidArgumentError("Forcing a protected alias needs a reason")
        current = self.get_model_version(name, version)
        refusals: list[str] = []
        if alias in self.protected_aliases and self.gate is not None:
            refusals = list(self.gate.check_model_version(source_run_id=current.run_id, model_id=current.model_id))
            if refusals and not force:
                raise DataQualityError(
                    f"Model version (name={name}, version={current.version}) may not get protected alias "
                    f"'{alias}': " + "; ".join(refusals) + ". Pass force with a reason to override.",
                    details={"reasons": refusals, "name": name, "version": current.version, "alias": alias},
                )
        forced = bool(refusals) and force

        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            v = self._version(reg, model, version)
            if model.registered_model_id != current.registered_model_id:
                raise NotFoundError(f"Registered Model with name={name} changed while setting alias '{alias}'")
            record = {
                "registered_model_id": model.registered_model_id,
                "alias": alias,
                "version": v.version,
                "is_forced": forced,
                "force_reason": reason if forced else None,
                "gate_reasons": json.dumps(refusals) if forced else None,
            }
            return {MODEL_ALIAS_CHANGES.name: self._alias_rows([record], "set_alias")}

        self.store.write(build)
        return self.get_model_version(name, version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        """Remove an alias (recorded as a deletion row).

        Raises:
            NotFoundError: no such model, or the alias is not set.
        """
        validate_alias(alias)

        def build(state: TrackingState) -> Rows:
            reg = state.registry
            model = self._model(reg, name)
            if alias not in reg.aliases_at(model.registered_model_id, None):
                raise NotFoundError(
                    f"Registered model alias {alias} not found for model {name}", details={"alias": alias}
                )
            record = {"registered_model_id": model.registered_model_id, "alias": alias, "version": None}
            return {MODEL_ALIAS_CHANGES.name: self._alias_rows([{**record, "is_deleted": True}], "delete_alias")}

        self.store.write(build)

    def get_model_version_by_alias(self, name: str, alias: str, *, as_of: datetime | int | None = None) -> ModelVersion:
        """The version ``alias`` points at, now or at ``as_of``.

        Raises:
            NotFoundError: no such model, or the alias was not set (at that time).
        """
        validate_alias(alias)
        when = as_of_ms(as_of)
        reg = self.registry
        model = self._model(reg, name, when)
        number = reg.aliases_at(model.registered_model_id, when).get(alias)
        if number is None:
            at = "" if when is None else f" at {iso_ms(when)}"
            raise NotFoundError(
                f"Registered model alias {alias} not found for model {name}{at}", details={"alias": alias}
            )
        return self._version_entity(reg, model, self._version(reg, model, number, when), when)

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        """Every move of ``alias`` on model ``name``, oldest first (who, when, forced and why).

        Raises:
            NotFoundError: no such model.
        """
        validate_alias(alias)
        reg = self.registry
        model = self._model(reg, name)
        return [_alias_change(r) for r in reg.aliases.get(model.registered_model_id, {}).get(alias, [])]


def _alias_change(r: AliasRecord) -> AliasChange:
    return AliasChange(
        alias=r.alias,
        version=r.version,
        changed_at=r.changed_at,
        actor=r.actor,
        operation=r.operation,
        is_forced=r.is_forced,
        force_reason=r.force_reason,
        gate_reasons=json.loads(r.gate_reasons) if r.gate_reasons else [],
    )
