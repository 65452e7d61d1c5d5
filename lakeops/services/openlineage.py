"""OpenLineage in and out: accept RunEvents as Marquez does, and emit events for lakeops' own runs.

Incoming events are checked against the RunEvent definition of the OpenLineage spec 2-0-2
(``OpenLineage.json``) and the two facets lakeops interprets (``ParentRunFacet`` 1-1-0,
``DatasetVersionDatasetFacet`` 1-0-1), with the ``jsonschema`` package. The schema below is a
transcription of those definitions, not a download: ``openlineage-python``, the package that
would carry them, ships only generated attrs classes (checked, 1.54), not the JSON files; it is a
test dependency here, to prove that the official client talks to lakeops unchanged. Fields the
spec does not constrain stay free (``additionalProperties``), so events with custom facets pass.

An accepted event is stored raw in ``openlineage_events`` and feeds the same lineage edges as
lakeops' own runs, in one atomic write: job -> run (executes), parent run -> run (parent), input
dataset version -> run (input), run -> output dataset version (output). A dataset is named
``<namespace>/<name>`` (``<name>`` alone in the ``lakeops`` namespace); its version is the
``version`` facet's ``datasetVersion``, else, for an input, the latest known version, and for an
output, a new version made by this run (as Marquez does).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from catalog.tables import DATASET_VERSIONS, LINEAGE_EDGES, OPENLINEAGE_EVENTS
from lakeops.actor import ActorField
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.lineage.edges import (
    LineageEdge,
    NodeKind,
    Relation,
    dataset_version_id,
    lineage_edge_rows,
    new_edges,
    now_us,
)
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import RunState, TrackingState

SPEC_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
RUN_EVENT_SCHEMA_URL = f"{SPEC_URL}#/$defs/RunEvent"
PARENT_FACET_URL = "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet"
VERSION_FACET_URL = (
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
)
SCHEMA_FACET_URL = "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
LAKEOPS_NAMESPACE = "lakeops"
EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
MAX_EVENT_BYTES = 4 * 1024 * 1024

_BASE_FACET = {
    "type": "object",
    "properties": {"_producer": {"type": "string", "format": "uri"}, "_schemaURL": {"type": "string", "format": "uri"}},
    "required": ["_producer", "_schemaURL"],
}
_RUN_REF = {
    "type": "object",
    "properties": {"runId": {"type": "string", "format": "uuid"}},
    "required": ["runId"],
}
_JOB_REF = {
    "type": "object",
    "properties": {"namespace": {"type": "string", "minLength": 1}, "name": {"type": "string", "minLength": 1}},
    "required": ["namespace", "name"],
}
_FACETS = {"type": "object", "additionalProperties": {"$ref": "#/$defs/BaseFacet"}}
_DATASET = {
    "type": "object",
    "properties": {
        "namespace": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "facets": {
            "type": "object",
            "properties": {"version": {"$ref": "#/$defs/DatasetVersionDatasetFacet"}},
            "additionalProperties": {"$ref": "#/$defs/BaseFacet"},
        },
        "inputFacets": _FACETS,
        "outputFacets": _FACETS,
    },
    "required": ["namespace", "name"],
}

RUN_EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SPEC_URL,
    "type": "object",
    "properties": {
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "format": "uri"},
        "schemaURL": {"type": "string", "format": "uri"},
        "eventType": {"type": "string", "enum": list(EVENT_TYPES)},
        "run": {
            "type": "object",
            "properties": {
                "runId": {"type": "string", "format": "uuid"},
                "facets": {
                    "type": "object",
                    "properties": {"parent": {"$ref": "#/$defs/ParentRunFacet"}},
                    "additionalProperties": {"$ref": "#/$defs/BaseFacet"},
                },
            },
            "required": ["runId"],
        },
        "job": {
            "type": "object",
            "properties": {**_JOB_REF["properties"], "facets": _FACETS},  # type: ignore[dict-item]
            "required": ["namespace", "name"],
        },
        "inputs": {"type": "array", "items": _DATASET},
        "outputs": {"type": "array", "items": _DATASET},
    },
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "$defs": {
        "BaseFacet": _BASE_FACET,
        "ParentRunFacet": {
            "allOf": [
                {"$ref": "#/$defs/BaseFacet"},
                {
                    "type": "object",
                    "properties": {"run": _RUN_REF, "job": _JOB_REF, "root": {"type": "object"}},
                    "required": ["run", "job"],
                },
            ]
        },
        "DatasetVersionDatasetFacet": {
            "allOf": [
                {"$ref": "#/$defs/BaseFacet"},
                {
                    "type": "object",
                    "properties": {"datasetVersion": {"type": "string", "minLength": 1}},
                    "required": ["datasetVersion"],
                },
            ]
        },
    },
}


def _check_formats() -> Any:
    """A format checker for date-time, uri and uuid that needs no optional jsonschema extras."""
    from jsonschema import FormatChecker

    checker = FormatChecker(formats=())

    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("a date-time needs a time zone offset")
        return True

    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme) and bool(parts.netloc or parts.path)

    def _uuid(value: object) -> bool:
        if isinstance(value, str):
            uuid.UUID(value)
        return True

    checker.checks("date-time", raises=ValueError)(_date_time)
    checker.checks("uri")(_uri)
    checker.checks("uuid", raises=ValueError)(_uuid)
    return checker


_VALIDATOR: Any = None


def validate_run_event(event: object) -> dict[str, Any]:
    """Check a RunEvent against the spec; returns it.

    Raises:
        InvalidArgumentError: the event is not a valid RunEvent (the message says where and why).
    """
    global _VALIDATOR
    if _VALIDATOR is None:
        from jsonschema import Draft202012Validator

        _VALIDATOR = Draft202012Validator(RUN_EVENT_SCHEMA, format_checker=_check_formats())
    if not isinstance(event, dict):
        raise InvalidArgumentError("Invalid OpenLineage event: the body must be a JSON object (a RunEvent)")
    errors = sorted(_VALIDATOR.iter_errors(event), key=lambda e: list(e.absolute_path))
    if errors:
        from jsonschema.exceptions import best_match

        error = best_match(errors)
        where = "/".join(str(p) for p in error.absolute_path) or "(event)"
        raise InvalidArgumentError(
            f"Invalid OpenLineage RunEvent at {where}: {error.message}",
            details={"path": where, "problems": [e.message for e in errors[:10]]},
        )
    return event


def openlineage_run_node(run_id: str) -> str:
    """The lineage node id of an OpenLineage run: lakeops run ids are uuid hex, so ids round-trip."""
    return uuid.UUID(run_id).hex


def openlineage_run_id(run_id: str) -> str:
    """The OpenLineage runId (a UUID) of a lakeops run."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lakeops:run:{run_id}"))


def dataset_name(namespace: str, name: str) -> str:
    """The lakeops dataset name of an OpenLineage dataset."""
    return name if namespace == LAKEOPS_NAMESPACE else f"{namespace.rstrip('/')}/{name}"


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


class OpenLineageService:
    """Ingest OpenLineage RunEvents and emit them for lakeops runs."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(self, store: IcebergStore, *, actor: str | None = None, clock_us: Callable[[], int] = now_us) -> None:
        self.store = store
        self.actor = actor
        self.clock_us = clock_us

    # -- in ------------------------------------------------------------------------------------

    def ingest(self, event: object) -> dict[str, Any]:
        """Validate and store one RunEvent; its lineage lands in the graph in the same write.

        Raises:
            InvalidArgumentError: not a valid RunEvent; nothing is stored.
        """
        event = validate_run_event(event)
        payload = json.dumps(event, separators=(",", ":"), sort_keys=True)
        if len(payload) > MAX_EVENT_BYTES:
            raise InvalidArgumentError(f"OpenLineage event larger than {MAX_EVENT_BYTES} bytes")
        run = event["run"]
        job = event["job"]
        run_node = openlineage_run_node(run["runId"])
        job_node = f"{job['namespace']}/{job['name']}"
        at = self.clock_us()
        event_row = {
            "run_id": run["runId"],
            "event_type": event.get("eventType"),
            "event_time": _us(event["eventTime"]),
            "job_namespace": job["namespace"],
            "job_name": job["name"],
            "producer": event["producer"],
            "schema_url": event.get("schemaURL"),
            "payload_json": payload,
            "received_at": at,
        }
        edges = [LineageEdge(NodeKind.JOB, job_node, NodeKind.RUN, run_node, Relation.EXECUTES, "openlineage")]
        parent = (run.get("facets") or {}).get("parent")
        if parent is not None:
            parent_node = openlineage_run_node(parent["run"]["runId"])
            parent_job = f"{parent['job']['namespace']}/{parent['job']['name']}"
            edges.append(LineageEdge(NodeKind.RUN, parent_node, NodeKind.RUN, run_node, Relation.PARENT, "openlineage"))
            edges.append(
                LineageEdge(NodeKind.JOB, parent_job, NodeKind.RUN, parent_node, Relation.EXECUTES, "openlineage")
            )

        def build(state: TrackingState) -> Rows:
            versions: dict[str, dict[str, Any]] = {}
            all_edges = list(edges)
            for direction, datasets in (("input", event.get("inputs") or []), ("output", event.get("outputs") or [])):
                for dataset in datasets:
                    version_id, row = self._dataset_version(state, dataset, direction, run["runId"], at)
                    if row is not None and version_id not in versions:
                        versions[version_id] = row
                    all_edges.append(
                        LineageEdge(
                            NodeKind.DATASET_VERSION, version_id, NodeKind.RUN, run_node, Relation.INPUT, "openlineage"
                        )
                        if direction == "input"
                        else LineageEdge(
                            NodeKind.RUN, run_node, NodeKind.DATASET_VERSION, version_id, Relation.OUTPUT, "openlineage"
                        )
                    )
            rows: Rows = {
                OPENLINEAGE_EVENTS.name: pa.RecordBatch.from_pylist([event_row], schema=OPENLINEAGE_EVENTS.arrow_schema)
            }
            if versions:
                rows[DATASET_VERSIONS.name] = pa.RecordBatch.from_pylist(
                    list(versions.values()), schema=DATASET_VERSIONS.arrow_schema
                )
            fresh = new_edges(state, all_edges)
            if fresh:
                rows[LINEAGE_EDGES.name] = lineage_edge_rows(fresh, actor=self.actor, created_at_us=at)
            return rows

        self.store.write(build)
        return {"run_id": run["runId"], "node_id": run_node, "event_type": event.get("eventType")}

    def _dataset_version(
        self, state: TrackingState, dataset: Mapping[str, Any], direction: str, run_id: str, at: int
    ) -> tuple[str, dict[str, Any] | None]:
        name = dataset_name(dataset["namespace"], dataset["name"])
        facets = dataset.get("facets") or {}
        version = (facets.get("version") or {}).get("datasetVersion")
        if version is None and direction == "input":
            known = state.lineage.versions_by_name.get(name)
            version = state.lineage.dataset_versions[known[-1]].digest if known else "unversioned"
        elif version is None:
            version = f"openlineage-run:{run_id}"
        version_id = dataset_version_id(name, version)
        if version_id in state.lineage.dataset_versions:
            return version_id, None
        schema_facet = facets.get("schema") or {}
        fields = schema_facet.get("fields") if isinstance(schema_facet, dict) else None
        schema = (
            [{"name": f.get("name"), "type": f.get("type")} for f in fields if isinstance(f, dict)]
            if isinstance(fields, list)
            else None
        )
        return version_id, {
            "dataset_version_id": version_id,
            "dataset_name": name,
            "digest": version,
            "digest_kind": "openlineage",
            "source_type": "openlineage",
            "source": f"{dataset['namespace']}/{dataset['name']}",
            "schema_json": json.dumps(schema) if schema is not None else None,
            "row_count": None,
            "size_bytes": None,
            "profile_json": None,
            "created_at": at,
            "actor": self.actor,
        }

    # -- out -----------------------------------------------------------------------------------

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """OpenLineage RunEvents describing a lakeops run: START, then COMPLETE/FAIL/ABORT once it ended.

        Raises:
            NotFoundError: no such run.
        """
        state = self.store.state
        run = state.runs.get(run_id)
        if run is None:
            raise NotFoundError(f"Run with id={run_id} not found", details={"run_id": run_id})
        experiment = state.experiments.get(run.experiment_id)
        job = {"namespace": LAKEOPS_NAMESPACE, "name": experiment.name if experiment else run.experiment_id}
        node = ("run", run_id)
        inputs = [
            self._dataset_json(state, e.other[1]) for e in state.lineage.upstream.get(node, ()) if e.relation == "input"
        ]
        outputs = [
            self._dataset_json(state, e.other[1])
            for e in state.lineage.downstream.get(node, ())
            if e.relation == "output"
        ]
        run_facets: dict[str, Any] = {}
        if run.parent_run_id and run.parent_run_id in state.runs:
            parent = state.runs[run.parent_run_id]
            parent_exp = state.experiments.get(parent.experiment_id)
            run_facets["parent"] = {
                **self._facet_base(PARENT_FACET_URL),
                "run": {"runId": openlineage_run_id(parent.run_id)},
                "job": {
                    "namespace": LAKEOPS_NAMESPACE,
                    "name": parent_exp.name if parent_exp else parent.experiment_id,
                },
            }
        events = [self._event("START", run, run.start_time, job, run_facets, inputs, [])]
        terminal = {"FINISHED": "COMPLETE", "FAILED": "FAIL", "KILLED": "ABORT"}.get(run.status)
        if terminal is not None:
            events.append(self._event(terminal, run, run.end_time or run.start_time, job, run_facets, inputs, outputs))
        return events

    def _event(
        self,
        event_type: str,
        run: RunState,
        at_ms: int | None,
        job: dict[str, str],
        run_facets: dict[str, Any],
        inputs: list[dict[str, Any]],
        outputs: list[dict[str, Any]],
    ) -> dict[str, Any]:
        moment = datetime.fromtimestamp((at_ms or 0) / 1000, tz=UTC)
        return {
            "eventType": event_type,
            "eventTime": moment.isoformat(),
            "producer": _producer(),
            "schemaURL": RUN_EVENT_SCHEMA_URL,
            "run": {"runId": openlineage_run_id(run.run_id), "facets": run_facets},
            "job": {**job, "facets": {}},
            "inputs": inputs,
            "outputs": outputs,
        }

    def _dataset_json(self, state: TrackingState, version_id: str) -> dict[str, Any]:
        version = state.lineage.dataset_versions.get(version_id)
        if version is None:
            return {"namespace": LAKEOPS_NAMESPACE, "name": version_id, "facets": {}}
        facets: dict[str, Any] = {
            "version": {**self._facet_base(VERSION_FACET_URL), "datasetVersion": version.digest},
        }
        if version.schema:
            facets["schema"] = {
                **self._facet_base(SCHEMA_FACET_URL),
                "fields": [{"name": str(c.get("name")), "type": str(c.get("type"))} for c in version.schema],
            }
        return {"namespace": LAKEOPS_NAMESPACE, "name": version.dataset_name, "facets": facets}

    @staticmethod
    def _facet_base(schema_url: str) -> dict[str, str]:
        return {"_producer": _producer(), "_schemaURL": schema_url}


def _producer() -> str:
    return f"urn:lakeops:{package_version('lakeops')}"
