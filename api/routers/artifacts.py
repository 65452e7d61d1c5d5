"""Artifact endpoints: MLflow's artifact proxy and the native versioned-artifact API.

Uploads stream to a spool file on local disk (hashed on the way) and from there to the
object store; downloads stream from the object store. Memory use is one chunk either way.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ArtifactsDep
from api.encoding import JSONBody, RawJSONRoute
from lakeops.services.artifacts import ArtifactService, ArtifactVersion, spool, validate_artifact_path

MAX_ARTIFACT_BYTES = 64 * 1024**3

mlflow_router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)
native_router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


async def _upload(request: Request, artifacts: ArtifactService, path: str) -> ArtifactVersion:
    path = validate_artifact_path(path)  # refuse before reading a byte
    source, size, sha256 = await spool(request.stream(), artifacts.spool_dir, limit=MAX_ARTIFACT_BYTES)
    return await run_in_threadpool(artifacts.upload_file, path, source, size=size, sha256=sha256)


def _download(artifacts: ArtifactService, path: str, version_id: str | None) -> StreamingResponse:
    version, chunks = artifacts.open(path, version_id)
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    headers = {
        "Content-Length": str(version.size_bytes),
        "X-Lakeops-Version-Id": version.version_id,
        "X-Lakeops-Sha256": version.sha256,
    }
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


# -- MLflow's artifact proxy (/api/2.0/mlflow-artifacts) ----------------------------------------


@mlflow_router.put("/artifacts/{artifact_path:path}")
async def mlflow_upload(artifact_path: str, request: Request, artifacts: ArtifactsDep) -> dict[str, Any]:
    await _upload(request, artifacts, artifact_path)
    return {}


@mlflow_router.get("/artifacts")
def mlflow_list(artifacts: ArtifactsDep, path: str = "") -> dict[str, Any]:
    files = []
    for entry in artifacts.list(path):
        info: dict[str, Any] = {"path": entry.path.rsplit("/", 1)[-1], "is_dir": entry.is_dir}
        if entry.file_size is not None:
            info["file_size"] = entry.file_size
        files.append(info)
    return {"files": files}


@mlflow_router.get("/artifacts/{artifact_path:path}")
def mlflow_download(artifact_path: str, artifacts: ArtifactsDep) -> StreamingResponse:
    return _download(artifacts, artifact_path, None)


@mlflow_router.delete("/artifacts/{artifact_path:path}")
def mlflow_delete(artifact_path: str, artifacts: ArtifactsDep) -> dict[str, Any]:
    artifacts.delete(artifact_path)
    return {}


# -- native (/api/v1) ----------------------------------------------------------------------------


@native_router.put("/artifacts/{artifact_path:path}", status_code=201)
async def upload(artifact_path: str, request: Request, artifacts: ArtifactsDep) -> dict[str, Any]:
    """Upload raw bytes as the newest version of a path."""
    return (await _upload(request, artifacts, artifact_path)).model_dump()


@native_router.get("/artifacts")
def list_artifacts(artifacts: ArtifactsDep, prefix: str = "") -> dict[str, Any]:
    """Files and directories directly under ``prefix``."""
    return {"files": [e.model_dump() for e in artifacts.list(prefix)]}


@native_router.get("/artifacts/{artifact_path:path}")
def download(artifact_path: str, artifacts: ArtifactsDep, version_id: str | None = None) -> StreamingResponse:
    """Stream a version of an artifact (the newest unless ``version_id`` is given)."""
    return _download(artifacts, artifact_path, version_id)


@native_router.get("/artifact-versions/{artifact_path:path}")
def versions(artifact_path: str, artifacts: ArtifactsDep) -> dict[str, Any]:
    """Every stored version of an artifact, oldest first."""
    return {"versions": [v.model_dump() for v in artifacts.versions(artifact_path)]}


@native_router.delete("/artifacts/{artifact_path:path}", status_code=204)
def delete(artifact_path: str, artifacts: ArtifactsDep) -> Response:
    """Delete an artifact (older versions stay retrievable by version id)."""
    artifacts.delete(artifact_path)
    return Response(status_code=204)
