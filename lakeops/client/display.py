"""Rich HTML for Jupyter: runs, experiments, and a generic card other entities reuse.

``html_card(title, fields, sections)`` renders any entity (model versions use it too) as a
small self-contained HTML block: a title, a key/value table and one table per section. Every
value is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

_STYLE = (
    "font-family:system-ui,sans-serif;font-size:13px;border:1px solid #d0d7de;border-radius:6px;"
    "padding:8px 12px;margin:4px 0;max-width:960px"
)
_CELL = "text-align:left;padding:2px 10px 2px 0;vertical-align:top"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return html.escape("" if value is None else str(value))


def _kv_table(values: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><th style="{_CELL};font-weight:600">{_text(k)}</th><td style="{_CELL}">{_text(v)}</td></tr>'
        for k, v in values.items()
    )
    return f"<table>{rows}</table>"


def _rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<i>none</i>"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f'<th style="{_CELL}">{_text(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{_text(row.get(c))}</td>' for c in columns) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_card(
    title: str,
    fields: Mapping[str, Any],
    sections: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]],
) -> str:
    """An entity as HTML: ``fields`` as key/value rows, each section as a table.

    A section is a mapping (rendered as key/value rows) or a list of row mappings (rendered as
    a table with one column per key).
    """
    parts = [f'<div class="lakeops-card" style="{_STYLE}">', f"<b>{_text(title)}</b>", _kv_table(fields)]
    for name, content in sections.items():
        parts.append(f'<div style="margin-top:6px"><b>{_text(name)}</b></div>')
        parts.append(_kv_table(content) if isinstance(content, Mapping) else _rows_table(content))
    parts.append("</div>")
    return "".join(parts)


class HtmlCard:
    """Anything shown in Jupyter as an ``html_card`` (for entities without a class of their own)."""

    def __init__(
        self,
        title: str,
        fields: Mapping[str, Any],
        sections: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.title = title
        self.fields = dict(fields)
        self.sections = dict(sections or {})

    def _repr_html_(self) -> str:
        return html_card(self.title, self.fields, self.sections)


def when(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an ISO time (UTC), for display."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


class RunView:
    """A stored run: info, params, latest metrics and tags (what ``Client.get_run`` returns)."""

    def __init__(self, run: Mapping[str, Any]) -> None:
        info = run["info"]
        self.run_id: str = info["run_id"]
        self.name: str | None = info.get("run_name")
        self.experiment_id: str = info["experiment_id"]
        self.status: str = info["status"]
        self.start_time: int | None = info.get("start_time")
        self.end_time: int | None = info.get("end_time")
        self.artifact_uri: str | None = info.get("artifact_uri")
        self.params: dict[str, str] = dict(run.get("params") or {})
        self.metrics: dict[str, float] = {k: float(m["value"]) for k, m in (run.get("metrics") or {}).items()}
        self.tags: dict[str, str] = dict(run.get("tags") or {})

    def _repr_html_(self) -> str:
        fields = {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "status": self.status,
            "started": when(self.start_time),
            "ended": when(self.end_time),
        }
        user_tags = {k: v for k, v in self.tags.items() if not k.startswith("mlflow.")}
        return html_card(
            f"Run {self.name}", fields, {"Params": self.params, "Metrics (latest)": self.metrics, "Tags": user_tags}
        )

    def __repr__(self) -> str:
        return f"RunView(run_id={self.run_id!r}, name={self.name!r}, status={self.status!r})"


class ExperimentView:
    """An experiment with a preview of its runs (what ``Client.experiment`` returns)."""

    def __init__(self, experiment: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> None:
        self.experiment_id: str = experiment["experiment_id"]
        self.name: str = experiment["name"]
        self.lifecycle_stage: str = experiment["lifecycle_stage"]
        self.creation_time: int | None = experiment.get("creation_time")
        self.tags: dict[str, str] = dict(experiment.get("tags") or {})
        self.runs: list[RunView] = [RunView(r) for r in runs]

    def _repr_html_(self) -> str:
        fields = {
            "experiment_id": self.experiment_id,
            "lifecycle_stage": self.lifecycle_stage,
            "created": when(self.creation_time),
            "runs": len(self.runs),
        }
        preview = [
            {"run": r.name, "status": r.status, **{f"metrics.{k}": v for k, v in r.metrics.items()}}
            for r in self.runs[:20]
        ]
        return html_card(f"Experiment {self.name}", fields, {"Tags": self.tags, "Runs (first 20)": preview})

    def __repr__(self) -> str:
        return f"ExperimentView(experiment_id={self.experiment_id!r}, name={self.name!r}, runs={len(self.runs)})"


class DatasetVersionView:
    """A logged dataset version: name, content digest, schema, row count, profile."""

    def __init__(self, version: Mapping[str, Any]) -> None:
        self.id: str = version["dataset_version_id"]
        self.name: str = version["dataset_name"]
        self.digest: str = version["digest"]
        self.source_type: str = version["source_type"]
        self.source: str | None = version.get("source")
        self.row_count: int | None = version.get("row_count")
        self.size_bytes: int | None = version.get("size_bytes")
        self.schema: list[dict[str, Any]] = list(version.get("schema") or [])
        self.profile: dict[str, Any] = dict(version.get("profile") or {})
        self.created_at: int | None = version.get("created_at")

    def _repr_html_(self) -> str:
        fields = {
            "dataset_version_id": self.id,
            "digest": f"{self.digest[:16]}…" if len(self.digest) > 16 else self.digest,
            "source": f"{self.source_type}: {self.source}",
            "rows": self.row_count,
            "bytes": self.size_bytes,
            "logged": when(self.created_at),
        }
        return html_card(f"Dataset {self.name}", fields, {"Schema": self.schema})

    def __repr__(self) -> str:
        return f"DatasetVersionView(id={self.id!r}, name={self.name!r}, rows={self.row_count})"


class ModelVersionView:
    """A registered model version (what ``Client.register_model`` and ``Client.model_version`` return)."""

    def __init__(self, version: Mapping[str, Any]) -> None:
        self.name: str = version["name"]
        self.version: int = int(version["version"])
        self.run_id: str | None = version.get("run_id")
        self.source: str = version["source"]
        self.storage_location: str | None = version.get("storage_location")
        self.status: str = version["status"]
        self.description: str | None = version.get("description")
        self.creation_timestamp: int | None = version.get("creation_timestamp")
        self.aliases: list[str] = sorted(version.get("aliases") or [])
        self.tags: dict[str, str] = dict(version.get("tags") or {})

    def _repr_html_(self) -> str:
        fields = {
            "version": self.version,
            "aliases": ", ".join(self.aliases) or "—",
            "status": self.status,
            "run_id": self.run_id,
            "source": self.source,
            "registered": when(self.creation_timestamp),
        }
        return html_card(f"Model {self.name} v{self.version}", fields, {"Tags": self.tags})

    def __repr__(self) -> str:
        return f"ModelVersionView(name={self.name!r}, version={self.version}, aliases={self.aliases})"


class LineageView:
    """The lineage around one node: ``nodes`` and ``edges`` as lists of dicts (and polars frames)."""

    def __init__(self, graph: Mapping[str, Any]) -> None:
        self.root: dict[str, str] = dict(graph["root"])
        self.direction: str = graph["direction"]
        self.depth: int = int(graph["depth"])
        self.as_of: str | None = graph.get("as_of")
        self.nodes: list[dict[str, Any]] = [dict(n) for n in graph["nodes"]]
        self.edges: list[dict[str, Any]] = [dict(e) for e in graph["edges"]]

    def ids(self, kind: str) -> list[str]:
        """The ids of the nodes of one kind (``dataset_version``, ``run``, ``model_version``, ...), nearest first."""
        return [n["id"] for n in sorted(self.nodes, key=lambda n: n["distance"]) if n["kind"] == kind]

    def nodes_frame(self) -> Any:
        """The nodes as a polars DataFrame: kind, id, distance, name."""
        import polars as pl

        rows = [
            {"kind": n["kind"], "id": n["id"], "distance": n["distance"], "name": n.get("name")} for n in self.nodes
        ]
        schema = {"kind": pl.String, "id": pl.String, "distance": pl.Int64, "name": pl.String}
        return pl.DataFrame(rows, schema=schema, orient="row").sort("distance", "kind", "id")

    def _edge_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "source": f"{e['source']['kind']}:{e['source']['id']}",
                "relation": e["relation"],
                "target": f"{e['target']['kind']}:{e['target']['id']}",
                "created_at": e.get("created_at"),
            }
            for e in self.edges
        ]

    def _repr_html_(self) -> str:
        fields = {"direction": self.direction, "depth": self.depth, "as of": self.as_of or "now"}
        nodes = [
            {"distance": n["distance"], "kind": n["kind"], "id": n["id"], "name": n.get("name")}
            for n in sorted(self.nodes, key=lambda n: (n["distance"], n["kind"], n["id"]))
        ]
        return html_card(
            f"Lineage of {self.root['kind']} {self.root['id']}", fields, {"Nodes": nodes, "Edges": self._edge_rows()}
        )

    def __repr__(self) -> str:
        return f"LineageView(root={self.root}, nodes={len(self.nodes)}, edges={len(self.edges)})"
