"""Content-addressed artifacts and garbage collection on file:// and s3://: the same bytes are stored
once, pre-blob artifacts keep working, gc frees a deleted run's bytes and nothing still referenced
(by another run, an older version, a checkpoint or an upload in flight)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lakes import make_settings
from serve_process import child_env

from catalog.objects import LocalObjectStore, S3ObjectStore
from lakeops.errors import NotFoundError
from lakeops.services.artifacts import ArtifactService
from lakeops.services.checkpoints import CheckpointService
from lakeops.services.gc import GarbageCollector
from lakeops.settings import LakeopsSettings
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService

KINDS = [pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)]


class Lake:
    """One lake opened in-process with the services gc works with."""

    def __init__(self, settings: LakeopsSettings) -> None:
        self.settings = settings
        self.store: IcebergStore = open_store(settings)
        self.tracking = TrackingService(self.store)
        self.objects = settings.storage.open_objects(settings.home)
        self.artifacts = ArtifactService(self.store, self.objects)
        self.checkpoints = CheckpointService(self.store, self.artifacts)
        self.experiment_id = self.tracking.create_experiment(f"gc-{uuid.uuid4().hex[:8]}")

    def run(self) -> tuple[str, str]:
        run = self.tracking.create_run(self.experiment_id)
        return run.info.run_id, f"{self.experiment_id}/{run.info.run_id}/artifacts"

    def gc(self, *, dry_run: bool) -> dict[str, object]:
        # A clock one second ahead: everything deleted so far is older than the cutoff (grace 0).
        collector = GarbageCollector(self.store, self.objects, clock=lambda: time.time() + 1)
        return collector.collect(grace_s=0, dry_run=dry_run, settle_s=0).model_dump()

    def blobs(self) -> set[str]:
        return {b.digest for b in self.objects.list_blobs()}


@pytest.fixture(params=KINDS)
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    s3 = request.getfixturevalue("s3_server") if request.param == "s3" else None
    opened = Lake(make_settings(request.param, tmp_path / "lake", s3, snapshot_retention_s=0))
    yield opened
    opened.store.close()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_gc_frees_a_deleted_runs_bytes_but_not_bytes_another_run_shares(lake: Lake) -> None:
    shared, own = os.urandom(300_000), os.urandom(200_000)
    first, first_root = lake.run()
    second, second_root = lake.run()
    lake.artifacts.upload_bytes(f"{first_root}/base.bin", shared)
    lake.artifacts.upload_bytes(f"{first_root}/head.bin", own)
    lake.artifacts.upload_bytes(f"{second_root}/base.bin", shared)
    assert lake.blobs() == {_digest(shared), _digest(own)}  # the shared bytes are stored once

    nothing = lake.gc(dry_run=False)
    assert nothing["freed_count"] == 0 and nothing["kept_referenced"] == 2

    lake.tracking.delete_run(first)
    dry = lake.gc(dry_run=True)
    assert [(i["kind"], i["key"]) for i in dry["freed"]] == [("blob", _digest(own))]  # type: ignore[union-attr]
    assert dry["freed_bytes"] == 200_000 and lake.blobs() == {_digest(shared), _digest(own)}

    done = lake.gc(dry_run=False)
    assert done["freed_count"] == 1 and done["freed_bytes"] == 200_000
    assert lake.blobs() == {_digest(shared)}
    _version, chunks = lake.artifacts.open(f"{second_root}/base.bin")
    assert b"".join(chunks) == shared

    lake.tracking.delete_run(second)
    assert lake.gc(dry_run=False)["freed_bytes"] == 300_000
    assert lake.blobs() == set()


def test_gc_keeps_older_versions_and_checkpoint_files_until_their_path_is_deleted(lake: Lake) -> None:
    run_id, root = lake.run()
    v1, v2 = os.urandom(50_000), os.urandom(60_000)
    first = lake.artifacts.upload_bytes(f"{root}/model.bin", v1)
    lake.artifacts.upload_bytes(f"{root}/model.bin", v2)
    ckpt_bytes = os.urandom(70_000)
    lake.artifacts.upload_bytes(f"{root}/checkpoints/step-0000000003/w.bin", ckpt_bytes)
    lake.checkpoints.create(run_id, step=3)

    assert lake.gc(dry_run=False)["freed_count"] == 0
    _v, chunks = lake.artifacts.open(f"{root}/model.bin", first.version_id)
    assert b"".join(chunks) == v1  # the overwritten version is still reachable

    # The checkpoint's file deleted by path: the checkpoint still pins it.
    lake.artifacts.delete(f"{root}/checkpoints")
    assert lake.gc(dry_run=False)["freed_count"] == 0
    assert _digest(ckpt_bytes) in lake.blobs()
    lake.checkpoints.delete(run_id, 3)
    assert lake.gc(dry_run=False)["freed_bytes"] == 70_000

    lake.artifacts.delete(f"{root}/model.bin")
    freed = lake.gc(dry_run=False)
    assert freed["freed_count"] == 2 and freed["freed_bytes"] == 110_000
    assert lake.blobs() == set()


def test_artifacts_stored_before_blobs_keep_working_and_gc_frees_them(lake: Lake) -> None:
    """A version written the way the previous release did: a path-keyed object with its own version."""
    _run_id, root = lake.run()
    path, data = f"{root}/legacy.bin", os.urandom(40_000)
    if isinstance(lake.objects, LocalObjectStore):
        version_id = uuid.uuid4().hex
        stored = lake.objects.root / ".versions" / path / version_id
        stored.parent.mkdir(parents=True)
        stored.write_bytes(data)
    else:
        assert isinstance(lake.objects, S3ObjectStore)
        from io import BytesIO

        put = lake.objects.client.put_object(
            lake.objects.bucket, f"{lake.objects.prefix}/{path}", BytesIO(data), len(data)
        )
        version_id = put.version_id or "null"
    rows = lake.artifacts._row(path, version_id, path, len(data), _digest(data), deleted=False)
    lake.store.write(lambda _state: rows)

    _version, chunks = lake.artifacts.open(path)
    assert b"".join(chunks) == data
    assert lake.gc(dry_run=False)["freed_count"] == 0
    lake.artifacts.delete(path)
    report = lake.gc(dry_run=False)
    assert [(i["kind"], i["key"], i["version_id"]) for i in report["freed"]] == [  # type: ignore[union-attr]
        ("object_version", path, version_id)
    ]
    assert report["freed_bytes"] == 40_000


@pytest.mark.s3
def test_gc_leaves_an_upload_in_flight_alone(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    lake = Lake(make_settings("s3", tmp_path / "lake", request.getfixturevalue("s3_server"), snapshot_retention_s=0))
    try:
        _run_id, root = lake.run()
        data = os.urandom(9 * 1024 * 1024)
        plan = lake.artifacts.begin_upload(f"{root}/big.bin", size=len(data), sha256=_digest(data))
        assert plan.status == "upload" and plan.part_size is not None and plan.upload_id is not None
        import httpx

        etags = []
        for part in plan.parts:
            chunk = data[(part.part_number - 1) * plan.part_size : part.part_number * plan.part_size]
            etags.append((part.part_number, httpx.put(part.url, content=chunk).headers["etag"]))

        report = lake.gc(dry_run=False)  # parts uploaded, not completed yet
        assert report["freed_count"] == 0
        version = lake.artifacts.complete_upload(
            f"{root}/big.bin", sha256=_digest(data), size=len(data), upload_id=plan.upload_id, parts=etags
        )
        assert version.sha256 == _digest(data)
        assert lake.gc(dry_run=False)["freed_count"] == 0
        _v, chunks = lake.artifacts.open(f"{root}/big.bin")
        assert b"".join(chunks) == data

        # An upload abandoned for more than a day is aborted, its parts freed.
        other = os.urandom(9 * 1024 * 1024)
        stale = lake.artifacts.begin_upload(f"{root}/stale.bin", size=len(other), sha256=_digest(other))
        later = GarbageCollector(lake.store, lake.objects, clock=lambda: time.time() + 2 * 86400)
        report = later.collect(grace_s=0, dry_run=False, settle_s=0)
        assert [(i.kind, i.version_id) for i in report.freed] == [("upload", stale.upload_id)]
        with pytest.raises(NotFoundError, match="No upload"):
            lake.artifacts.complete_upload(
                f"{root}/stale.bin", sha256=_digest(other), size=len(other), upload_id=str(stale.upload_id), parts=[]
            )
    finally:
        lake.store.close()


def _gc_report(settings: LakeopsSettings, *args: str) -> dict[str, Any]:
    """Run ``lakeops <args>`` on the lake and return the JSON report it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "lakeops.cli", *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_the_gc_command_reports_a_dry_run(tmp_path: Path) -> None:
    settings = make_settings("file", tmp_path / "lake", None, snapshot_retention_s=0)
    lake = Lake(settings)
    run_id, root = lake.run()
    lake.artifacts.upload_bytes(f"{root}/x.bin", b"x" * 1000)
    lake.tracking.delete_run(run_id)
    lake.store.close()
    report = _gc_report(settings, "maintain", "--gc", "--grace", "0")
    assert report["dry_run"] is True and report["freed_count"] == 1 and report["freed_bytes"] == 1000
    assert len(list((settings.home / "artifacts" / ".blobs").glob("*/*"))) == 1  # nothing freed
    report = _gc_report(settings, "gc", "--grace", "0", "--apply")  # `lakeops gc` is the same command
    assert report["dry_run"] is False and report["freed_count"] == 1 and report["freed_bytes"] == 1000
    assert list((settings.home / "artifacts" / ".blobs").glob("*/*")) == []  # the deleted run's bytes are gone


@pytest.mark.s3
def test_gc_frees_a_spare_copy_of_a_blob_written_twice(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    lake = Lake(make_settings("s3", tmp_path / "lake", request.getfixturevalue("s3_server"), snapshot_retention_s=0))
    try:
        _run_id, root = lake.run()
        data = os.urandom(100_000)
        lake.artifacts.upload_bytes(f"{root}/w.bin", data)
        # A second upload of the same new bytes that raced the first wrote the blob again.
        assert isinstance(lake.objects, S3ObjectStore)
        from io import BytesIO

        lake.objects.client.put_object(
            lake.objects.bucket, lake.objects.blob_name(_digest(data)), BytesIO(data), len(data)
        )
        report = lake.gc(dry_run=False)
        assert [(i["kind"], i["key"]) for i in report["freed"]] == [("blob_version", _digest(data))]  # type: ignore[union-attr]
        assert report["freed_bytes"] == 100_000
        assert lake.objects.spare_blob_versions() == []
        _v, chunks = lake.artifacts.open(f"{root}/w.bin")
        assert b"".join(chunks) == data
    finally:
        lake.store.close()


@pytest.mark.s3
def test_a_staged_upload_is_filed_once_and_stays_filed_after_reopening(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = make_settings("s3", tmp_path / "lake", request.getfixturevalue("s3_server"), snapshot_retention_s=0)
    lake = Lake(settings)
    data = os.urandom(9 * 1024 * 1024)
    try:
        _run_id, root = lake.run()
        path = f"{root}/staged.bin"
        upload_id, urls = lake.artifacts.start_staged_upload(path, num_parts=1)
        import httpx

        etag = httpx.put(urls[0].url, content=data).headers["etag"]
        pending = lake.artifacts.complete_staged_upload(path, upload_id=upload_id, parts=[(1, etag)])
        assert pending.is_pending and pending.sha256 == "" and pending.size_bytes == len(data)
        assert lake.gc(dry_run=False)["freed_count"] == 0  # the staged object is what the version reads

        (version_id, (pending_path, key)), *_ = lake.store.state.pending_artifacts.items()
        assert (version_id, pending_path) == (pending.version_id, path)
        # Two finishers (a restarted server and a late one): the compare-and-swap files it once.
        assert lake.artifacts.finish_staged(path, version_id, key) is True
        assert lake.artifacts.finish_staged(path, version_id, key) is False
        [filed] = lake.artifacts.versions(path)
        assert (filed.version_id, filed.sha256, filed.is_pending) == (version_id, _digest(data), False)
    finally:
        lake.store.close()
    reopened = open_store(settings)  # folded from the committed tables: the hashed row files it in place
    try:
        [state] = reopened.state.artifact_versions[path]
        assert (state.version_id, state.sha256, state.object_key) == (
            version_id,
            _digest(data),
            f"sha256:{_digest(data)}",
        )
        assert reopened.state.pending_artifacts == {}
    finally:
        reopened.close()
