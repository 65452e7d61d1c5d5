"""Evaluation datasets (MLflow 3's ``mlflow.genai.datasets``): named sets of records (inputs,
expectations, outputs, tags) that ``mlflow.genai.evaluate`` runs over.

Datasets and their records are change rows of ``evaluation_dataset_changes`` and
``evaluation_record_changes``, written through ``store.write`` and read on demand (through the
store's read cache; never folded into the in-memory state). As in MLflow, a record is identified
within its dataset by its inputs: upserting a record whose inputs are already there merges its
expectations and tags into the stored one and replaces its outputs.
"""

from __future__ import annotations

import hashlib
import json
import operator
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue

from catalog.tables import EVALUATION_DATASET_CHANGES, EVALUATION_RECORD_CHANGES
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.search import decode_token, encode_token, like_pattern, parse_filter
from lakeops.stores.epochs import epoch_ints
from lakeops.stores.iceberg import IcebergStore
from lakeops.stores.state import TrackingState

MAX_RECORDS_PER_PAGE = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationDataset:
    """An evaluation dataset (times in ms)."""

    dataset_id: str
    name: str
    tags: dict[str, Any]
    experiment_ids: list[str]
    schema: str | None
    profile: str | None
    digest: str
    created_by: str | None
    last_updated_by: str | None
    created_time: int
    last_update_time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationRecord:
    """One record of an evaluation dataset, in MLflow's shape."""

    dataset_record_id: str
    dataset_id: str
    input_hash: str
    inputs: dict[str, Any]
    outputs: Any = None
    expectations: dict[str, Any] | None = None
    tags: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    source_id: str | None = None
    source_type: str | None = None
    created_by: str | None = None
    last_updated_by: str | None = None
    created_time: int = 0
    last_update_time: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as MLflow's ``DatasetRecord.to_dict`` writes it."""
        out: dict[str, Any] = {
            "dataset_record_id": self.dataset_record_id,
            "dataset_id": self.dataset_id,
            "inputs": self.inputs,
            "created_time": self.created_time,
            "last_update_time": self.last_update_time,
        }
        for key in ("outputs", "expectations", "tags", "source", "source_id", "source_type", "created_by"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.last_updated_by is not None:
            out["last_updated_by"] = self.last_updated_by
        return out


class EvaluationDatasetService:
    """Create, search, change and delete evaluation datasets; upsert, read and delete their records."""

    def __init__(self, store: IcebergStore, *, actor: str, now_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.actor = actor
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))

    # -- datasets --------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        experiment_ids: Sequence[str] = (),
        tags: Mapping[str, Any] | None = None,
        created_by: str | None = None,
    ) -> EvaluationDataset:
        """Create a dataset in some experiments.

        Raises:
            InvalidArgumentError: no name.
            NotFoundError: no such experiment.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("An evaluation dataset needs a name")
        now = self._now_ms()
        dataset_id = f"d-{uuid.uuid4().hex}"
        dataset = EvaluationDataset(
            dataset_id=dataset_id,
            name=name,
            tags=dict(tags or {}),
            experiment_ids=[str(e) for e in experiment_ids],
            schema=None,
            profile=None,
            digest=hashlib.sha256(f"{dataset_id}:{now}".encode()).hexdigest()[:8],
            created_by=created_by,
            last_updated_by=created_by,
            created_time=now,
            last_update_time=now,
        )

        def build(state: TrackingState) -> dict[str, pa.RecordBatch]:
            _check_experiments(state, dataset.experiment_ids)
            return {EVALUATION_DATASET_CHANGES.name: self._dataset_rows(dataset, "create", now)}

        self.store.write(build)
        return dataset

    def get(self, dataset_id: str) -> EvaluationDataset:
        """One dataset.

        Raises:
            NotFoundError: no such dataset.
        """
        found = self._datasets().get(dataset_id)
        if found is None:
            raise NotFoundError(f"Evaluation dataset '{dataset_id}' not found", details={"dataset_id": dataset_id})
        return found

    def delete(self, dataset_id: str) -> None:
        """Delete a dataset (its records go with it).

        Raises:
            NotFoundError: no such dataset.
        """
        self._change(self.get(dataset_id), "delete", deleted=True)

    def search(
        self,
        *,
        experiment_ids: Sequence[str] = (),
        filter_string: str | None = None,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[EvaluationDataset], str | None]:
        """Datasets of some experiments (all without), filtered by ``name`` (=, !=, LIKE, ILIKE) or
        ``tags.<key>``; newest first unless ``order_by`` names ``name``, ``created_time`` or
        ``last_update_time``.

        Raises:
            InvalidArgumentError: a bad filter, order or page.
        """
        wanted = {str(e) for e in experiment_ids}
        found = [d for d in self._datasets().values() if not wanted or wanted & set(d.experiment_ids)]
        for c in parse_filter(filter_string, entities={"tag": "tag", "tags": "tag", "attribute": "attribute"}):
            found = [d for d in found if _matches(d, c.entity, c.key, c.op, c.value)]
        found.sort(key=lambda d: (-d.created_time, d.dataset_id))
        for clause in reversed(list(order_by or [])):
            key, _, direction = clause.strip().partition(" ")
            key = key.split(".", 1)[-1]
            if key not in ("name", "created_time", "last_update_time"):
                raise InvalidArgumentError(f"Invalid order_by {clause!r}: name, created_time or last_update_time")
            found.sort(key=operator.attrgetter(key), reverse=direction.strip().upper() == "DESC")
        if not 1 <= max_results <= 50_000:
            raise InvalidArgumentError(f"Invalid max_results {max_results}: must be between 1 and 50000")
        offset = int(decode_token(page_token).get("offset", 0))
        nxt = encode_token({"offset": offset + max_results}) if offset + max_results < len(found) else None
        return found[offset : offset + max_results], nxt

    def set_tags(self, dataset_id: str, tags: Mapping[str, Any]) -> None:
        """Merge tags into a dataset's (a None value removes the tag).

        Raises:
            NotFoundError: no such dataset.
        """
        old = self.get(dataset_id)
        merged = {**old.tags, **tags}
        self._change(replace(old, tags={k: v for k, v in merged.items() if v is not None}), "set_tags")

    def delete_tag(self, dataset_id: str, key: str) -> None:
        """Remove one tag.

        Raises:
            NotFoundError: no such dataset.
        """
        old = self.get(dataset_id)
        self._change(replace(old, tags={k: v for k, v in old.tags.items() if k != key}), "delete_tag")

    def add_experiments(self, dataset_id: str, experiment_ids: Sequence[str]) -> EvaluationDataset:
        """Add the dataset to more experiments.

        Raises:
            NotFoundError: no such dataset or experiment.
        """
        old = self.get(dataset_id)
        new = replace(old, experiment_ids=list(dict.fromkeys([*old.experiment_ids, *map(str, experiment_ids)])))
        return self._change(new, "add_experiments", check=new.experiment_ids)

    def remove_experiments(self, dataset_id: str, experiment_ids: Sequence[str]) -> EvaluationDataset:
        """Take the dataset out of some experiments.

        Raises:
            NotFoundError: no such dataset.
        """
        old = self.get(dataset_id)
        gone = {str(e) for e in experiment_ids}
        return self._change(
            replace(old, experiment_ids=[e for e in old.experiment_ids if e not in gone]), "remove_experiments"
        )

    # -- records ---------------------------------------------------------------------------------

    def upsert_records(
        self, dataset_id: str, records: Sequence[Mapping[str, Any]], *, updated_by: str | None = None
    ) -> tuple[int, int]:
        """Insert records, or merge into the one with the same inputs; returns (inserted, updated).

        Raises:
            NotFoundError: no such dataset.
            InvalidArgumentError: a record without inputs.
        """
        dataset = self.get(dataset_id)
        current = {r.input_hash: r for r in self._records(dataset_id)}
        now = self._now_ms()
        written: dict[str, EvaluationRecord] = {}
        inserted = updated = 0
        for raw in records:
            inputs = raw.get("inputs")
            if not isinstance(inputs, dict) or not inputs:
                raise InvalidArgumentError("Each record needs its inputs as a non-empty object")
            input_hash = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
            user = (raw.get("tags") or {}).get("mlflow.user") if isinstance(raw.get("tags"), dict) else None
            old = written.get(input_hash) or current.get(input_hash)
            if old is None:
                inserted += 1
                record = EvaluationRecord(
                    dataset_record_id=f"dr-{uuid.uuid4().hex}",
                    dataset_id=dataset_id,
                    input_hash=input_hash,
                    inputs=inputs,
                    outputs=raw.get("outputs"),
                    expectations=raw.get("expectations"),
                    tags=raw.get("tags"),
                    source=raw.get("source") if isinstance(raw.get("source"), dict) else None,
                    source_id=raw.get("source_id"),
                    source_type=raw.get("source_type")
                    or ((raw.get("source") or {}).get("source_type") if isinstance(raw.get("source"), dict) else None),
                    created_by=user or updated_by,
                    last_updated_by=user or updated_by,
                    created_time=now,
                    last_update_time=now,
                )
            else:
                if input_hash not in written:
                    updated += 1
                record = replace(
                    old,
                    outputs=raw["outputs"] if raw.get("outputs") is not None else old.outputs,
                    expectations={**(old.expectations or {}), **(raw.get("expectations") or {})} or None,
                    tags={**(old.tags or {}), **(raw.get("tags") or {})} or None,
                    last_updated_by=user or updated_by or old.last_updated_by,
                    last_update_time=now,
                )
            written[input_hash] = record
        if not written:
            return 0, 0
        schema = _schema(list({**current, **written}.values()))
        stamped = replace(
            dataset, schema=schema, last_update_time=now, last_updated_by=updated_by or dataset.last_updated_by
        )
        self.store.write(
            lambda _s: {
                EVALUATION_RECORD_CHANGES.name: self._record_rows(list(written.values()), "upsert", now),
                EVALUATION_DATASET_CHANGES.name: self._dataset_rows(stamped, "upsert_records", now),
            }
        )
        return inserted, updated

    def records(
        self, dataset_id: str, *, max_results: int = MAX_RECORDS_PER_PAGE, page_token: str | None = None
    ) -> tuple[list[EvaluationRecord], str | None]:
        """A page of a dataset's records, oldest first.

        Raises:
            NotFoundError: no such dataset.
        """
        self.get(dataset_id)
        found = sorted(self._records(dataset_id), key=lambda r: (r.created_time, r.dataset_record_id))
        offset = int(decode_token(page_token).get("offset", 0))
        size = max(1, min(max_results or MAX_RECORDS_PER_PAGE, 50_000))
        nxt = encode_token({"offset": offset + size}) if offset + size < len(found) else None
        return found[offset : offset + size], nxt

    def delete_records(self, dataset_id: str, record_ids: Sequence[str]) -> int:
        """Delete records by id; returns how many there were.

        Raises:
            NotFoundError: no such dataset.
        """
        self.get(dataset_id)
        wanted = set(record_ids)
        doomed = [r for r in self._records(dataset_id) if r.dataset_record_id in wanted]
        if doomed:
            now = self._now_ms()
            self.store.write(
                lambda _s: {EVALUATION_RECORD_CHANGES.name: self._record_rows(doomed, "delete", now, deleted=True)}
            )
        return len(doomed)

    # -- internals -------------------------------------------------------------------------------

    def _change(
        self, dataset: EvaluationDataset, operation: str, *, deleted: bool = False, check: Sequence[str] = ()
    ) -> EvaluationDataset:
        now = self._now_ms()
        new = replace(dataset, last_update_time=now)

        def build(state: TrackingState) -> dict[str, pa.RecordBatch]:
            _check_experiments(state, check)
            return {EVALUATION_DATASET_CHANGES.name: self._dataset_rows(new, operation, now, deleted=deleted)}

        self.store.write(build)
        return new

    def _datasets(self) -> dict[str, EvaluationDataset]:
        rows = self.store.scan_with_pending(
            EVALUATION_DATASET_CHANGES.name, AlwaysTrue(), lambda t: pc.is_valid(t["dataset_id"]), cache_key="all"
        )
        rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
        data = rows.to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms", null=0)
        changed = epoch_ints(rows.column("changed_at"), "ms", null=0)
        found: dict[str, EvaluationDataset] = {}
        for i, dataset_id in enumerate(data["dataset_id"]):
            if data["is_deleted"][i]:
                found.pop(dataset_id, None)
                continue
            found[dataset_id] = EvaluationDataset(
                dataset_id=dataset_id,
                name=data["name"][i],
                tags=json.loads(data["tags_json"][i]),
                experiment_ids=json.loads(data["experiment_ids_json"][i]),
                schema=data["schema_json"][i],
                profile=data["profile_json"][i],
                digest=data["digest"][i],
                created_by=data["created_by"][i],
                last_updated_by=data["actor"][i] if data["operation"][i] != "create" else data["created_by"][i],
                created_time=created[i],
                last_update_time=changed[i],
            )
        return found

    def _records(self, dataset_id: str) -> list[EvaluationRecord]:
        rows = self.store.scan_with_pending(
            EVALUATION_RECORD_CHANGES.name,
            AlwaysTrue(),
            lambda t: pc.equal(t["dataset_id"], dataset_id),
            cache_key="all",
        )
        rows = rows.filter(pc.equal(rows["dataset_id"], dataset_id))
        rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
        data = rows.to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms", null=0)
        changed = epoch_ints(rows.column("changed_at"), "ms", null=0)
        found: dict[str, EvaluationRecord | None] = {}
        for i, record_id in enumerate(data["dataset_record_id"]):
            if data["is_deleted"][i]:
                found[record_id] = None
                continue
            found[record_id] = EvaluationRecord(
                dataset_record_id=record_id,
                dataset_id=dataset_id,
                input_hash=data["input_hash"][i],
                inputs=json.loads(data["inputs_json"][i]),
                outputs=_loads(data["outputs_json"][i]),
                expectations=_loads(data["expectations_json"][i]),
                tags=_loads(data["tags_json"][i]),
                source=_loads(data["source_json"][i]),
                source_id=data["source_id"][i],
                source_type=data["source_type"][i],
                created_by=data["created_by"][i],
                last_updated_by=data["actor"][i],
                created_time=created[i],
                last_update_time=changed[i],
            )
        return [r for r in found.values() if r is not None]

    def _dataset_rows(self, d: EvaluationDataset, operation: str, now: int, *, deleted: bool = False) -> pa.RecordBatch:
        columns = {
            "dataset_id": [d.dataset_id],
            "name": [d.name],
            "tags_json": [json.dumps(d.tags, default=str)],
            "experiment_ids_json": [json.dumps(d.experiment_ids)],
            "schema_json": [d.schema],
            "profile_json": [d.profile],
            "digest": [d.digest],
            "created_by": [d.created_by],
            "is_deleted": [deleted],
            "created_at": [d.created_time * 1000],
            "changed_at": [now * 1000],
            "actor": [d.last_updated_by or self.actor],
            "operation": [operation],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return pa.RecordBatch.from_pydict(columns, schema=EVALUATION_DATASET_CHANGES.arrow_schema)

    def _record_rows(
        self, records: list[EvaluationRecord], operation: str, now: int, *, deleted: bool = False
    ) -> pa.RecordBatch:
        def dumps(value: Any) -> str | None:
            return None if value is None else json.dumps(value, default=str)

        columns = {
            "dataset_record_id": [r.dataset_record_id for r in records],
            "dataset_id": [r.dataset_id for r in records],
            "input_hash": [r.input_hash for r in records],
            "inputs_json": [json.dumps(r.inputs, default=str) for r in records],
            "outputs_json": [dumps(r.outputs) for r in records],
            "expectations_json": [dumps(r.expectations) for r in records],
            "tags_json": [dumps(r.tags) for r in records],
            "source_json": [dumps(r.source) for r in records],
            "source_id": [r.source_id for r in records],
            "source_type": [r.source_type for r in records],
            "created_by": [r.created_by for r in records],
            "is_deleted": [deleted] * len(records),
            "created_at": [r.created_time * 1000 for r in records],
            "changed_at": [now * 1000] * len(records),
            "actor": [r.last_updated_by or self.actor for r in records],
            "operation": [operation] * len(records),
            "writer_id": [self.store.writer_id] * len(records),
            "wal_seq": [0] * len(records),
        }
        return pa.RecordBatch.from_pydict(columns, schema=EVALUATION_RECORD_CHANGES.arrow_schema)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _check_experiments(state: TrackingState, experiment_ids: Sequence[str]) -> None:
    for experiment_id in experiment_ids:
        if str(experiment_id) not in state.experiments:
            raise NotFoundError(
                f"No Experiment with id={experiment_id} exists", details={"experiment_id": experiment_id}
            )


def _matches(dataset: EvaluationDataset, entity: str, key: str, op: str, value: Any) -> bool:
    if entity != "tag" and key in ("created_time", "last_update_time"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgumentError(f"Invalid filter: {key} is compared with a number (ms)")
        compare = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt}
        compare[">="] = operator.ge
        if op not in compare:
            raise InvalidArgumentError(f"Invalid comparator {op!r} for {key}")
        return bool(compare[op](getattr(dataset, key), value))
    if entity == "tag":
        got = dataset.tags.get(key)
    elif key in ("name", "dataset_id", "created_by", "digest"):
        got = getattr(dataset, key)
    else:
        raise InvalidArgumentError(
            f"Invalid dataset filter key {key!r}: name, dataset_id, created_by, created_time, last_update_time "
            "or tags.<key>"
        )
    if got is None:
        return op == "IS NULL"
    text = str(got)
    if op == "=":
        return bool(text == value)
    if op == "!=":
        return bool(text != value)
    if op in ("LIKE", "ILIKE"):
        return bool(like_pattern(str(value), case_insensitive=op == "ILIKE").fullmatch(text))
    if op == "IS NOT NULL":
        return True
    raise InvalidArgumentError(f"Invalid comparator {op!r} in a dataset filter")


def _schema(records: list[EvaluationRecord]) -> str:
    """The fields the records use, as MLflow's dataset schema JSON (inputs/expectations/outputs keys)."""
    inputs: dict[str, str] = {}
    expectations: dict[str, str] = {}
    for r in records:
        for k, v in r.inputs.items():
            inputs.setdefault(k, type(v).__name__)
        for k, v in (r.expectations or {}).items():
            expectations.setdefault(k, type(v).__name__)
    schema: dict[str, Any] = {"inputs": inputs, "expectations": expectations, "version": "1.0"}
    return json.dumps(schema)
