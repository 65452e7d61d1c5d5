"""The write-ahead log: how a write becomes durable before it becomes an Iceberg commit.

An Iceberg commit costs tens of milliseconds, so acknowledging each write with its own commit
is out of the question. Instead each write is appended to a local log and fsync'd; concurrent
writers share one fsync (group commit), so a burst of callers pays for one disk flush. A
background committer later turns everything logged into one Iceberg append per table and
records, in the same commit, the log position it reaches. Recovery replays what lies beyond.

Written here rather than borrowed: no maintained Python package offers an fsync'd, segmented,
CRC-checked record log with group commit and a process lock (sqlite's WAL is a page log, not
a record log we can replay into Iceberg), and the format is ~150 lines.

Layout: ``<wal_root>/<writer_id>/`` holds ``lock`` (an exclusive ``flock`` while a process
owns the log) and segments ``<first_seq:020d>.log``. A record is
``[u32 payload length][u32 crc32 of seq+payload][u64 seq][payload]``. A torn record at the
tail (a crash mid-write) fails its length or CRC check and is cut off on open.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIQ")
_SEGMENT_BYTES = 64 * 1024 * 1024


class RecordLog(Protocol):
    """What the store needs of a write-ahead log: this module's local log or ``lakeops/object_wal.py``."""

    @property
    def writer_id(self) -> str:
        """The log's identity, recorded in the tables' marks."""
        ...

    @property
    def last_seq(self) -> int:
        """The highest sequence number appended so far."""
        ...

    def append(self, payload: bytes) -> tuple[int, int]:
        """Add a record; ``(seq, ticket)``."""
        ...

    def sync(self, ticket: int) -> None:
        """Make every record up to ``ticket`` durable."""
        ...

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """Records after ``after_seq``, in order."""
        ...

    def truncate_through(self, seq: int) -> int:
        """Forget records committed through ``seq``."""
        ...

    def check_writable(self) -> None:
        """Raise unless this process may still acknowledge and commit the log's records.

        Raises:
            BackendUnavailableError: another process took the log over (the object log's lease).
        """
        ...

    def orphans(self) -> Sequence[RecordLog]:
        """Logs of dead processes this one drains (taken: the caller commits them, then ``discard``)."""
        ...

    def size_bytes(self) -> int:
        """Bytes the log holds."""
        ...

    def close(self, *, committed: bool = False) -> None:
        """Flush and release (``committed``: every record is in the tables)."""
        ...

    def discard(self) -> None:
        """Delete a drained log."""
        ...


@dataclass(frozen=True)
class _Segment:
    first_seq: int
    path: Path


class WriteAheadLog:
    """A per-process, append-only record log with group-committed fsync.

    One process owns a log directory at a time. ``open`` adopts an orphaned log (one whose
    owner died) so its records are replayed, or creates a fresh one.
    """

    def __init__(self, directory: Path, lock_fd: int, *, fsync: bool = True) -> None:
        self.directory = directory
        self.writer_id = directory.name
        self._lock_fd = lock_fd
        self._fsync = fsync
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._segments = self._scan_and_repair()
        self._next_seq = self._last_seq() + 1
        if not self._segments:
            self._segments.append(_Segment(self._next_seq, directory / f"{self._next_seq:020d}.log"))
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._written = 0  # bytes written to the current segment by this process (monotonic counter)
        self._synced = 0
        self._size = os.fstat(self._fd).st_size
        self._dir_synced = False
        self._retired_fds: list[int] = []

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path, *, fsync: bool = True) -> WriteAheadLog:
        """Adopt an orphaned log under ``root`` or start a new one, and lock it for this process."""
        root.mkdir(parents=True, exist_ok=True)
        for candidate in sorted(p for p in root.iterdir() if p.is_dir()):
            fd = _try_lock(candidate)
            if fd is not None:
                log.info("adopting write-ahead log %s", candidate.name)
                return cls(candidate, fd, fsync=fsync)
        directory = root / uuid.uuid4().hex[:16]
        directory.mkdir()
        fd = _try_lock(directory)
        if fd is None:  # pragma: no cover - a fresh random directory cannot be locked by anyone else
            raise RuntimeError(f"cannot lock new write-ahead log {directory}")
        return cls(directory, fd, fsync=fsync)

    @classmethod
    def claim_orphans(cls, root: Path, *, keep: str) -> list[WriteAheadLog]:
        """Lock every other log under ``root`` whose owner is gone, so its records can be drained."""
        claimed = []
        for candidate in sorted(p for p in root.iterdir() if p.is_dir() and p.name != keep):
            fd = _try_lock(candidate)
            if fd is not None:
                claimed.append(cls(candidate, fd, fsync=True))
        return claimed

    def size_bytes(self) -> int:
        """Bytes of the log's segment files."""
        total = 0
        for segment in self.directory.glob("*.log"):
            try:
                total += segment.stat().st_size
            except FileNotFoundError:  # truncated by the committer meanwhile
                continue
        return total

    def check_writable(self) -> None:
        """Always writable: the ``flock`` held since ``open`` keeps any other process out."""

    def orphans(self) -> list[WriteAheadLog]:
        """The other logs of the same home whose owners are gone, locked for draining."""
        return WriteAheadLog.claim_orphans(self.directory.parent, keep=self.writer_id)

    def discard(self) -> None:
        """Delete a drained log (every record is committed) and release it."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _scan_and_repair(self) -> list[_Segment]:
        segments = sorted(
            (_Segment(int(p.stem), p) for p in self.directory.glob("*.log") if p.stem.isdigit()),
            key=lambda s: s.first_seq,
        )
        if segments:
            # Only the last segment can have a torn tail: earlier ones were complete when rotated.
            last = segments[-1]
            good = 0
            for _seq, _payload, end in _read_records(last.path):
                good = end
            if good < last.path.stat().st_size:
                log.warning("write-ahead log %s: cutting a torn tail at byte %d", last.path, good)
                with last.path.open("r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
        return segments

    def _last_seq(self) -> int:
        for segment in reversed(self._segments):
            last = None
            for seq, _payload, _end in _read_records(segment.path):
                last = seq
            if last is not None:
                return last
        return self._segments[-1].first_seq - 1 if self._segments else 0

    # -- writing ---------------------------------------------------------------------------

    def append(self, payload: bytes) -> tuple[int, int]:
        """Write one record (not yet durable). Returns ``(seq, ticket)``; pass the ticket to ``sync``.

        Callers that need records in the log in the same order as some in-memory change hold
        their own lock around ``append`` and that change; ``sync`` is then called outside it.
        """
        with self._append_lock:
            seq = self._next_seq
            if self._size >= _SEGMENT_BYTES:
                self._rotate(seq)
            record = pack_record(seq, payload)
            os.write(self._fd, record)
            self._next_seq = seq + 1
            self._size += len(record)
            self._written += len(record)
            return seq, self._written

    def sync(self, ticket: int) -> None:
        """Block until everything up to ``ticket`` is on disk. One fsync serves every waiter."""
        if not self._fsync or self._synced >= ticket:
            return
        with self._sync_lock:
            if self._synced >= ticket:
                return  # another caller's fsync covered us: that is the group commit
            with self._append_lock:
                target, fd = self._written, self._fd
            os.fdatasync(fd)
            with self._append_lock:
                retired, self._retired_fds = self._retired_fds, []
            for old in retired:
                os.close(old)
            if not self._dir_synced:
                _fsync_dir(self.directory)
                self._dir_synced = True
            self._synced = max(self._synced, target)

    def _rotate(self, seq: int) -> None:
        os.fdatasync(self._fd)
        self._synced = self._written
        # A concurrent ``sync`` may still be flushing this descriptor: close it there, not here.
        self._retired_fds.append(self._fd)
        segment = _Segment(seq, self.directory / f"{seq:020d}.log")
        self._segments.append(segment)
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0
        self._dir_synced = False

    # -- reading and trimming --------------------------------------------------------------

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield ``(seq, payload)`` for every record with ``seq > after_seq``, in order."""
        with self._append_lock:
            segments = list(self._segments)
        for i, segment in enumerate(segments):
            nxt = segments[i + 1].first_seq if i + 1 < len(segments) else None
            if nxt is not None and nxt - 1 <= after_seq:
                continue
            for seq, payload, _end in _read_records(segment.path):
                if seq > after_seq:
                    yield seq, payload

    def truncate_through(self, seq: int) -> int:
        """Delete whole segments whose records all have ``seq`` at most ``seq``. Returns segments removed."""
        removed = 0
        with self._append_lock:
            while len(self._segments) > 1 and self._segments[1].first_seq - 1 <= seq:
                self._segments.pop(0).path.unlink(missing_ok=True)
                removed += 1
            if self._segments and self._next_seq - 1 <= seq and self._size > 0:
                # Everything is committed: start a fresh segment so the old one can go.
                old = self._segments[-1]
                self._rotate(self._next_seq)
                self._segments.remove(old)
                old.path.unlink(missing_ok=True)
                removed += 1
        return removed

    @property
    def last_seq(self) -> int:
        """The highest sequence number written so far."""
        return self._next_seq - 1

    def close(self, *, committed: bool = False) -> None:  # noqa: ARG002 - the lock says it all here
        """Flush, close and release the lock (another process may then adopt this log)."""
        with self._append_lock:
            if self._fsync:
                os.fdatasync(self._fd)
            for fd in [*self._retired_fds, self._fd]:
                os.close(fd)
            self._retired_fds = []
        os.close(self._lock_fd)


def _try_lock(directory: Path) -> int | None:
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_records(path: Path) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(seq, payload, end_offset)`` for each intact record; stop at the first torn one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    yield from parse_records(data)


def pack_record(seq: int, payload: bytes) -> bytes:
    """One record as the log stores it: header (length, crc32 of seq+payload, seq), then the payload."""
    return _HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seq))), seq) + payload


def parse_records(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(seq, payload, end_offset)`` for each intact record of ``data``; stop at the first torn one."""
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc, seq = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        end = start + length
        if end > len(data):
            return
        payload = data[start:end]
        if zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seq))) != crc:
            return
        yield seq, payload, end
        pos = end
