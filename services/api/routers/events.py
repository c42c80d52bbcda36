"""``/events``: canonical events, one each, and their change feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pymongo.errors import PyMongoError

from services.api.deps import AnyUser, Deps
from services.api.errors import bad_request, not_found, unavailable
from services.api.params import (
    CURSOR_PATTERN,
    FILTER_PARAMETERS,
    Q_PARAMETER,
    decode_cursor,
    encode_cursor,
    read_filters,
    validated,
)
from services.api.render import change_item, dumps, events_body, json_response, public
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
    try:
        page = await services.catalogue.listing(query)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    return json_response(events_body(page))


AFTER_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": CURSOR_PATTERN},
        {"type": "string", "format": "date-time"},
    ]
}


def decode_after(after: str) -> tuple[datetime, str | None]:
    """A ``next_after`` position, or an ISO 8601 datetime with offset (everything after it)."""
    text = after.strip()
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is not None:
        if moment.tzinfo is None:
            raise bad_request("after", "a datetime needs a UTC offset", "naive")
        return moment.astimezone(UTC), None  # everything modified after that instant
    value, last_id = decode_cursor(text, "after", instant=True)
    return value, last_id


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
        str | None,
        Query(
            description="next_after of the previous page, or an ISO 8601 datetime with offset",
            json_schema_extra=AFTER_SCHEMA,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    position = decode_after(after) if after is not None else None
    # Changes younger than the settle window are held back: a batch being written now may
    # still bring an older modification time (the feed would otherwise skip it).
    until = datetime.now(UTC) - timedelta(seconds=services.settings.feed_settle_s)
    try:
        docs, more = await services.catalogue.changes(position, limit, until)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    items = [change_item(doc) for doc in docs]
    next_after = encode_cursor((docs[-1]["updated_at"], str(docs[-1]["_id"]))) if docs else after
    return json_response(dumps({"changes": items, "next_after": next_after, "has_more": more}))


@router.get(
    "/{event_id}",
    response_model=CanonicalEventOut,
    responses={**ERRORS, 404: {"model": Error}, 503: {"model": Error}},
    summary="One canonical event (a merged one names its survivor in duplicate_of)",
)
async def get_event(
    services: Deps, _user: AnyUser, event_id: Annotated[str, Path(max_length=200)]
) -> Response:
    try:
        doc = await services.store.canonical(event_id)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    if doc is None:
        raise not_found("Event")
    return json_response(dumps(public(doc)))
