"""Operational status of a serving process: is it healthy, and the figures behind ``/metrics``.

Two questions decide health:

1. Do commits land? The store keeps a record of its committer (``IcebergStore.commit_health``).
   Acknowledged rows live in the local write-ahead log until a commit lands, so a commit that
   fails now and then costs nothing; commits that keep failing (or one that hangs) for longer
   than ``write.unhealthy_after_s`` mean the lake is falling behind, and other replicas and
   engines no longer see this process's writes.
2. Can the lake be reached now? A probe loads one table through the catalog, which reads its
   metadata file from the object store: one catalog round trip and one object-store round trip.
   Probes run in a background thread, at most one at a time and at most once per
   ``PROBE_EVERY_S``; a probe without an answer within ``PROBE_TIMEOUT_S`` counts as a failure,
   so ``/health`` itself always answers quickly, even when the object store hangs.

And, with the write-ahead log in the object store: does this process still hold its log's lease?
One that lapsed or was taken (``lakeops/object_wal.py``) refuses every write until a restart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from catalog.tables import TABLES
from lakeops.errors import LakeopsError
from lakeops.stores.iceberg import CommitHealth, IcebergStore

PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Reason:
    """Why a process is unhealthy: which check failed and what it saw."""

    check: str  # "commits" or "lake"
    message: str


@dataclass(frozen=True)
class OperationalStatus:
    """A snapshot of what ``/health`` and ``/metrics`` report."""

    commit: CommitHealth
    queued_rows: int
    wal_bytes: int
    reasons: list[Reason] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No check failed."""
        return not self.reasons

    @property
    def commit_lag_s(self) -> float:
        """Seconds the oldest acknowledged row not yet committed has waited (0 when none waits)."""
        since = self.commit.oldest_queued_at
        return max(0.0, self.commit.at - since) if since is not None else 0.0

    @property
    def seconds_since_last_commit(self) -> float | None:
        """Seconds since the last commit that landed rows (None before the first)."""
        done = self.commit.last_commit_ok_at
        return max(0.0, self.commit.at - done) if done is not None else None

    def to_json(self) -> dict[str, Any]:
        """The ``/health`` body."""
        c = self.commit
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "reasons": [{"check": r.check, "message": r.message} for r in self.reasons],
            "queued_rows": self.queued_rows,
            "wal_bytes": self.wal_bytes,
            "commit_lag_s": round(self.commit_lag_s, 3),
            "last_commit_ok_at": _iso(c.last_commit_ok_at),
            "failing_since": _iso(c.first_failure_at),
            "last_error": c.last_error,
            "commits_total": c.commits_total,
            "commit_failures_total": c.commit_failures_total,
        }


class HealthMonitor:
    """Answers "is this process healthy?" for one open store.

    Args:
        store: the process's store.
        unhealthy_after_s: commits failing or hanging this long make the process unhealthy
            (default: the store's ``write.unhealthy_after_s``).
    """

    def __init__(self, store: IcebergStore, *, unhealthy_after_s: float | None = None) -> None:
        self.store = store
        self.unhealthy_after_s = (
            unhealthy_after_s if unhealthy_after_s is not None else store.settings.write.unhealthy_after_s
        )
        self._lock = threading.Lock()
        self._probe: threading.Thread | None = None
        self._probe_started = 0.0
        self._probe_done = threading.Event()
        self._probe_result: tuple[float, str | None] | None = None  # (finished at, error or None)

    def status(self, *, probe: bool = True) -> OperationalStatus:
        """The current status; with ``probe``, also whether the lake answers (at most ``PROBE_TIMEOUT_S``)."""
        commit = self.store.commit_health()
        reasons = self._commit_reasons(commit)
        try:  # an object-store log whose lease lapsed or was taken: every write would be refused
            self.store.wal.check_writable()
        except LakeopsError as exc:
            reasons.append(Reason("log", str(exc)))
        if probe:
            error = self._probe_lake()
            if error is not None:
                reasons.append(
                    Reason("lake", f"the lake at {self.store.settings.warehouse()} cannot be reached: {error}")
                )
        return OperationalStatus(
            commit=commit, queued_rows=self.store.queued_rows(), wal_bytes=_wal_bytes(self.store), reasons=reasons
        )

    def _commit_reasons(self, commit: CommitHealth) -> list[Reason]:
        reasons: list[Reason] = []
        limit = self.unhealthy_after_s
        if commit.first_failure_at is not None and commit.at - commit.first_failure_at >= limit:
            reasons.append(
                Reason(
                    "commits",
                    f"commits have failed for {commit.at - commit.first_failure_at:.0f} s "
                    f"(since {_iso(commit.first_failure_at)}; limit {limit:g} s); "
                    f"{self.store.queued_rows()} acknowledged rows wait in the write-ahead log; "
                    f"last error: {commit.last_error}",
                )
            )
        if commit.commit_started_at is not None and commit.at - commit.commit_started_at >= limit:
            reasons.append(
                Reason(
                    "commits",
                    f"a commit has been running for {commit.at - commit.commit_started_at:.0f} s (limit {limit:g} s)",
                )
            )
        return reasons

    def _probe_lake(self) -> str | None:
        """None if the lake answered a recent probe, else what went wrong."""
        with self._lock:
            now = time.monotonic()
            result = self._probe_result
            if result is not None and now - result[0] < PROBE_EVERY_S and self._probe is None:
                return result[1]
            if self._probe is None:
                self._probe_done.clear()
                self._probe_started = now
                self._probe = threading.Thread(target=self._run_probe, name="lakeops-health-probe", daemon=True)
                self._probe.start()
            started = self._probe_started
        self._probe_done.wait(max(0.0, PROBE_TIMEOUT_S - (time.monotonic() - started)))
        with self._lock:
            if self._probe is not None:  # still waiting for an answer
                return f"no answer within {PROBE_TIMEOUT_S:g} s"
            assert self._probe_result is not None
            return self._probe_result[1]

    def _run_probe(self) -> None:
        error: str | None = None
        try:
            self.store.catalog.load_table((self.store.settings.namespace, TABLES[0].name))
        except Exception as exc:  # any failure means "cannot be reached"; the message says which
            error = self.store.settings.redact(f"{type(exc).__name__}: {exc}")[:500]
        with self._lock:
            self._probe_result = (time.monotonic(), error)
            self._probe = None
            self._probe_done.set()


def _wal_bytes(store: IcebergStore) -> int:
    """Bytes of this process's write-ahead log (on disk, or in the object store)."""
    return store.wal.size_bytes()


def _iso(epoch_s: float | None) -> str | None:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat() if epoch_s is not None else None
