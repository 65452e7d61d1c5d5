"""Reads that miss an id another replica just created: refresh from the catalog and try again.

Behind a load balancer, a client that creates a run through replica A and reads it back through
replica B would get a 404 until B's periodic refresh (``write.refresh_interval_s``) picks up A's
commit. This middleware turns that window into a short wait instead: a ``GET`` under ``/api/`` that
answers 404 makes B refresh from the catalog at once (one refresh shared by every request that
missed at the same moment, ``IcebergStore.refresh(newer_than=)``) and run the request again, until
it finds the id or ``write.miss_wait_s`` has passed; then the last answer goes out. An id that
does not exist anywhere is answered 404 after that wait, so the wait is on only where replicas
share a lake (by default with ``write.log=object``, the stateless replica deployment).

A 404 that will be retried is dropped; any other answer streams straight through, so nothing is
buffered.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from lakeops.stores import IcebergStore

_PAUSE_S = 0.05  # between refreshes while the other replica's commit has not landed yet


class RefreshOnMissMiddleware:
    """Retry a ``GET`` that answered 404 after refreshing the store, for up to ``wait_s`` seconds."""

    def __init__(self, app: ASGIApp, *, wait_s: float) -> None:
        self.app = app
        self.wait_s = wait_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.wait_s <= 0
            or scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not str(scope["path"]).startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        store: IcebergStore | None = getattr(scope["app"].state, "store", None)
        deadline = time.monotonic() + self.wait_s
        first = True
        while True:
            missed_at = time.monotonic()
            answer = _Answer(send, may_retry=store is not None and missed_at < deadline)
            await self.app(scope, receive if first else _empty_then(receive), answer.send)
            first = False
            if not answer.missed:
                return
            assert store is not None
            applied = await run_in_threadpool(store.refresh, newer_than=missed_at)
            if time.monotonic() >= deadline:
                # Out of time: one last try on what the refresh brought, answered whatever it is.
                await self.app(scope, _empty_then(receive), send)
                return
            if not applied:
                await asyncio.sleep(min(_PAUSE_S, max(0.0, deadline - time.monotonic())))


class _Answer:
    """Passes a response through, unless it is a 404 that may be retried: then it is dropped."""

    def __init__(self, send: Send, *, may_retry: bool) -> None:
        self._send = send
        self._may_retry = may_retry
        self.missed = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 404 and self._may_retry:
            self.missed = True
        if not self.missed:
            await self._send(message)


def _empty_then(receive: Receive) -> Receive:
    """A ``GET``'s (empty) request body again for a second run of the app, then the real channel."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return again
