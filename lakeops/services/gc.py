"""Garbage collection of artifact bytes: free what nothing can reach any more, never what something can.

A blob (or a pre-blob object version) is *reachable* while any of these points at it:
- a version of an artifact path that has not been deleted — older versions of a live path stay
  reachable by version id;
- a deleted version whose deletion is younger than the cutoff (the grace period, and at least the
  snapshot retention, so every Iceberg snapshot kept for time travel still finds its bytes);
- a current checkpoint (it pins its files' versions);
- a multipart upload in progress to the blob's key (one started more than a day ago and before
  the cutoff counts as abandoned: it is aborted, and a staged object that old is removed);
- a version pending its sha256 (a stock-client multipart upload completed, not hashed yet) keeps
  its staged object, however old, until the finisher has filed it under its blob.
A path counts as deleted from the time of its delete row, or from the time its run was deleted.
Blobs modified after the cutoff are kept whatever the references say (an upload completing right
now is not referenced yet).

A pass decides, waits ``settle_s`` (long enough for another process's acknowledged writes to be
committed: two commit intervals and a refresh), looks again, and frees only what both looks found
unreachable; with ``dry_run`` it only reports. What remains is a race between a deletion here and
a deduplicating upload of the same old bytes in the few milliseconds between the second look and
the delete, which the grace period makes practically unreachable: the bytes must have been
unreferenced for the whole grace period first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pyarrow.compute as pc
from pydantic import BaseModel
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, EqualTo

from catalog.objects import ObjectStore, blob_digest, staged_token
from catalog.tables import CHECKPOINT_CHANGES, RUN_CHANGES
from lakeops.stores.epochs import epoch_ints
from lakeops.stores.iceberg import IcebergStore

ARTIFACT_SCHEME = "mlflow-artifacts:"
MAX_LISTED = 200
UPLOAD_EXPIRY_S = 86400.0


class GcItem(BaseModel):
    """One object freed (or that a dry run would free)."""

    # "blob" (key: its sha256), "blob_version" (a spare older copy of a blob: sha256 and version),
    # "object_version" (a pre-blob object's key and version), "upload" (an abandoned multipart
    # upload: its key and upload id) or "staged" (a staged object's key)
    kind: str
    key: str
    version_id: str | None = None
    size_bytes: int


class GcReport(BaseModel):
    """What a pass found and did."""

    dry_run: bool
    cutoff: float
    freed: list[GcItem]
    freed_count: int
    freed_bytes: int
    kept_referenced: int
    kept_recent: int
    kept_in_flight: int


@dataclass
class _Reach:
    """What the lake references at one look."""

    live_digests: set[str] = field(default_factory=set)
    dead_objects: dict[tuple[str, str], int] = field(default_factory=dict)  # (key, version) -> size
    live_objects: set[tuple[str, str]] = field(default_factory=set)
    pending_staged: set[str] = field(default_factory=set)  # tokens of staged objects pending their sha256


class GarbageCollector:
    """Finds and frees unreachable artifact bytes."""

    def __init__(self, store: IcebergStore, objects: ObjectStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.objects = objects
        self.clock = clock

    def collect(self, *, grace_s: float, dry_run: bool = True, settle_s: float | None = None) -> GcReport:
        """Free (or, with ``dry_run``, list) the bytes nothing can reach; see the module docstring."""
        retention = self.store.settings.write.snapshot_retention_s
        cutoff = self.clock() - max(grace_s, retention)
        first = self._reach(cutoff)
        candidates, kept = self._candidates(first, cutoff)
        if not dry_run and candidates:
            write = self.store.settings.write
            time.sleep(
                settle_s if settle_s is not None else 2 * write.commit_interval_s + self.store.refresh_interval_s
            )
            self.store.refresh()
            second = self._reach(cutoff)
            again, _kept = self._candidates(second, cutoff)
            still = {(c.kind, c.key, c.version_id) for c in again}
            candidates = [c for c in candidates if (c.kind, c.key, c.version_id) in still]
            for item in candidates:
                self._free(item)
        return GcReport(
            dry_run=dry_run,
            cutoff=cutoff,
            freed=candidates[:MAX_LISTED],
            freed_count=len(candidates),
            freed_bytes=sum(c.size_bytes for c in candidates),
            kept_referenced=kept["referenced"],
            kept_recent=kept["recent"],
            kept_in_flight=kept["in_flight"],
        )

    # -- what is reachable -------------------------------------------------------------------------

    def _reach(self, cutoff: float) -> _Reach:
        state = self.store.state
        cutoff_ms = int(cutoff * 1000)
        dead_runs = self._dead_run_roots(cutoff_ms)
        pinned = self._checkpoint_pins(dead_runs)
        reach = _Reach(live_digests={d for d, _k, _v in pinned})
        pinned_objects = {(k, v) for _d, k, v in pinned}
        for path, versions in list(state.artifact_versions.items()):
            run_dead = any(path.startswith(root) for root in dead_runs)
            # A version is dead once a delete row older than the cutoff follows it.
            dead_after: int | None = None
            verdicts: list[bool] = [False] * len(versions)
            for i in range(len(versions) - 1, -1, -1):
                v = versions[i]
                if v.is_deleted:
                    if v.created_at < cutoff_ms:
                        dead_after = v.created_at
                    continue
                verdicts[i] = run_dead or dead_after is not None
            for v, dead in zip(versions, verdicts, strict=True):
                if v.is_deleted:
                    continue
                token = staged_token(v.object_key)
                if token is not None:  # pending its sha256: the finisher still needs the staged object
                    reach.pending_staged.add(token)
                    continue
                digest = blob_digest(v.object_key)
                if digest is not None:
                    if not dead:
                        reach.live_digests.add(digest)
                elif dead and (v.object_key, v.version_id) not in pinned_objects:
                    reach.dead_objects[(v.object_key, v.version_id)] = v.size_bytes
                else:
                    reach.live_objects.add((v.object_key, v.version_id))
        for key in reach.live_objects:
            reach.dead_objects.pop(key, None)  # the same object version referenced by a live path
        return reach

    def _dead_run_roots(self, cutoff_ms: int) -> set[str]:
        """Artifact roots (``<exp>/<run>/``) of runs deleted before the cutoff and not restored."""
        state = self.store.state
        deleted = state.runs.deleted_run_ids()
        if not deleted:
            return set()
        rows = self.store.scan_with_pending(
            RUN_CHANGES.name,
            _equal_to("lifecycle_stage", "deleted"),
            lambda t: pc.equal(t["lifecycle_stage"], "deleted"),
        )
        deleted_at: dict[str, int] = {}
        for run_id, at in zip(
            rows.column("run_id").to_pylist(), epoch_ints(rows.column("changed_at"), "ms", null=0), strict=True
        ):
            deleted_at[run_id] = max(deleted_at.get(run_id, 0), at)
        roots = set()
        for run_id in deleted:
            run = state.runs.get(run_id)
            uri = (run.artifact_uri or "") if run is not None else ""
            if deleted_at.get(run_id, cutoff_ms) < cutoff_ms and uri.startswith(ARTIFACT_SCHEME):
                roots.add(uri[len(ARTIFACT_SCHEME) :].strip("/").removesuffix("/artifacts").rstrip("/") + "/")
        return roots

    def _checkpoint_pins(self, dead_roots: set[str]) -> set[tuple[str, str, str]]:
        """(digest, object key, version id) of every file of a current checkpoint of a live run."""
        rows = self.store.scan_with_pending(CHECKPOINT_CHANGES.name, AlwaysTrue(), lambda t: pc.is_valid(t["run_id"]))
        rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
        latest: dict[tuple[str, int], tuple[str, str] | None] = {}
        for run_id, step, directory, files, deleted in zip(
            rows.column("run_id").to_pylist(),
            rows.column("step").to_pylist(),
            rows.column("artifact_path").to_pylist(),
            rows.column("files_json").to_pylist(),
            rows.column("is_deleted").to_pylist(),
            strict=True,
        ):
            latest[(run_id, step)] = None if deleted else (directory, files)
        pins: set[tuple[str, str, str]] = set()
        versions = self.store.state.artifact_versions
        for entry in latest.values():
            if entry is None or any(entry[0].startswith(root) for root in dead_roots):
                continue
            directory, files = entry
            for f in json.loads(files):
                path = f"{directory}/{f['path']}"
                for v in versions.get(path, []):
                    if v.version_id == f["version_id"] and not v.is_deleted:
                        pins.add((blob_digest(v.object_key) or "", v.object_key, v.version_id))
        return pins

    # -- what to free ------------------------------------------------------------------------------

    def _candidates(self, reach: _Reach, cutoff: float) -> tuple[list[GcItem], dict[str, int]]:
        kept = {"referenced": 0, "recent": 0, "in_flight": 0}
        in_flight: set[str] = set()
        direct = self.objects.direct
        items: list[GcItem] = []
        if direct is not None:
            # Uploads in progress are left alone unless abandoned: started before the cutoff and
            # more than a day ago (a slow 10 GB upload must not lose its parts to a short grace).
            abandoned_before = min(cutoff, self.clock() - UPLOAD_EXPIRY_S)
            blob_root = direct.blob_name("00" * 32).rsplit("/", 3)[0] + "/"
            for upload in direct.pending_uploads(blob_root):
                if upload.started_at < abandoned_before:
                    items.append(
                        GcItem(kind="upload", key=upload.object_name, version_id=upload.upload_id, size_bytes=0)
                    )
                else:
                    in_flight.add(upload.object_name.rsplit("/", 1)[-1])
            # Staged objects of MLflow uploads are removed once hashed; one left behind is a crash's.
            for staged in direct.staged_objects():
                if staged.digest.rsplit("/", 1)[-1] in reach.pending_staged:
                    kept["in_flight"] += 1
                elif staged.modified_at < abandoned_before:
                    items.append(GcItem(kind="staged", key=staged.digest, size_bytes=staged.size_bytes))
        blob_times: dict[str, float] = {}
        for blob in self.objects.list_blobs():
            blob_times[blob.digest] = blob.modified_at
            if blob.digest in reach.live_digests:
                kept["referenced"] += 1
            elif blob.digest in in_flight:
                kept["in_flight"] += 1
            elif blob.modified_at >= cutoff:
                kept["recent"] += 1
            else:
                items.append(GcItem(kind="blob", key=blob.digest, size_bytes=blob.size_bytes))
        doomed = {item.key for item in items if item.kind == "blob"}
        for digest, version_id, size in self.objects.spare_blob_versions():
            # The current copy stays; an equal older one goes.
            if digest not in doomed and blob_times.get(digest, cutoff) < cutoff:
                items.append(GcItem(kind="blob_version", key=digest, version_id=version_id, size_bytes=size))
        for (key, version_id), size in sorted(reach.dead_objects.items()):
            items.append(GcItem(kind="object_version", key=key, version_id=version_id, size_bytes=size))
        return items, kept

    def _free(self, item: GcItem) -> None:
        direct = self.objects.direct
        if item.kind == "blob":
            self.objects.delete_blob(item.key)
        elif item.kind == "blob_version" and item.version_id is not None:
            self.objects.delete_blob_version(item.key, item.version_id)
        elif item.kind == "upload" and direct is not None and item.version_id is not None:
            direct.abort_upload(item.key, item.version_id)
        elif item.kind == "staged" and direct is not None:
            direct.remove(item.key)
        elif item.version_id is not None:
            self.objects.delete_version(item.key, item.version_id)


# pyiceberg's pydantic-generated signature for EqualTo confuses mypy; this is its documented call form.
_equal_to = cast(Callable[[str, Any], BooleanExpression], EqualTo)
