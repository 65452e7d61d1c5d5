"""Webhooks through the stock client against a running ``lakeops serve``: the API (create, list, get,
update, delete, test) and delivery of registry events to a local HTTP receiver, signed with the
webhook's secret, retried until a failing receiver recovers, logged, and resumed after a restart."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from lakes import make_settings
from mlflow import MlflowClient
from mlflow.entities.webhook import WebhookEvent, WebhookStatus
from mlflow.exceptions import MlflowException
from serve_process import ServeProcess

# httpx's default 5 s timeout is too short for a server on a loaded 2-core box (a first password hash,
# a first SQL query): calls here wait up to 60 s.
_get = functools.partial(httpx.get, timeout=60)
_post = functools.partial(httpx.post, timeout=60)

pytestmark = pytest.mark.api

SECRET = "whsec-test-0123456789"


class Receiver:
    """A local HTTP endpoint that answers 500 to its first ``failures`` requests, then 200."""

    def __init__(self) -> None:
        self.failures = 0
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = 500 if receiver.failures > 0 else 200
                receiver.failures -= 1
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, code))
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"down")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        """The bodies answered 200, after checking each request's signature."""
        out = []
        for headers, body, code in self.requests:
            signed = f"{headers['x-mlflow-delivery-id']}.{headers['x-mlflow-timestamp']}.{body.decode()}"
            expected = base64.b64encode(hmac.new(SECRET.encode(), signed.encode(), hashlib.sha256).digest()).decode()
            assert headers["x-mlflow-signature"] == f"v1,{expected}"
            if code == 200:
                out.append(json.loads(body))
        return out

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.delivered()) >= count:
                return self.delivered()
            time.sleep(0.05)
        raise AssertionError(f"{len(self.delivered())} deliveries of {count}: {self.requests}")


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    home = tmp_path_factory.mktemp("webhooks")
    srv = ServeProcess(
        make_settings("file", home, None),
        home / "serve.log",
        extra_env={"LAKEOPS_WEBHOOKS__FIRST_BACKOFF_S": "0.2", "LAKEOPS_WEBHOOKS__MAX_ATTEMPTS": "20"},
    )
    yield srv
    srv.stop()


@pytest.fixture
def client(hooked: ServeProcess, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(hooked.url, registry_uri=hooked.url)


def test_webhook_api(client: MlflowClient, hooked: ServeProcess) -> None:
    receiver = Receiver()
    hook = client.create_webhook(
        name="ci", url=receiver.url, events=["model_version.created"], secret=SECRET, description="to CI"
    )
    assert hook.events == [WebhookEvent.from_str("model_version.created")] and hook.status == WebhookStatus.ACTIVE
    assert client.get_webhook(hook.webhook_id).description == "to CI"
    assert hook.webhook_id in [h.webhook_id for h in client.list_webhooks()]
    updated = client.update_webhook(hook.webhook_id, events=["model_version_alias.created"], status="DISABLED")
    assert updated.events == [WebhookEvent.from_str("model_version_alias.created")]
    assert updated.status == WebhookStatus.DISABLED
    result = client.test_webhook(hook.webhook_id)
    assert result.success and result.response_status == 200
    (sent,) = receiver.delivered()
    assert (sent["entity"], sent["action"]) == ("model_version_alias", "created") and sent["data"]["alias"]
    refused = _post(
        f"{hooked.url}/api/2.0/mlflow/webhooks",
        json={"name": "bad", "url": receiver.url, "events": [{"entity": "RUN", "action": "CREATED"}]},
    )
    assert refused.status_code == 400 and "Invalid webhook event" in refused.json()["message"]
    with pytest.raises(MlflowException, match="Invalid webhook URL"):
        client.create_webhook(name="bad", url="ftp://x", events=["model_version.created"])
    client.delete_webhook(hook.webhook_id)
    with pytest.raises(MlflowException, match="not found"):
        client.get_webhook(hook.webhook_id)


def test_registry_events_are_delivered_once_after_failures(
    client: MlflowClient, hooked: ServeProcess, tmp_path: Path
) -> None:
    receiver = Receiver()
    receiver.failures = 2  # the receiver is down for two attempts, then recovers
    hook = client.create_webhook(
        name="deploy",
        url=receiver.url,
        events=["model_version.created", "model_version_alias.created", "model_version_tag.set"],
        secret=SECRET,
    )
    name = f"wh-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    client.create_model_version(name, "s3://bucket/model", run_id=None)
    (created,) = receiver.wait_for(1)
    assert (created["entity"], created["action"]) == ("model_version", "created")
    assert created["data"]["name"] == name and created["data"]["version"] == "1"
    attempts = [h["x-mlflow-delivery-id"] for h, _b, _c in receiver.requests]
    assert len(attempts) == 3 and len(set(attempts)) == 1  # one delivery, tried three times

    client.set_registered_model_alias(name, "champion", "1")
    client.set_model_version_tag(name, "1", "team", "search")
    events = receiver.wait_for(3)
    assert [(e["entity"], e["action"]) for e in events[1:]] == [
        ("model_version_alias", "created"),
        ("model_version_tag", "set"),
    ]
    assert len(receiver.delivered()) == 3  # each event delivered once

    # The delivery log, in SQL.
    rows = _post(
        f"{hooked.url}/api/v1/sql",
        json={
            "sql": "SELECT status, count(*) FROM webhook_deliveries WHERE webhook_id = ? GROUP BY status ORDER BY 1",
            "params": [hook.webhook_id],
        },
    ).json()["rows"]
    assert dict(rows) == {"delivered": 3, "pending": 3, "retrying": 2}

    # A delivery not yet made survives a restart: the receiver is unreachable (attempts keep failing,
    # 20 allowed), the server stops, and after the start it is sent to where the webhook now points.
    receiver.server.shutdown()
    receiver.server.server_close()
    client.set_model_version_tag(name, "1", "stage", "qa")
    hooked.stop()
    later = Receiver()
    hooked.start()
    MlflowClient(hooked.url).update_webhook(hook.webhook_id, url=later.url)
    (resumed,) = later.wait_for(1)
    assert resumed["data"]["key"] == "stage"
