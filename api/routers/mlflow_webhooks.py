"""MLflow 3's webhook API (``/api/2.0/mlflow/webhooks``): create, list, get, update, delete, test.

Events travel as MLflow's enum names (``{"entity": "MODEL_VERSION", "action": "CREATED"}``); the
secret is accepted and never returned. With authentication on, only admins manage webhooks.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import request_user
from api.deps import WebhooksDep
from api.encoding import JSONBody, RawJSONRoute
from lakeops.errors import PermissionDeniedError
from lakeops.services.webhooks import TestResult, Webhook

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EventIn(_Req):
    entity: str
    action: str


class CreateWebhook(_Req):
    name: str
    url: str
    events: list[EventIn] = Field(default_factory=list)
    description: str | None = None
    secret: str | None = None
    status: str = "ACTIVE"


class UpdateWebhook(_Req):
    name: str | None = None
    url: str | None = None
    events: list[EventIn] = Field(default_factory=list)
    description: str | None = None
    secret: str | None = None
    status: str | None = None


class TestWebhook(_Req):
    event: EventIn | None = None


def _admin(request: Request) -> None:
    if request.app.state.auth.enabled:
        user = request_user(request)
        if user is None or not user.is_admin:
            raise PermissionDeniedError("Only admins manage webhooks")


def webhook_json(hook: Webhook) -> dict[str, Any]:
    """A webhook in MLflow's JSON shape (without its secret)."""
    out: dict[str, Any] = {
        "webhook_id": hook.webhook_id,
        "name": hook.name,
        "url": hook.url,
        "events": [{"entity": e.upper(), "action": a.upper()} for e, a in hook.events],
        "status": hook.status,
        "creation_timestamp": hook.creation_timestamp,
        "last_updated_timestamp": hook.last_updated_timestamp,
    }
    if hook.description is not None:
        out["description"] = hook.description
    return out


def _events(events: list[EventIn]) -> list[tuple[str, str]]:
    return [(e.entity, e.action) for e in events]


@router.post("/webhooks")
def create_webhook(body: CreateWebhook, request: Request, webhooks: WebhooksDep) -> dict[str, Any]:
    _admin(request)
    hook = webhooks.create(
        name=body.name,
        url=body.url,
        events=_events(body.events),
        description=body.description,
        secret=body.secret,
        status=body.status,
    )
    return {"webhook": webhook_json(hook)}


@router.get("/webhooks")
def list_webhooks(
    request: Request, webhooks: WebhooksDep, max_results: int = 100, page_token: str | None = None
) -> dict[str, Any]:
    _admin(request)
    hooks, token = webhooks.list_webhooks(max_results=max_results, page_token=page_token)
    out: dict[str, Any] = {"webhooks": [webhook_json(h) for h in hooks]}
    if token:
        out["next_page_token"] = token
    return out


@router.get("/webhooks/{webhook_id}")
def get_webhook(webhook_id: str, request: Request, webhooks: WebhooksDep) -> dict[str, Any]:
    _admin(request)
    return {"webhook": webhook_json(webhooks.get(webhook_id))}


@router.patch("/webhooks/{webhook_id}")
def update_webhook(webhook_id: str, body: UpdateWebhook, request: Request, webhooks: WebhooksDep) -> dict[str, Any]:
    _admin(request)
    hook = webhooks.update(
        webhook_id,
        name=body.name,
        url=body.url,
        events=_events(body.events) or None,
        description=body.description,
        secret=body.secret,
        status=body.status,
    )
    return {"webhook": webhook_json(hook)}


@router.delete("/webhooks/{webhook_id}")
def delete_webhook(webhook_id: str, request: Request, webhooks: WebhooksDep) -> dict[str, Any]:
    _admin(request)
    webhooks.delete(webhook_id)
    return {}


@router.post("/webhooks/{webhook_id}/test")
def test_webhook(webhook_id: str, body: TestWebhook, request: Request, webhooks: WebhooksDep) -> dict[str, Any]:
    _admin(request)
    event = (body.event.entity, body.event.action) if body.event else None
    result: TestResult = webhooks.test(webhook_id, event)
    return {"result": _result(result)}


def _result(result: TestResult) -> dict[str, Any]:
    out: dict[str, Any] = {"success": result.success}
    for key in ("response_status", "response_body", "error_message"):
        value = getattr(result, key)
        if value is not None:
            out[key] = value
    return out
