"""``/events``: canonical events, one each, and their change feed."""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pymongo.errors import PyMongoError

from services.api.deps import AnyUser, Deps, ready_model
from services.api.errors import ApiError, field_error, not_found, unavailable
from services.api.index import STATUS_CODE
from services.api.params import FILTER_PARAMETERS, Q_PARAMETER, read_filters, validated
from services.api.readmodel import ReadModel, canonical_row
from services.api.render import dumps, events_body, json_response
from services.api.schemas import ERRORS, READ_ERRORS, CanonicalEventOut, ChangesResponse, Error
from services.api.schemas import EventsResponse as EventsOut

router = APIRouter(prefix="/events", tags=["canonical events"])


@router.get(
    "",
    response_model=EventsOut,
    responses=READ_ERRORS,
    summary="Canonical events (one per real performance), filtered and paged",
    openapi_extra={"parameters": [Q_PARAMETER, *FILTER_PARAMETERS]},
)
async def list_events(request: Request, services: Deps, _user: AnyUser) -> Response:
    filters, read = read_filters(request.query_params)
    q = read.text("q")
    validated(read)
    query = filters.query(q)
    model = ready_model(services)
    page = model.listing(query)
    return json_response(events_body(model, page, sort=query.sort))


def encode_after(modified: float, canonical_id: str) -> str:
    raw = orjson.dumps([modified, canonical_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_after(after: str) -> tuple[float, str]:
    """A ``next_after`` token, or an ISO 8601 datetime with offset (everything after it)."""
    text = after.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is not None:
        if moment.tzinfo is None:
            raise ApiError(
                400,
                "Invalid request",
                details=[field_error("after", "a datetime needs a UTC offset", "naive")],
            )
        return moment.timestamp(), "\U0010ffff"
    try:
        padded = text + "=" * (-len(text) % 4)
        value: Any = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        modified, canonical_id = value
        return float(modified), str(canonical_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as err:
        raise ApiError(
            400,
            "Invalid request",
            details=[field_error("after", "a next_after token or an ISO 8601 datetime")],
        ) from err


def _op(model: ReadModel, slot: int, event: dict[str, Any]) -> str:
    if event.get("duplicate_of"):
        return "merged"
    if int(model.canonicals.cols["status"][slot]) == STATUS_CODE["EventCancelled"]:
        return "cancelled"
    return "created" if int(model.canonicals.cols["version"][slot]) == 1 else "updated"


@router.get(
    "/changes",
    response_model=ChangesResponse,
    responses=READ_ERRORS,
    summary="Change feed: canonical events in (modified, id) order, merges and cancellations too",
)
async def changes(
    services: Deps,
    _user: AnyUser,
    after: Annotated[
        str | None, Query(max_length=300, description="next_after, or an ISO datetime")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    position = decode_after(after) if after else None
    model = ready_model(services)
    # Changes younger than the settle window are held back: a batch being written now may
    # still bring an older modification time (the feed would otherwise skip it).
    until = time.time() - services.settings.feed_settle_s
    slots, more = model.changes(position, limit, until)
    items = []
    last: tuple[float, str] | None = None
    for slot in slots:
        event = orjson.loads(model.canonical_body(slot))
        modified = float(model.canonicals.cols["updated"][slot])
        items.append(
            {
                "op": _op(model, slot, event),
                "canonical_id": event["id"],
                "version": event.get("version", 1),
                "modified": datetime.fromtimestamp(modified, UTC).isoformat(),
                "merged_into": event.get("duplicate_of"),
                "event": event,
            }
        )
        last = (modified, event["id"])
    next_after = encode_after(*last) if last else after
    return json_response(dumps({"changes": items, "next_after": next_after, "has_more": more}))


@router.get(
    "/{event_id}",
    response_model=CanonicalEventOut,
    responses={**ERRORS, 404: {"model": Error}},
    summary="One canonical event (a merged one names its survivor in duplicate_of)",
)
async def get_event(
    services: Deps, _user: AnyUser, event_id: Annotated[str, Path(max_length=200)]
) -> Response:
    body = services.model.canonical(event_id)
    if body is not None:
        return json_response(body)
    try:
        doc = await services.store.canonical(event_id)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    if doc is None:
        raise not_found("Event")
    row = canonical_row(doc)
    flag = b',"is_imported":false,"imported_event":null}'
    return json_response(row.body[:-1] + flag)
