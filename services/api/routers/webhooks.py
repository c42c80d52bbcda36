"""``/webhooks``: outside subscribers' webhook subscriptions to canonical changes.

The importer matches every change on ``events.canonical`` against the active subscriptions and
the notifier POSTs each match to the subscription's URL, signed with its secret
(docs/IMPORTER.md#webhook-subscriptions). The secret is write-only: never returned or logged.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import PyMongoError

from services.api.auth import Principal, Role
from services.api.deps import Deps, Organizer
from services.api.errors import ApiError, field_error, not_found, unavailable
from services.api.params import CURSOR_PATTERN, decode_cursor, encode_cursor
from services.api.render import dumps, iso, json_response
from services.api.schemas import ERRORS, Error
from services.api.webhooks import Webhooks
from shared.mongo import Document
from shared.webhooks import SECRET_MIN_LENGTH, Near, WebhookFilters, url_problem

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class NearIn(Near):
    model_config = ConfigDict(extra="forbid")
    # Strict numbers: "0" or true is not a coordinate (the OpenAPI says number).
    lat: float = Field(ge=-90, le=90, strict=True)
    lon: float = Field(ge=-180, le=180, strict=True)
    radius_km: float = Field(default=50.0, gt=0, le=20_000, strict=True)


class FiltersIn(WebhookFilters):
    """As stored; an unknown filter name is refused rather than silently matching everything."""

    model_config = ConfigDict(extra="forbid")
    near: NearIn | None = None


URL_PATTERN = (
    r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(?:[/?#][^\s]*)?$"
)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2000,
        # Declared in the schema, so a client (or a fuzzer) knows what passes: a host name or
        # IPv4 address, an optional port 1-65535, then any path and query.
        pattern=URL_PATTERN,
        description="http or https; outside dev/test not a loopback or private address",
    )
    secret: str = Field(
        min_length=SECRET_MIN_LENGTH,
        max_length=512,
        repr=False,
        description="signs each delivery (X-Marquee-Signature: sha256=HMAC-SHA256 of the body);"
        " write-only",
        json_schema_extra={"writeOnly": True},
    )
    filters: FiltersIn = Field(default_factory=FiltersIn)
    description: str | None = Field(default=None, max_length=500)


class WebhookOut(BaseModel):
    id: str
    owner: str
    url: str
    filters: WebhookFilters
    description: str | None = None
    active: bool
    created_at: str


class WebhooksOut(BaseModel):
    webhooks: list[WebhookOut]
    next_cursor: str | None = None


def _out(doc: Document) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "owner": doc.get("owner"),
        "url": doc.get("url"),
        "filters": doc.get("filters") or {},
        "description": doc.get("description"),
        "active": bool(doc.get("active")),
        "created_at": iso(doc.get("created_at")),
    }


def _now_ms() -> datetime:
    """Millisecond precision: what a cursor (epoch ms) can name exactly."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _visible(doc: Document | None, principal: Principal) -> Document:
    # Someone else's subscription is reported as absent: its existence is not ours to tell.
    if doc is None or (not principal.can(Role.ADMIN) and doc.get("owner") != principal.subject):
        raise not_found("Webhook subscription")
    return doc


ID = Annotated[str, Path(max_length=100)]


@router.post(
    "",
    status_code=201,
    response_model=WebhookOut,
    responses={**ERRORS, 400: {"model": Error}, 413: {"model": Error}, 503: {"model": Error}},
    summary="Subscribe a webhook to canonical changes (organizer or admin)",
)
async def create_webhook(services: Deps, principal: Organizer, body: WebhookCreate) -> Response:
    allow_private = services.settings.environment in ("dev", "test")
    problem = url_problem(body.url, allow_private=allow_private)
    if problem is not None:
        raise ApiError(422, "Validation failed", details=[field_error("body.url", problem, "url")])
    now = _now_ms()
    doc: Document = {
        "_id": f"wh_{uuid.uuid4().hex}",
        "owner": principal.subject,
        "url": body.url,
        "secret": body.secret,
        "filters": body.filters.model_dump(mode="json", exclude_none=True),
        "description": body.description,
        "active": True,
        "deleted_at": None,
        "created_at": now,
        "updated_at": now,
    }
    try:
        await Webhooks(services.store.db).create(doc)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    return json_response(dumps(_out(doc)), 201, {"Location": f"/webhooks/{doc['_id']}"})


@router.get(
    "",
    response_model=WebhooksOut,
    responses={**ERRORS, 400: {"model": Error}, 503: {"model": Error}},
    summary="Webhook subscriptions, oldest first: the caller's own (an admin: everyone's)",
)
async def list_webhooks(
    services: Deps,
    principal: Organizer,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page")
    ] = None,
) -> Response:
    after = decode_cursor(cursor, "cursor", instant=True) if cursor is not None else None
    owner = None if principal.can(Role.ADMIN) else principal.subject
    try:
        docs, more = await Webhooks(services.store.db).page(owner, after, limit)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    last = docs[-1] if docs and more else None
    next_cursor = encode_cursor((last["created_at"], str(last["_id"]))) if last else None
    return json_response(dumps({"webhooks": [_out(d) for d in docs], "next_cursor": next_cursor}))


@router.get(
    "/{subscription_id}",
    response_model=WebhookOut,
    responses={**ERRORS, 404: {"model": Error}, 503: {"model": Error}},
    summary="One webhook subscription (its owner or an admin)",
)
async def get_webhook(services: Deps, principal: Organizer, subscription_id: ID) -> Response:
    try:
        doc = await Webhooks(services.store.db).get(subscription_id)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    return json_response(dumps(_out(_visible(doc, principal))))


@router.delete(
    "/{subscription_id}",
    status_code=204,
    responses={**ERRORS, 404: {"model": Error}, 503: {"model": Error}},
    summary="Delete a webhook subscription (its owner or an admin); queued deliveries are dropped",
)
async def delete_webhook(services: Deps, principal: Organizer, subscription_id: ID) -> Response:
    hooks = Webhooks(services.store.db)
    try:
        _visible(await hooks.get(subscription_id), principal)
        await hooks.delete(subscription_id, _now_ms())
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    return Response(status_code=204)
