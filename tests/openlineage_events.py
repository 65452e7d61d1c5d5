"""OpenLineage RunEvents built as the spec (2-0-2) defines them, for the domain and API tests."""

from __future__ import annotations

from typing import Any

PRODUCER = "https://example.com/airflow/openlineage-provider/2.1.0"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def _facet(url: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": url, **fields}


def ol_event(
    event_type: str,
    run_id: str,
    *,
    parent_run_id: str | None = None,
    inputs: list[tuple[str, str, str | None]] = (),  # type: ignore[assignment]
    outputs: list[tuple[str, str, str | None]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """A RunEvent as the OpenLineage spec 2-0-2 defines it, with parent-run and dataset-version facets."""

    def dataset(namespace: str, name: str, version: str | None) -> dict[str, Any]:
        facets: dict[str, Any] = {
            "schema": _facet(
                "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
                fields=[{"name": "id", "type": "BIGINT"}],
            )
        }
        if version is not None:
            facets["version"] = _facet(
                "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
                datasetVersion=version,
            )
        return {"namespace": namespace, "name": name, "facets": facets}

    run_facets: dict[str, Any] = {}
    if parent_run_id is not None:
        run_facets["parent"] = _facet(
            "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet",
            run={"runId": parent_run_id},
            job={"namespace": "airflow", "name": "nightly_dag"},
        )
    return {
        "eventType": event_type,
        "eventTime": "2026-03-01T02:00:00.000Z",
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": "airflow", "name": "nightly_dag.build_features", "facets": {}},
        "inputs": [dataset(*d) for d in inputs],
        "outputs": [dataset(*d) for d in outputs],
    }
