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
the other's write fails (``LogFencedError``) instead of being acknowledged. Logs of other names
are not drained by this process (there is no lease to tell a dead owner from a slow one).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from catalog.versions import VersionStore, VersionStoreError
from lakeops.errors import BackendUnavailableError
from lakeops.wal import pack_record, parse_records

log = logging.getLogger(__name__)

WAL_DIR = "_wal"
_SUFFIX = ".seg"


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


class ObjectWriteAheadLog:
    """A named record log in the object store, with group-committed create-only segment objects."""

    def __init__(self, store: VersionStore, name: str) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"invalid write-ahead log name {name!r}")
        self.store = store
        self.writer_id = name
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._pending: list[bytes] = []  # records appended, not yet in a segment
        self._pending_first = 0
        self._bodies: dict[int, bytes] = {}  # segments read at open, kept for the first replay
        self._segments = self._scan()
        self._next_seq = (self._segments[-1].last_seq if self._segments else 0) + 1
        self._written = 0  # records appended by this process (the ticket counter)
        self._synced = 0

    @classmethod
    def open(cls, store: VersionStore, name: str) -> ObjectWriteAheadLog:
        """Open (or start) the log ``name``: its segments are read for replay."""
        return cls(store, name)

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
                created = self.store.create(key, body)
            except (VersionStoreError, OSError) as exc:
                self._put_back(records, first)
                raise BackendUnavailableError(f"cannot write the write-ahead log to {self.store.root}: {exc}") from exc
            if not created:
                self._put_back(records, first)
                raise LogFencedError(
                    f"another process writes the write-ahead log {self.writer_id!r} in {self.store.root}: "
                    "give each replica its own write.log_name"
                )
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

    def orphans(self) -> list[ObjectWriteAheadLog]:
        """Logs of dead processes this one should drain: none (a replacement takes over by name)."""
        return []

    def close(self) -> None:
        """Write out what is pending (a clean stop acknowledges nothing more, but loses nothing either)."""
        if self._pending:
            self.sync(self._written)

    def discard(self) -> None:
        """Delete the whole log (every record is committed)."""
        self.close()
        with self._append_lock:
            keys, self._segments = [s.key for s in self._segments], []
        self.store.delete(keys)
