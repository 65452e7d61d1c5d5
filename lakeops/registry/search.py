"""Registry search: MLflow's registry filter compiled by ``lakeops.search``, order_by, sorting, prompts."""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lakeops.errors import InvalidArgumentError
from lakeops.registry.core import RegistryCore
from lakeops.registry.entities import ModelVersion, ModelVersionPage, RegisteredModel, RegisteredModelPage
from lakeops.registry.validation import (
    DEFAULT_SEARCH_MODELS,
    DEFAULT_SEARCH_VERSIONS,
    MAX_SEARCH_MODELS,
    MAX_SEARCH_VERSIONS,
    as_of_ms,
    check_max_results,
)
from lakeops.search import compile_object_filter, paginate, parse_filter
from lakeops.stores.registry_state import ModelRecord, VersionRecord, latest

_MODEL_ATTRIBUTES = {"name"}
_MODEL_ORDER_KEYS = {"name": "name", "creation_timestamp": "creation_timestamp", "timestamp": "creation_timestamp"}
_MODEL_ORDER_KEYS["last_updated_timestamp"] = "last_updated_timestamp"


_VERSION_STRING_ATTRIBUTES = {"name", "run_id", "source_path", "model_id", "current_stage"}
_VERSION_NUMERIC_ATTRIBUTES = {"version_number"}
_VERSION_ORDER_KEYS = {
    "name": "name",
    "version_number": "version",
    "creation_timestamp": "creation_timestamp",
    "timestamp": "creation_timestamp",
    "last_updated_timestamp": "last_updated_timestamp",
}


_FILTER_ENTITIES = {
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "tag": "tag",
    "tags": "tag",
}


def _compile_filter(text: str | None, strings: set[str], numbers: set[str]) -> Callable[[Any], bool]:
    # As in MLflow's registry stores, a missing tag differs from any value: the stock client adds
    # `tags.mlflow.prompt.is_prompt != 'true'` to every search.
    return compile_object_filter(
        text,
        noun="model registry",
        entities=_FILTER_ENTITIES,
        attributes=strings | numbers,
        numeric=numbers,
        missing_differs=("tag",),
    )


def _parse_order(
    clauses: Sequence[str] | None, keys: dict[str, str], *, default: list[tuple[str, bool]]
) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for clause in clauses or []:
        parts = clause.strip().split()
        key = keys.get(parts[0].split(".", 1)[-1]) if parts else None
        if key is None or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
            raise InvalidArgumentError(f"Invalid order_by clause {clause!r}; keys: {sorted(keys)}")
        out.append((key, len(parts) == 1 or parts[1].upper() == "ASC"))
    seen = {k for k, _a in out}
    return out + [(k, a) for k, a in default if k not in seen]


def _sort(items: list[Any], order: list[tuple[str, bool]], *, tiebreak: str) -> list[Any]:
    items = sorted(items, key=operator.attrgetter(tiebreak))
    for key, ascending in reversed(order):
        items.sort(key=operator.attrgetter(key), reverse=not ascending)
    return items


def _fingerprint(kind: str, text: str | None, order: list[tuple[str, bool]], as_of: int | None) -> str:
    raw = json.dumps([kind, text or "", order, as_of])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


PROMPT_TAG = "mlflow.prompt.is_prompt"


def _asks_for_prompts(filter_string: str | None) -> bool:
    """Whether a search names the prompt tag: then prompts are searched like models, as MLflow does."""
    return PROMPT_TAG in (filter_string or "")


def _is_prompt(tags: Mapping[str, str]) -> bool:
    """A prompt (MLflow's prompt registry keeps prompts as registered models with this tag)."""
    return str(tags.get(PROMPT_TAG, "false")).lower() == "true"


class SearchMixin(RegistryCore):
    """Search over registered models and model versions, one page at a time, now or ``as_of``."""

    def search_registered_models(
        self,
        filter_string: str | None = None,
        *,
        max_results: int = DEFAULT_SEARCH_MODELS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        as_of: datetime | int | None = None,
    ) -> RegisteredModelPage:
        """Models matching MLflow's registry filter (``name``, ``tags.<key>``), one page at a time.

        Raises:
            InvalidArgumentError: bad filter, order_by, max_results or page token.
        """
        check_max_results(max_results, MAX_SEARCH_MODELS)
        when = as_of_ms(as_of)
        test = _compile_filter(filter_string, _MODEL_ATTRIBUTES, set())
        hide_prompts = not _asks_for_prompts(filter_string)
        order = _parse_order(order_by, _MODEL_ORDER_KEYS, default=[("name", True)])
        fingerprint = _fingerprint("models", filter_string, order, when)
        reg = self.registry

        def ids_now() -> list[str]:
            found: list[_ModelView] = []
            for model_id, history in list(reg.models.items()):
                record = latest(history, when)
                if record is None or record.is_deleted:
                    continue
                view = _ModelView(record, reg.tags_at(model_id, None, when))
                if hide_prompts and _is_prompt(view.tags):
                    continue
                if test(view):
                    found.append(view)
            return [m.registered_model_id for m in _sort(found, order, tiebreak="registered_model_id")]

        ids, token = paginate(
            ids_now, fingerprint=fingerprint, max_results=max_results, page_token=page_token, pins=self._pins
        )
        models: list[RegisteredModel] = []
        for model_id in ids:
            record = latest(reg.models.get(model_id, []), when)
            if record is not None and not record.is_deleted:
                models.append(self._model_entity(reg, record, when))
        return RegisteredModelPage(models, token)

    def search_model_versions(
        self,
        filter_string: str | None = None,
        *,
        max_results: int = DEFAULT_SEARCH_VERSIONS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        as_of: datetime | int | None = None,
    ) -> ModelVersionPage:
        """Versions matching MLflow's filter (``name``, ``run_id``, ``source_path``, ``version_number``,
        ``model_id``, ``tags.<key>``), ordered by name ASC then version DESC unless told otherwise.

        Raises:
            InvalidArgumentError: bad filter, order_by, max_results or page token.
        """
        check_max_results(max_results, MAX_SEARCH_VERSIONS)
        when = as_of_ms(as_of)
        comparisons = parse_filter(filter_string, entities=_FILTER_ENTITIES, default_entity="attribute")
        test = _compile_filter(filter_string, _VERSION_STRING_ATTRIBUTES, _VERSION_NUMERIC_ATTRIBUTES)
        hide_prompts = not _asks_for_prompts(filter_string)
        order = _parse_order(order_by, _VERSION_ORDER_KEYS, default=[("name", True), ("version", False)])
        fingerprint = _fingerprint("versions", filter_string, order, when)
        reg = self.registry
        # `name = '...'` (MLflow's most common filter) narrows the scan to one model.
        names = [c.value for c in comparisons if c.entity == "attribute" and c.key == "name" and c.op == "="]

        def ids_now() -> list[str]:
            if names:
                model_ids = [i for i in (reg.model_id_at(str(n), when) for n in names[:1]) if i is not None]
            else:
                model_ids = list(reg.models)
            found: list[_VersionView] = []
            for model_id in model_ids:
                model = latest(reg.models.get(model_id, []), when)
                if model is None or model.is_deleted:
                    continue
                if hide_prompts and _is_prompt(reg.tags_at(model_id, None, when)):
                    continue
                live = self._live_versions(reg, model_id, when)
                if not live:
                    continue
                for v in live:
                    view = _VersionView(model.name, v, reg.tags_at(model_id, v.version, when))
                    if test(view):
                        found.append(view)
            ordered = _sort(found, order, tiebreak="version")
            return [f"{v.registered_model_id}/{v.version}" for v in ordered]

        ids, token = paginate(
            ids_now, fingerprint=fingerprint, max_results=max_results, page_token=page_token, pins=self._pins
        )
        out: list[ModelVersion] = []
        aliases: dict[str, dict[str, int]] = {}
        for key in ids:
            model_id, _, number = key.partition("/")
            model = latest(reg.models.get(model_id, []), when)
            record = latest(reg.versions.get(model_id, {}).get(int(number), []), when)
            if model is not None and not model.is_deleted and record is not None and not record.is_deleted:
                if model_id not in aliases:
                    aliases[model_id] = reg.aliases_at(model_id, when)
                out.append(self._version_entity(reg, model, record, when, aliases[model_id]))
        return ModelVersionPage(out, token)


@dataclass(frozen=True, slots=True)
class _ModelView:
    record: ModelRecord
    tags: dict[str, str]

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def registered_model_id(self) -> str:
        return self.record.registered_model_id

    @property
    def creation_timestamp(self) -> int:
        return self.record.created_at

    @property
    def last_updated_timestamp(self) -> int:
        return self.record.changed_at


@dataclass(frozen=True, slots=True)
class _VersionView:
    name: str
    record: VersionRecord
    tags: dict[str, str]

    @property
    def run_id(self) -> str | None:
        return self.record.source_run_id

    @property
    def source_path(self) -> str:
        return self.record.source

    @property
    def model_id(self) -> str | None:
        return self.record.model_id

    @property
    def current_stage(self) -> str:
        return self.record.stage

    @property
    def version_number(self) -> float:
        return float(self.record.version)

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def registered_model_id(self) -> str:
        return self.record.registered_model_id

    @property
    def creation_timestamp(self) -> int:
        return self.record.created_at

    @property
    def last_updated_timestamp(self) -> int:
        return self.record.changed_at
