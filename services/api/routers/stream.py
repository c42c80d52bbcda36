"""``GET /events/stream``: the change feed pushed as Server-Sent Events (services/api/stream.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.api.deps import AnyUser, Deps
from services.api.params import CURSOR_PATTERN, NEAR_PATTERN, SOURCES
from services.api.schemas import READ_ERRORS
from services.api.stream import respond

router = APIRouter(prefix="/events", tags=["canonical events"])

STREAM_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "source",
        "in": "query",
        "schema": {"type": "string", "enum": list(SOURCES), "default": "all"},
        "description": "only events one of whose records comes from this provider",
    },
    {
        "name": "category",
        "in": "query",
        "schema": {"type": "string", "maxLength": 200},
        "description": "category or subcategory (comma list), as the listings read it",
    },
    {
        "name": "near",
        "in": "query",
        "schema": {"type": "string", "pattern": NEAR_PATTERN},
        "description": "lat,lon[,radius_km]: only events within radius_km (default 50)",
    },
    {
        "name": "after",
        "in": "query",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
        "description": "resume after this change (an event id of the stream, or a next_after)",
    },
    {
        "name": "Last-Event-ID",
        "in": "header",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
        "description": "what a reconnecting EventSource sends: resume after it (wins over after)",
    },
]


@router.get(
    "/stream",
    responses={
        200: {
            "description": "`text/event-stream`: `id:` the change's cursor, `event: change`,"
            " `data:` the item `/events/changes` lists; comment heartbeats",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **READ_ERRORS,
    },
    summary="Change feed as Server-Sent Events, live (filters: source, category, near)",
    openapi_extra={"parameters": STREAM_PARAMETERS},
)
async def stream(request: Request, services: Deps, user: AnyUser) -> Response:
    return respond(request, services.stream, user)
