"""The write-ahead log kept in the object store: a replica whose disk holds nothing an ack depends on.

Same records and the same contract as ``lakeops/wal.py`` (``append`` then ``sync`` before the
acknowledgement; ``replay``, ``truncate_through``), but a *sync* is one object: every record
appended since the previous sync goes into one segment object,
``<warehouse>/_wal/<log name>/<first seq:020d>.seg``, created only if absent (S3 ``PUT`` with
``If-None-Match: *``; ``file://``: fsync'd file hard-linked into place, see
``catalog/versions.py``). Concurrent writers share that one request (group commit): while a
``PUT`` is in flight, new records gather for the next one. The acknowledgement costs one
object-store round trip instead of an fsync (``benchmarks/bench_catalog.py --log`` measures both).

The log has a *name* (``write.log_name``, default the host name), not a random id: a replica that
dies is replaced by one with the same name (a StatefulSet ordinal, a compose service's
host name), on any host and with an empty disk, and it replays the log from the object store.
One process per name: two processes writing one log are fenced, because both would create the
segment of the same next sequence number and the create-if-absent lets only one of them succeed;
the other's write fails (``LogFencedError``) instead of being acknowledged.

Leases: a replica that dies and never comes back under its name would leave acknowledged rows
in its segments that nobody commits. So each log has a lease, ``<log name>/lease/v<N>.json``: the
versioned create-only objects of ``catalog/versions.py`` (version N+1 exists once, so whoever creates
it holds the lease; no ``If-Match`` is needed and ``file://`` works the same). The holder creates
the next version every ``lease_s / 3`` seconds. Expiry is judged by the *observer's* monotonic
clock, never by comparing wall clocks across hosts: another replica that sees the same latest
version for ``lease_s`` seconds of its own time takes the log over by creating the next version
(only one taker can), replays it, commits its rows on the tables' marks of that log (rows the dead
replica had committed are skipped, so each row lands once), then writes a *released* version
carrying the log's last sequence number and deletes the segments. The holder, in turn, counts its
lease valid for ``lease_s`` from the moment it *started* its last successful renewal; it refuses
to acknowledge (before and after the segment ``PUT``) or to commit once that has passed or a
renewal found the next version taken. Because the observer first saw that version after it was
created, the holder's validity ends before any taker may act (given clocks that tick at the same
rate, the usual lease assumption). A process that starts with a log's name takes its lease at once
if it was released (a clean stop, ``close(committed=True)``), after ``lease_s`` without renewal if
its holder of that name died, and refuses to start if it sees the lease renewed (a live process has
that name: two writers of one log are fenced); if another replica is draining the log, it waits for
the release and continues the sequence from it. A log with no lease (written before leases existed)
is never taken.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from catalog.versions import Version, Versions, VersionStore, VersionStoreError
from lakeops.errors import BackendUnavailableError
from lakeops.wal import pack_record, parse_records

log = logging.getLogger(__name__)

WAL_DIR = "_wal"
LEASE_DIR = "lease"
DEFAULT_LEASE_S = 10.0
_SUFFIX = ".seg"
_KEEP_LEASE_VERSIONS = 2


class LogFencedError(BackendUnavailableError):
    """Another process writes this log (same ``write.log_name``): this one may not acknowledge."""


def default_log_name() -> str:
    """The host name: stable across restarts of a container, and the StatefulSet convention."""
    return socket.gethostname() or "lakeops"


@dataclass(frozen=True)
class _Segment:
    first_seq: int
    last_seq: int
    key: str
    size: int


class _Lease:
    """The lease on one log: create-only versions under ``<log name>/lease/``; renewed on a thread while held."""

    def __init__(self, store: VersionStore, log_name: str, *, lease_s: float, holder: str) -> None:
        self.versions = Versions(store)
        self.prefix = f"{log_name}/{LEASE_DIR}/"
        self.log_name = log_name
        self.lease_s = lease_s
        self.holder = holder  # the log name of the process holding it (its own, or a taker's)
        self.owner = uuid.uuid4().hex  # this process's claim
        self.current: Version | None = None
        self.lost: str | None = None  # why the lease is no longer ours
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._mine: list[str] = []

    def latest(self) -> Version | None:
        return self.versions.latest(self.prefix)

    def _body(self, state: str, **extra: Any) -> dict[str, Any]:
        return {
            "log": self.log_name,
            "holder": self.holder,
            "owner": self.owner,
            "state": state,
            "lease_s": self.lease_s,
            "at": time.time(),  # for people reading the object; expiry never compares wall clocks
            **extra,
        }

    def _put(self, current: Version | None, state: str, **extra: Any) -> bool:
        """Create the version after ``current``; if created, the lease is ours for ``lease_s`` from before the PUT."""
        started = time.monotonic()
        made = self.versions.put_next(self.prefix, current, self._body(state, **extra))
        if made is None:
            return False
        with self._lock:
            self.current = made
            self._valid_until = started + self.lease_s
            self._mine.append(made.key)
            stale = self._mine[:-_KEEP_LEASE_VERSIONS] if len(self._mine) > 4 * _KEEP_LEASE_VERSIONS else []
            self._mine = self._mine[len(stale) :]
        if current is not None and current.older:
            stale = [*stale, *current.older]  # versions of earlier holders
        if stale:
            with contextlib.suppress(VersionStoreError, OSError):  # housekeeping; the next round retries
                self.versions.store.delete(stale)
        return True

    def acquire_own(self) -> int:
        """Hold the lease of our own log. Returns the sequence number it was released at (0 if none).

        Released (a clean stop, or a taker that drained it) or never leased: taken at once. Held under
        this name: taken once it has gone unrenewed for its ``lease_s`` (the previous process of this
        name died), refused if it is renewed meanwhile (a live process has this name). Held by a taker
        that is draining it: waited for until released or expired.

        Raises:
            LogFencedError: a live process holds the log under this name.
        """
        observed: tuple[str, float] | None = None
        while True:
            current = self.latest()
            body = current.body if current is not None else {}
            if observed is not None and current is not None and observed[0] != current.key:
                if body.get("holder") == self.holder and body.get("state") != "released":
                    raise LogFencedError(
                        f"another live process holds the write-ahead log {self.log_name!r} in "
                        f"{self.versions.store.root}: give each process its own write.log_name"
                    )
                observed = None
            expired = (
                current is not None
                and observed is not None
                and time.monotonic() - observed[1] >= float(body.get("lease_s", self.lease_s))
            )
            if current is None or body.get("state") == "released" or expired:
                if self._put(current, "held"):
                    return int(body.get("last_seq", 0)) if body.get("state") == "released" else 0
                continue  # somebody created that version first: look again
            if observed is None:
                observed = (current.key, time.monotonic())
                log.info(
                    "write-ahead log %s is held by %s; waiting up to %s s for its lease to lapse",
                    self.log_name,
                    body.get("holder"),
                    body.get("lease_s", self.lease_s),
                )
            time.sleep(min(0.2, self.lease_s / 4))

    def take(self, current: Version) -> bool:
        """Take an expired lease over (only one taker's create succeeds)."""
        return self._put(current, "held", taken_from=current.body.get("holder"))

    def release(self, last_seq: int) -> None:
        """Give the lease up, recording where the log's sequence stands (its segments are going)."""
        self.stop()
        with self._lock:
            current = self.current
        if self.lost is None and not self._put(current, "released", last_seq=last_seq):
            self.lost = "the lease was taken while being released"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._renew, name=f"lakeops-lease-{self.log_name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.lease_s)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                current = self.current
            try:
                if not self._put(current, "held"):
                    self.lost = f"another process took the lease on the write-ahead log {self.log_name!r}"
                    log.error("%s; this process stops acknowledging writes to it", self.lost)
                    return
            except (VersionStoreError, OSError) as exc:  # keep trying; validity runs out meanwhile
                log.warning("could not renew the lease on write-ahead log %s: %s", self.log_name, exc)

    def check(self) -> None:
        """Raise unless the lease is held and within its validity.

        Raises:
            LogFencedError: the lease was taken, or could not be renewed in time.
        """
        if self.lost is not None:
            raise LogFencedError(f"{self.lost}: restart this replica to continue")
        if time.monotonic() >= self._valid_until:
            raise LogFencedError(
                f"the lease on the write-ahead log {self.log_name!r} could not be renewed within {self.lease_s:g} s"
            )


class ObjectWriteAheadLog:
    """A named record log in the object store, with group-committed create-only segment objects."""

    def __init__(self, store: VersionStore, name: str, *, lease: _Lease | None = None, released_seq: int = 0) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"invalid write-ahead log name {name!r}")
        self.store = store
        self.writer_id = name
        self._lease = lease
        self._observed: dict[str, tuple[str, float]] = {}  # other logs: (latest lease key, first seen at)
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._pending: list[bytes] = []  # records appended, not yet in a segment
        self._pending_first = 0
        self._bodies: dict[int, bytes] = {}  # segments read at open, kept for the first replay
        self._segments = self._scan()
        self._next_seq = max(self._segments[-1].last_seq if self._segments else 0, released_seq) + 1
        self._written = 0  # records appended by this process (the ticket counter)
        self._synced = 0

    @classmethod
    def open(cls, store: VersionStore, name: str, *, lease_s: float = DEFAULT_LEASE_S) -> ObjectWriteAheadLog:
        """Open (or start) the log ``name`` under its lease: its segments are read for replay."""
        lease = _Lease(store, name, lease_s=lease_s, holder=name)
        released = lease.acquire_own()
        lease.start()
        return cls(store, name, lease=lease, released_seq=released)

    def _scan(self) -> list[_Segment]:
        segments = []
        keys = sorted(k for k in self.store.list(f"{self.writer_id}/") if k.endswith(_SUFFIX))
        for key in keys:
            first = int(key.rsplit("/", 1)[-1][: -len(_SUFFIX)])
            data = self.store.get(key)
            if data is None:  # truncated since the listing
                continue
            records = list(parse_records(data))
            if not records:
                continue
            self._bodies[first] = data
            segments.append(_Segment(first, records[-1][0], key, len(data)))
        return sorted(segments, key=lambda s: s.first_seq)

    # -- writing ---------------------------------------------------------------------------

    def append(self, payload: bytes) -> tuple[int, int]:
        """Add one record (not yet durable). Returns ``(seq, ticket)``; pass the ticket to ``sync``."""
        with self._append_lock:
            seq = self._next_seq
            if not self._pending:
                self._pending_first = seq
            self._pending.append(pack_record(seq, payload))
            self._next_seq = seq + 1
            self._written += 1
            return seq, self._written

    def sync(self, ticket: int) -> None:
        """Block until the record of ``ticket`` is in a segment object. One ``PUT`` serves every waiter.

        Raises:
            LogFencedError: another process wrote this log's next segment.
            BackendUnavailableError: the object store refused or could not be reached.
        """
        if self._synced >= ticket:
            return
        with self._sync_lock:
            if self._synced >= ticket:
                return  # another caller's PUT covered us: that is the group commit
            with self._append_lock:
                records, first, target = self._pending, self._pending_first, self._written
                self._pending = []
            if not records:
                self._synced = max(self._synced, target)
                return
            key = f"{self.writer_id}/{first:020d}{_SUFFIX}"
            body = b"".join(records)
            try:
                self.check_writable()
                created = self.store.create(key, body, contended=False)  # only the lease holder writes here
            except LogFencedError:
                self._put_back(records, first)
                raise
            except (VersionStoreError, OSError) as exc:
                self._put_back(records, first)
                raise BackendUnavailableError(f"cannot write the write-ahead log to {self.store.root}: {exc}") from exc
            if not created:
                self._put_back(records, first)
                raise LogFencedError(
                    f"another process writes the write-ahead log {self.writer_id!r} in {self.store.root}: "
                    "give each replica its own write.log_name"
                )
            # Written, but acknowledged only if the lease did not lapse meanwhile (a taker may have read
            # the log before this segment landed): the records stay in the log, unacknowledged.
            self.check_writable()
            last = first + len(records) - 1
            with self._append_lock:
                self._segments.append(_Segment(first, last, key, len(body)))
            self._synced = max(self._synced, target)

    def _put_back(self, records: list[bytes], first: int) -> None:
        with self._append_lock:
            self._pending = records + self._pending
            self._pending_first = first

    # -- reading and trimming --------------------------------------------------------------

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield ``(seq, payload)`` for every record in a segment with ``seq > after_seq``, in order."""
        with self._append_lock:
            segments = list(self._segments)
        for segment in segments:
            if segment.last_seq <= after_seq:
                continue
            data = self._bodies.pop(segment.first_seq, None) or self.store.get(segment.key) or b""
            for seq, payload, _end in parse_records(data):
                if seq > after_seq:
                    yield seq, payload
        self._bodies.clear()

    def truncate_through(self, seq: int) -> int:
        """Delete the segment objects whose records all have ``seq`` at most ``seq``. Returns how many.

        The newest segment stays, committed or not: it carries the log's position, so a process that
        opens the log next continues the sequence (the tables' marks say how far each log is committed)
        and collides with a concurrent writer of the same name at the next segment.
        """
        with self._append_lock:
            newest = self._segments[-1] if self._segments else None
            done = [s for s in self._segments if s.last_seq <= seq and s is not newest]
            if not done:
                return 0
            self._segments = [s for s in self._segments if s not in done]
        try:
            self.store.delete(s.key for s in done)
        except (VersionStoreError, OSError) as exc:  # housekeeping: they are replayed as no-ops if left
            log.warning("could not delete %d committed log segments: %s", len(done), exc)
        return len(done)

    @property
    def last_seq(self) -> int:
        """The highest sequence number appended so far."""
        return self._next_seq - 1

    def size_bytes(self) -> int:
        """Bytes in the log's segment objects and waiting for the next one."""
        with self._append_lock:
            return sum(s.size for s in self._segments) + sum(len(r) for r in self._pending)

    def check_writable(self) -> None:
        """Raise unless this process holds the log's lease (it may append, acknowledge and commit).

        Raises:
            LogFencedError: the lease was taken by another process or lapsed.
        """
        if self._lease is not None:
            self._lease.check()

    def orphans(self) -> list[ObjectWriteAheadLog]:
        """Other replicas' logs whose lease expired, taken over (leased to this process) for draining.

        A lease counts as expired once this process has seen the same latest version of it for the
        holder's ``lease_s`` on its own clock; so a log is never taken on the first look.
        """
        if self._lease is None:
            return []
        names = {key.split("/", 1)[0] for key in self.store.list("") if "/" in key} - {self.writer_id}
        now = time.monotonic()
        taken: list[ObjectWriteAheadLog] = []
        for name in sorted(names):
            lease = _Lease(self.store, name, lease_s=self._lease.lease_s, holder=self.writer_id)
            current = lease.latest()
            if current is None or current.body.get("state") == "released":
                self._observed.pop(name, None)  # no lease (a log from before leases), or drained
                continue
            seen = self._observed.get(name)
            if seen is None or seen[0] != current.key:
                self._observed[name] = (current.key, now)
                continue
            if now - seen[1] < float(current.body.get("lease_s", self._lease.lease_s)):
                continue
            if not lease.take(current):
                continue  # another replica took it first
            self._observed.pop(name, None)
            lease.start()  # draining may take longer than a lease
            log.warning("took over the write-ahead log %s (its lease expired) to commit its rows", name)
            taken.append(ObjectWriteAheadLog(self.store, name, lease=lease))
        return taken

    def close(self, *, committed: bool = False) -> None:
        """Write out what is pending (a clean stop acknowledges nothing more, but loses nothing either).

        ``committed``: every record is in the tables, so the lease is released with the log's position
        and a process with this name starts at once. Otherwise the lease lapses, and another replica
        drains what is left unless a process with this name comes back first.
        """
        try:
            if self._pending:
                self.sync(self._written)
        finally:
            if self._lease is not None:
                if committed and self._lease.lost is None:
                    with contextlib.suppress(LogFencedError, VersionStoreError, OSError):
                        self._lease.release(self.last_seq)
                self._lease.stop()

    def discard(self) -> None:
        """Delete the whole log (every record is committed) and release its lease with its position."""
        if self._lease is not None:
            self._lease.check()
        self.close(committed=True)
        if self._lease is not None and self._lease.lost is not None:
            raise LogFencedError(self._lease.lost)
        with self._append_lock:
            keys, self._segments = [s.key for s in self._segments], []
        self.store.delete(keys)
