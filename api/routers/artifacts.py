"""Artifact endpoints: MLflow's artifact proxy and multipart protocol, and the native API.

Proxied uploads stream to a spool file on local disk (hashed on the way) and from there to the
object store; proxied downloads stream from the object store. Memory use is one chunk either way.
Direct transfers (S3 stores) hand out presigned URLs instead, and record what was stored when the
client reports the upload complete: MLflow 3's ``mpu/create|complete|abort`` and ``presigned``
routes for the stock client, ``/api/v1/artifact-uploads`` and ``/api/v1/artifact-urls`` for ours.
"""

from __future__ import annotations

import mimetypes
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import ArtifactsDep
from api.encoding import JSONBody, RawJSONRoute
from lakeops.errors import InvalidArgumentError
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


# -- MLflow 3's multipart upload and presigned download protocol -------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class MpuCreate(_Body):
    path: str
    num_parts: int = 1


class MpuPart(_Body):
    part_number: int
    etag: str | None = None
    url: str | None = None


class MpuComplete(_Body):
    path: str
    upload_id: str
    parts: list[MpuPart]


class MpuAbort(_Body):
    path: str
    upload_id: str


def _destination(artifact_path: str, local_file: str) -> str:
    """MLflow names the local file; the artifact is its base name inside ``artifact_path``."""
    name = re.split(r"[\\/]", local_file)[-1]
    if not name:
        raise InvalidArgumentError(f"Invalid file name in {local_file!r}")
    return validate_artifact_path(f"{artifact_path.strip('/')}/{name}")


def _parts(parts: list[MpuPart]) -> list[tuple[int, str]]:
    if any(not p.etag for p in parts):
        raise InvalidArgumentError("Every part needs its etag")
    return [(p.part_number, str(p.etag)) for p in parts]


@mlflow_router.post("/mpu/create/{artifact_path:path}")
def mlflow_mpu_create(artifact_path: str, body: MpuCreate, artifacts: ArtifactsDep) -> dict[str, Any]:
    upload_id, urls = artifacts.start_staged_upload(_destination(artifact_path, body.path), num_parts=body.num_parts)
    credentials = [{"url": u.url, "part_number": u.part_number, "headers": u.headers} for u in urls]
    return {"upload_id": upload_id, "credentials": credentials}


@mlflow_router.post("/mpu/complete/{artifact_path:path}")
def mlflow_mpu_complete(artifact_path: str, body: MpuComplete, artifacts: ArtifactsDep) -> dict[str, Any]:
    destination = _destination(artifact_path, body.path)
    artifacts.complete_staged_upload(destination, upload_id=body.upload_id, parts=_parts(body.parts))
    return {}


@mlflow_router.post("/mpu/abort/{artifact_path:path}")
def mlflow_mpu_abort(artifact_path: str, body: MpuAbort, artifacts: ArtifactsDep) -> dict[str, Any]:
    _destination(artifact_path, body.path)
    artifacts.abort_staged_upload(body.upload_id)
    return {}


@mlflow_router.get("/presigned/{artifact_path:path}")
def mlflow_presigned(artifact_path: str, artifacts: ArtifactsDep) -> dict[str, Any]:
    found = artifacts.download_url(artifact_path)
    if found.url is None:
        raise InvalidArgumentError("This artifact store serves downloads through lakeops only")
    return {"url": found.url, "headers": found.headers, "file_size": found.version.size_bytes}


# -- native (/api/v1) ----------------------------------------------------------------------------


class UploadStart(_Body):
    model_config = ConfigDict(extra="forbid")

    path: str
    size_bytes: int = Field(ge=0)
    sha256: str


class UploadedPart(_Body):
    model_config = ConfigDict(extra="forbid")

    part_number: int = Field(ge=1)
    etag: str


class UploadComplete(_Body):
    model_config = ConfigDict(extra="forbid")

    path: str
    size_bytes: int = Field(ge=0)
    sha256: str
    parts: list[UploadedPart]


@native_router.post("/artifact-uploads")
def start_upload(body: UploadStart, artifacts: ArtifactsDep) -> dict[str, Any]:
    """Plan an upload by its sha256: ``stored`` (already there: recorded), ``upload`` (part URLs) or ``proxy``."""
    return artifacts.begin_upload(body.path, size=body.size_bytes, sha256=body.sha256).model_dump()


@native_router.post("/artifact-uploads/{upload_id}/complete")
def complete_upload(upload_id: str, body: UploadComplete, artifacts: ArtifactsDep) -> dict[str, Any]:
    """Assemble the uploaded parts and record the version."""
    parts = [(p.part_number, p.etag) for p in body.parts]
    version = artifacts.complete_upload(
        body.path, sha256=body.sha256, size=body.size_bytes, upload_id=upload_id, parts=parts
    )
    return version.model_dump()


@native_router.delete("/artifact-uploads/{upload_id}", status_code=204)
def abort_upload(upload_id: str, sha256: str, artifacts: ArtifactsDep) -> Response:
    """Drop an upload and its parts."""
    artifacts.abort_upload(sha256=sha256, upload_id=upload_id)
    return Response(status_code=204)


@native_router.get("/artifact-urls/{artifact_path:path}")
def download_url(artifact_path: str, artifacts: ArtifactsDep, version_id: str | None = None) -> dict[str, Any]:
    """A presigned URL for a version's bytes (``url`` is null where bytes go through lakeops)."""
    return artifacts.download_url(artifact_path, version_id).model_dump()


@native_router.get("/artifact-transfers")
def transfers(artifacts: ArtifactsDep) -> dict[str, Any]:
    """Bytes moved by each path since the service started: proxied, direct, deduplicated."""
    return artifacts.transfers()


@native_router.put("/artifacts/{artifact_path:path}", status_code=201)
async def upload(artifact_path: str, request: Request, artifacts: ArtifactsDep) -> dict[str, Any]:
    """Upload raw bytes as the newest version of a path."""
    return (await _upload(request, artifacts, artifact_path)).model_dump()


@native_router.get("/artifacts")
def list_artifacts(artifacts: ArtifactsDep, prefix: str = "", as_of: datetime | None = None) -> dict[str, Any]:
    """Files and directories directly under ``prefix`` (``as_of``: as they stood at that ISO-8601 time)."""
    return {"files": [e.model_dump() for e in artifacts.list(prefix, as_of=as_of)]}


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
