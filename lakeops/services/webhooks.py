"""Webhooks (MLflow 3's webhook API): registry events delivered to HTTP endpoints, signed, retried,
logged, and resumed after a restart.

Webhooks are change rows of ``webhook_changes``; every delivery is a row of ``webhook_deliveries``
per state it passes through (pending, retrying, delivered, failed), written through the store's
write-ahead log before the first attempt, so an event acknowledged to the client that caused it is
never lost: on start, deliveries whose latest row is pending or retrying are queued again. One
background thread sends them, in order of when they are due, with exponential backoff between
attempts. Both tables are read on demand (the store's read cache keeps them cheap).

The request is MLflow's: a JSON body ``{entity, action, timestamp, data}``, headers
``X-MLflow-Delivery-Id`` (the same on every attempt of one delivery, so a receiver can drop
repeats), ``X-MLflow-Timestamp`` (Unix seconds) and, with a secret, ``X-MLflow-Signature:
v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue

from catalog.tables import WEBHOOK_CHANGES, WEBHOOK_DELIVERIES
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.search import decode_token, encode_token
from lakeops.stores.epochs import epoch_ints
from lakeops.stores.iceberg import IcebergStore

if TYPE_CHECKING:
    # httpx is imported by what sends a delivery: with its command-line extras (rich, click, pygments)
    # it costs ~0.3 CPU-s, which a server with no webhook to call need not pay at start-up.
    import httpx

log = logging.getLogger(__name__)

# MLflow's events: entity -> actions a webhook may subscribe to.
EVENTS: dict[str, frozenset[str]] = {
    "registered_model": frozenset({"created"}),
    "model_version": frozenset({"created"}),
    "model_version_tag": frozenset({"set", "deleted"}),
    "model_version_alias": frozenset({"created", "deleted"}),
    "prompt": frozenset({"created"}),
    "prompt_version": frozenset({"created"}),
    "prompt_tag": frozenset({"set", "deleted"}),
    "prompt_version_tag": frozenset({"set", "deleted"}),
    "prompt_alias": frozenset({"created", "deleted"}),
}
STATUSES = ("ACTIVE", "DISABLED")
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
MAX_NAME_LENGTH = 256
# Examples sent by "test" (MLflow sends one of the event's payload shape).
_EXAMPLES: dict[str, dict[str, Any]] = {
    "registered_model": {"name": "example_model", "tags": {"example_key": "example_value"}, "description": None},
    "model_version": {
        "name": "example_model",
        "version": "1",
        "source": "models:/123",
        "run_id": "abcd1234abcd5678",
        "tags": {"example_key": "example_value"},
        "description": None,
    },
    "model_version_tag": {"name": "example_model", "version": "1", "key": "example_key", "value": "example_value"},
    "model_version_alias": {"name": "example_model", "alias": "example_alias", "version": "1"},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """A webhook; ``secret`` never leaves the service."""

    webhook_id: str
    name: str
    description: str | None
    url: str
    events: list[tuple[str, str]]
    status: str
    secret: str | None
    creation_timestamp: int
    last_updated_timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TestResult:
    """What a test delivery got back."""

    success: bool
    response_status: int | None = None
    response_body: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class _Delivery:
    delivery_id: str
    webhook_id: str
    entity: str
    action: str
    payload: str
    attempt: int


class WebhookService:
    """Manage webhooks and deliver registry events to them."""

    def __init__(
        self,
        store: IcebergStore,
        *,
        actor: str,
        max_attempts: int = 5,
        first_backoff_s: float = 1.0,
        timeout_s: float = 10.0,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.actor = actor
        self.max_attempts = max_attempts
        self.first_backoff_s = first_backoff_s
        self.timeout_s = timeout_s
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._due: list[tuple[float, int, _Delivery]] = []
        self._counter = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Queue the deliveries a previous process left unfinished, and start sending."""
        for delivery in self._unfinished():
            self._schedule(delivery, time.monotonic())
        self._thread = threading.Thread(target=self._run, name="lakeops-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending (what is not delivered stays pending in the log)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)

    # -- webhooks --------------------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        url: str,
        events: Sequence[tuple[str, str]],
        description: str | None = None,
        secret: str | None = None,
        status: str = "ACTIVE",
    ) -> Webhook:
        """Create a webhook.

        Raises:
            InvalidArgumentError: a bad name, URL, event or status.
        """
        now = self._now_ms()
        hook = Webhook(
            webhook_id=uuid.uuid4().hex,
            name=_name(name),
            description=description,
            url=_url(url),
            events=_events(events),
            status=_status(status),
            secret=secret or None,
            creation_timestamp=now,
            last_updated_timestamp=now,
        )
        self.store.write(lambda _s: {WEBHOOK_CHANGES.name: self._rows(hook, "create", now)})
        return hook

    def get(self, webhook_id: str) -> Webhook:
        """One webhook.

        Raises:
            NotFoundError: no such webhook.
        """
        found = self._webhooks().get(webhook_id)
        if found is None:
            raise NotFoundError(f"Webhook with ID {webhook_id} not found", details={"webhook_id": webhook_id})
        return found

    def list_webhooks(
        self, *, max_results: int = 100, page_token: str | None = None
    ) -> tuple[list[Webhook], str | None]:
        """Webhooks, newest first, one page.

        Raises:
            InvalidArgumentError: a bad page size or token.
        """
        if not 1 <= max_results <= 1000:
            raise InvalidArgumentError(f"Invalid max_results {max_results}: must be between 1 and 1000")
        hooks = sorted(self._webhooks().values(), key=lambda h: (-h.creation_timestamp, h.webhook_id))
        offset = int(decode_token(page_token).get("offset", 0))
        nxt = encode_token({"offset": offset + max_results}) if offset + max_results < len(hooks) else None
        return hooks[offset : offset + max_results], nxt

    def update(
        self,
        webhook_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        url: str | None = None,
        events: Sequence[tuple[str, str]] | None = None,
        secret: str | None = None,
        status: str | None = None,
    ) -> Webhook:
        """Change the fields given.

        Raises:
            NotFoundError: no such webhook.
            InvalidArgumentError: a bad value.
        """
        old = self.get(webhook_id)
        now = self._now_ms()
        new = replace(
            old,
            name=_name(name) if name is not None else old.name,
            description=description if description is not None else old.description,
            url=_url(url) if url is not None else old.url,
            events=_events(events) if events else old.events,
            secret=secret if secret is not None else old.secret,
            status=_status(status) if status is not None else old.status,
            last_updated_timestamp=now,
        )
        self.store.write(lambda _s: {WEBHOOK_CHANGES.name: self._rows(new, "update", now)})
        return new

    def delete(self, webhook_id: str) -> None:
        """Delete a webhook (its delivery log stays).

        Raises:
            NotFoundError: no such webhook.
        """
        old = self.get(webhook_id)
        now = self._now_ms()
        self.store.write(lambda _s: {WEBHOOK_CHANGES.name: self._rows(old, "delete", now, deleted=True)})

    def test(self, webhook_id: str, event: tuple[str, str] | None = None) -> TestResult:
        """Send one example event now (not logged, not retried), as MLflow's test does.

        Raises:
            NotFoundError: no such webhook.
            InvalidArgumentError: an event the webhook does not take.
        """
        import httpx  # deferred: see the imports at the top

        hook = self.get(webhook_id)
        entity, action = _events([event])[0] if event else hook.events[0]
        body = _envelope(entity, action, _EXAMPLES.get(entity, {"name": "example"}))
        try:
            response = self._post(hook, uuid.uuid4().hex, body)
        except httpx.HTTPError as exc:
            return TestResult(success=False, error_message=f"Failed to test webhook: {exc!r}")
        return TestResult(
            success=response.status_code < 400, response_status=response.status_code, response_body=response.text
        )

    # -- events ----------------------------------------------------------------------------------

    def emit(self, entity: str, action: str, payload: Mapping[str, Any]) -> int:
        """Queue an event for every active webhook subscribed to it (durably); returns how many."""
        hooks = [h for h in self._webhooks().values() if h.status == "ACTIVE" and (entity, action) in h.events]
        if not hooks:
            return 0
        body = _envelope(entity, action, dict(payload))
        deliveries = [_Delivery(uuid.uuid4().hex, h.webhook_id, entity, action, body, 0) for h in hooks]
        now = self._now_ms()
        self.store.write(
            lambda _s: {WEBHOOK_DELIVERIES.name: _delivery_rows([(d, "pending", None, None) for d in deliveries], now)}
        )
        for d in deliveries:
            self._schedule(d, time.monotonic())
        return len(deliveries)

    # -- internals -------------------------------------------------------------------------------

    def _schedule(self, delivery: _Delivery, at: float) -> None:
        with self._cond:
            self._counter += 1
            heapq.heappush(self._due, (at, self._counter, delivery))
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._due else max(0.0, self._due[0][0] - time.monotonic()))
                if self._stop:
                    return
                _at, _n, delivery = heapq.heappop(self._due)
            try:
                self._attempt(delivery)
            except Exception:  # the sender must survive one bad delivery; the log keeps its state
                log.exception("webhook delivery %s failed unexpectedly", delivery.delivery_id)

    def _attempt(self, delivery: _Delivery) -> None:
        import httpx  # deferred: see the imports at the top

        attempt = delivery.attempt + 1
        done = replace(delivery, attempt=attempt)
        hook = self._webhooks().get(delivery.webhook_id)
        status_code: int | None = None
        error: str | None = None
        if hook is None or hook.status != "ACTIVE":
            outcome, error = "failed", "the webhook was deleted or disabled"
        else:
            try:
                response = self._post(hook, delivery.delivery_id, delivery.payload)
                status_code = response.status_code
                ok = response.status_code < 400
                error = None if ok else response.text[:500]
            except httpx.HTTPError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
            outcome = "delivered" if ok else ("retrying" if attempt < self.max_attempts else "failed")
        now = self._now_ms()
        self.store.write(
            lambda _s: {WEBHOOK_DELIVERIES.name: _delivery_rows([(done, outcome, status_code, error)], now)}
        )
        if outcome == "retrying":
            self._schedule(done, time.monotonic() + self.first_backoff_s * 2 ** (attempt - 1))

    def _post(self, hook: Webhook, delivery_id: str, body: str) -> httpx.Response:
        import httpx  # deferred: see the imports at the top

        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", DELIVERY_ID_HEADER: delivery_id, TIMESTAMP_HEADER: timestamp}
        if hook.secret:
            headers[SIGNATURE_HEADER] = sign(hook.secret, delivery_id, timestamp, body)
        return httpx.post(hook.url, content=body.encode(), headers=headers, timeout=self.timeout_s)

    def _webhooks(self) -> dict[str, Webhook]:
        rows = self.store.scan_with_pending(
            WEBHOOK_CHANGES.name, AlwaysTrue(), lambda t: pc.is_valid(t["webhook_id"]), cache_key="all"
        )
        rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
        data = rows.to_pydict()
        created = epoch_ints(rows.column("created_at"), "ms", null=0)
        changed = epoch_ints(rows.column("changed_at"), "ms", null=0)
        found: dict[str, Webhook] = {}
        for i, webhook_id in enumerate(data["webhook_id"]):
            if data["is_deleted"][i]:
                found.pop(webhook_id, None)
                continue
            found[webhook_id] = Webhook(
                webhook_id=webhook_id,
                name=data["name"][i],
                description=data["description"][i],
                url=data["url"][i],
                events=[(e["entity"], e["action"]) for e in json.loads(data["events_json"][i])],
                status=data["status"][i],
                secret=data["secret"][i],
                creation_timestamp=created[i],
                last_updated_timestamp=changed[i],
            )
        return found

    def _unfinished(self) -> list[_Delivery]:
        rows = self.store.scan_with_pending(
            WEBHOOK_DELIVERIES.name, AlwaysTrue(), lambda t: pc.is_valid(t["delivery_id"])
        )
        rows = rows.sort_by([("recorded_at", "ascending"), ("attempt", "ascending")])
        latest: dict[str, tuple[_Delivery, str]] = {}
        data = rows.to_pydict()
        for i, delivery_id in enumerate(data["delivery_id"]):
            d = _Delivery(
                delivery_id,
                data["webhook_id"][i],
                data["entity"][i],
                data["action"][i],
                data["payload_json"][i],
                data["attempt"][i],
            )
            latest[delivery_id] = (d, data["status"][i])
        return [d for d, status in latest.values() if status in ("pending", "retrying")]

    def _rows(self, hook: Webhook, operation: str, now: int, *, deleted: bool = False) -> pa.RecordBatch:
        columns = {
            "webhook_id": [hook.webhook_id],
            "name": [hook.name],
            "description": [hook.description],
            "url": [hook.url],
            "events_json": [json.dumps([{"entity": e, "action": a} for e, a in hook.events])],
            "secret": [hook.secret],
            "status": [hook.status],
            "is_deleted": [deleted],
            "created_at": [hook.creation_timestamp * 1000],
            "changed_at": [now * 1000],
            "actor": [self.actor],
            "operation": [operation],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return pa.RecordBatch.from_pydict(columns, schema=WEBHOOK_CHANGES.arrow_schema)


def sign(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    """MLflow's signature: ``v1,`` and the base64 HMAC-SHA256 of ``<delivery id>.<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _envelope(entity: str, action: str, data: dict[str, Any]) -> str:
    return json.dumps({"entity": entity, "action": action, "timestamp": datetime.now(UTC).isoformat(), "data": data})


def _delivery_rows(items: list[tuple[_Delivery, str, int | None, str | None]], now: int) -> pa.RecordBatch:
    columns = {
        "delivery_id": [d.delivery_id for d, _s, _c, _e in items],
        "webhook_id": [d.webhook_id for d, _s, _c, _e in items],
        "entity": [d.entity for d, _s, _c, _e in items],
        "action": [d.action for d, _s, _c, _e in items],
        "payload_json": [d.payload for d, _s, _c, _e in items],
        "status": [s for _d, s, _c, _e in items],
        "attempt": [d.attempt for d, _s, _c, _e in items],
        "response_status": [c for _d, _s, c, _e in items],
        "error": [e for _d, _s, _c, e in items],
        "recorded_at": [now * 1000] * len(items),
    }
    return pa.RecordBatch.from_pydict(columns, schema=WEBHOOK_DELIVERIES.arrow_schema)


def _name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidArgumentError(f"Invalid webhook name {name!r}: 1 to {MAX_NAME_LENGTH} characters")
    return name


def _url(url: object) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgumentError(f"Invalid webhook URL {url!r}: an http:// or https:// URL")
    return str(url)


def _status(status: object) -> str:
    if status not in STATUSES:
        raise InvalidArgumentError(f"Invalid webhook status {status!r}: one of {', '.join(STATUSES)}")
    return str(status)


def _events(events: Sequence[tuple[str, str] | None]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for event in events:
        entity, action = (str(event[0]).lower(), str(event[1]).lower()) if event else ("", "")
        if action not in EVENTS.get(entity, frozenset()):
            valid = ", ".join(f"{e}.{a}" for e, actions in EVENTS.items() for a in sorted(actions))
            raise InvalidArgumentError(f"Invalid webhook event {entity}.{action}; valid events: {valid}")
        out.append((entity, action))
    if not out:
        raise InvalidArgumentError("A webhook needs at least one event")
    return list(dict.fromkeys(out))


# What a registry change is called in an event: (for a model, for a prompt), by kind of change.
_REGISTRY_ENTITIES = {
    "model": ("registered_model", "prompt"),
    "version": ("model_version", "prompt_version"),
    "version_tag": ("model_version_tag", "prompt_version_tag"),
    "alias": ("model_version_alias", "prompt_alias"),
}
PROMPT_TAG = "mlflow.prompt.is_prompt"


def emit_registry_event(
    webhooks: WebhookService, model_tags: Mapping[str, str], kind: str, action: str, payload: Mapping[str, Any]
) -> int:
    """Emit a registry change as MLflow names it: a prompt's changes (a registered model tagged
    ``mlflow.prompt.is_prompt``) are prompt events, a model's are model events."""
    is_prompt = str(model_tags.get(PROMPT_TAG, "false")).lower() == "true"
    return webhooks.emit(_REGISTRY_ENTITIES[kind][is_prompt], action, payload)
