"""The client's write path: a bounded in-memory queue and one background sender thread.

The training loop only appends to a ``collections.deque`` (atomic under the GIL, no lock):
a metric point is a plain tuple ``(run_id, key, value, timestamp_ms, step)``; params, tags and
flush requests are small objects in the same queue, so everything is shipped in the order it
was logged. The sender drains up to ``batch_size`` items at a time, turns consecutive points
into one Arrow table and ships it (``POST /api/v1/metrics/ingest``, or straight into the
store's write-ahead log when embedded).

Policy when things go wrong:

- **Server unreachable** (connection refused, timeout, 502/503/504, ``BackendUnavailableError``,
  ``ConflictError``): the batch is kept and retried with exponential backoff (50 ms doubling
  to ``max_backoff_s``); a ``flush()`` retries at once. Nothing is dropped, so points logged
  while the server restarts arrive once it is back.
- **Backpressure**: the queue holds at most ``max_buffered`` items. When it is full,
  ``log_metric`` *blocks* until the sender has made room — memory stays bounded (queue plus
  one batch in flight) and no point is ever silently dropped. While the server is down for
  long, training therefore pauses once the buffer is full rather than losing data.
- **Refused batch** (400/404/409: a bad key, a deleted run): retrying cannot help; the batch is
  dropped, the error logged, and raised by the next ``flush()`` (and so at the end of the run).
- **Exit**: ``Client.close()`` (called at interpreter exit and by the run's ``with`` block)
  flushes with a timeout; what cannot be shipped by then is reported with its count.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from lakeops.errors import BackendUnavailableError, ConflictError, InvalidArgumentError, LakeopsError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("lakeops.client")

Point = tuple[str, str, float, int, int]
RETRYABLE = (BackendUnavailableError, ConflictError)


class Call:
    """A non-metric write (params, tags) to make in queue order."""

    __slots__ = ("describe", "fn")

    def __init__(self, fn: Callable[[], object], describe: str) -> None:
        self.fn = fn
        self.describe = describe


class FlushMarker:
    """Set once everything queued before it has been shipped (or refused)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


def points_table(points: list[Point]) -> pa.Table:
    """Metric points as the ingest endpoint's Arrow table (run ids and keys dictionary-encoded).

    Columns are built from numpy buffers with ``Array.from_buffers``: ``pa.array`` on Python
    objects imports pandas on first use (~1-3 s), which a background thread must not do — at
    interpreter exit such an import fails and would lose the last batch. ~70 ms per 100k points.
    """
    import numpy as np
    import pyarrow as pa

    n = len(points)
    run_ids, keys, values, stamps, steps = zip(*points, strict=True)
    return pa.table(
        {
            "run_id": _dictionary(run_ids, n),
            "key": _dictionary(keys, n),
            "value": _fixed(values, n, np.float64, pa.float64()),
            "timestamp": _fixed(stamps, n, np.int64, pa.int64()),
            "step": _fixed(steps, n, np.int64, pa.int64()),
        }
    )


def _fixed(values: Iterable[Any], n: int, np_type: Any, pa_type: pa.DataType) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    data = np.fromiter(values, dtype=np_type, count=n)
    return pa.Array.from_buffers(pa_type, n, [None, pa.py_buffer(data)])


def _strings(strings: list[str]) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    encoded = [s.encode() for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def _dictionary(column: Sequence[str], n: int) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    codes: dict[str, int] = {}
    indices = _fixed((codes.setdefault(v, len(codes)) for v in column), n, np.int32, pa.int32())
    return pa.DictionaryArray.from_arrays(indices, _strings(list(codes)))


class Sender:
    """Owns the queue and the thread that empties it."""

    def __init__(
        self,
        ingest: Callable[[pa.Table], int],
        *,
        max_buffered: int = 500_000,
        batch_size: int = 100_000,
        interval_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ) -> None:
        if max_buffered < 1 or batch_size < 1:
            raise InvalidArgumentError(f"max_buffered ({max_buffered}) and batch_size ({batch_size}) must be positive")
        self.queue: deque[Point | Call | FlushMarker] = deque()
        self.max_buffered = max_buffered
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.shipped_points = 0
        self._ingest = ingest
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._errors: list[LakeopsError] = []
        self._errors_lock = threading.Lock()
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._in_flight = 0
        # Import (and exercise) what the thread needs now, in the caller's thread: imports in a
        # background thread fail once the interpreter is shutting down.
        points_table([("", "", 0.0, 0, 0)])
        self._thread = threading.Thread(target=self._loop, name="lakeops-sender", daemon=True)
        self._thread.start()

    # -- producer side ---------------------------------------------------------------------

    def wait_for_room(self) -> None:
        """Block the caller while the queue is full (backpressure)."""
        self._wake.set()
        with self._room:
            while len(self.queue) >= self.max_buffered and not self._abandon.is_set():
                self._room.wait(0.5)

    def submit(self, item: Call) -> None:
        """Queue a call (rare: not the hot path); waits for room like a metric point."""
        if self._stopping.is_set():
            raise InvalidArgumentError("The client is closed; connect again to log more")
        if len(self.queue) >= self.max_buffered:
            self.wait_for_room()
        self.queue.append(item)
        self._wake.set()

    def pending(self) -> int:
        """Items queued or in flight."""
        return len(self.queue) + self._in_flight

    def flush(self, timeout: float | None) -> None:
        """Wait until everything queued so far is shipped; raise what the server refused meanwhile.

        Raises:
            BackendUnavailableError: not everything could be shipped within ``timeout`` seconds
                (it stays queued and keeps being retried).
            LakeopsError: the first refused write since the last flush (the others are logged).
        """
        if self._stopping.is_set():
            raise InvalidArgumentError("The client is closed; connect again to log more")
        marker = FlushMarker()
        self.queue.append(marker)  # past the bound on purpose: a flush must never wait for room
        self._wake.set()
        if not marker.done.wait(timeout):
            raise BackendUnavailableError(
                f"Could not ship {self.pending()} buffered items within {timeout}s; they stay queued and are retried"
            )
        self.raise_errors()

    def raise_errors(self) -> None:
        """Raise (and forget) the first refused write recorded since the last call."""
        with self._errors_lock:
            errors, self._errors = self._errors, []
        if errors:
            raise errors[0]

    def close(self, timeout: float | None) -> int:
        """Ship what is queued (within ``timeout``), stop the thread; returns how many items were lost."""
        if self._stopping.is_set():
            return 0
        marker = FlushMarker()
        self.queue.append(marker)
        self._wake.set()
        shipped = marker.done.wait(timeout)
        self._stopping.set()
        lost = 0 if shipped else self.pending()
        if lost:
            self._abandon.set()
        self._wake.set()
        self._thread.join(timeout=10)
        return lost

    # -- the sender thread -------------------------------------------------------------------

    def _loop(self) -> None:
        queue = self.queue
        while True:
            if len(queue) < self.batch_size and not self._stopping.is_set():
                self._wake.wait(self.interval_s)
                self._wake.clear()
            count = min(len(queue), self.batch_size)
            if count == 0:
                if self._stopping.is_set():
                    return
                continue
            items = [queue.popleft() for _ in range(count)]
            self._in_flight = count
            with self._room:
                self._room.notify_all()
            try:
                self._process(items)
            except _Abandoned:
                self._in_flight = 0
                return
            except Exception:  # never let the thread die: markers behind a crash would hang flushes
                log.exception("lakeops: the sender failed on %d items", count)
                for item in items:
                    if type(item) is FlushMarker:
                        item.done.set()
            self._in_flight = 0

    def _process(self, items: list[Any]) -> None:
        points: list[Point] = []
        for item in items:
            if type(item) is tuple:
                points.append(item)
                continue
            if points:
                self._ship(points)
                points = []
            if type(item) is FlushMarker:
                item.done.set()
            else:
                self._retry(item.fn, item.describe)
        if points:
            self._ship(points)

    def _ship(self, points: list[Point]) -> None:
        if self._retry(lambda: self._ingest(points_table(points)), f"{len(points)} metric points"):
            self.shipped_points += len(points)

    def _retry(self, fn: Callable[[], object], describe: str) -> bool:
        delay = 0.05
        warned = False
        while True:
            try:
                fn()
            except RETRYABLE as exc:
                if self._abandon.is_set():
                    raise _Abandoned from exc
                if not warned:
                    log.warning("lakeops: %s not shipped yet (%s); retrying with backoff", describe, exc)
                    warned = True
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, self.max_backoff_s)
                continue
            except Exception as exc:  # anything else is final: record it, never kill the thread
                error = exc if isinstance(exc, LakeopsError) else LakeopsError(f"{type(exc).__name__}: {exc}")
                log.error("lakeops: %s refused: %s", describe, error)
                with self._errors_lock:
                    self._errors.append(error)
                return False
            if warned:
                log.warning("lakeops: %s shipped after retrying", describe)
            return True


class _Abandoned(Exception):
    """The client closed while the server was still unreachable."""
