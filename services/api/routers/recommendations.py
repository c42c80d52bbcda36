"""``/recommendations``: upcoming events near a place for someone who likes some artists.

Parameters are read by hand (as the listings read theirs) and declared in the OpenAPI exactly as
accepted; an artist that is neither a known Spotify id nor a known name is listed in
``unmatched`` (the answer is still a 200: the rest are recommended for)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pymongo.errors import PyMongoError

from services.api.deps import AnyUser, Deps, Services
from services.api.errors import field_error, unavailable
from services.api.params import (
    _WHEN,
    CURSOR_PATTERN,
    NEAR_PATTERN,
    _Reader,
    _spec,
    decode_cursor,
    parse_when,
    validated,
)
from services.api.recommend import MAX_ARTISTS, Recommender, Result, liked_view
from services.api.recommend import Request as Asked
from services.api.render import dumps, json_response, public
from services.api.schemas import READ_ERRORS, RecommendationsResponse

router = APIRouter(prefix="/recommendations", tags=["recommendations"])

DEFAULT_DAYS = 30
MAX_LIMIT = 50
# A comma list of at most MAX_ARTISTS items, the first with something other than spaces in it.
ARTISTS_PATTERN = rf"^[^,]*[^ ,][^,]*(,[^,]*){{0,{MAX_ARTISTS - 1}}}$"
_ARTISTS = re.compile(ARTISTS_PATTERN)
ARTISTS_MAX_LENGTH = 2000

PARAMETERS: list[dict[str, Any]] = [
    _spec(
        "artists",
        {"type": "string", "pattern": ARTISTS_PATTERN, "maxLength": ARTISTS_MAX_LENGTH},
        f"liked artists: Spotify ids or names (names compared by their words), comma list of at"
        f" most {MAX_ARTISTS}",
        required=True,
    ),
    _spec(
        "near",
        {"type": "string", "pattern": NEAR_PATTERN},
        "lat,lon[,radius_km]: events within radius_km (default 50) of the point",
        required=True,
    ),
    _spec("date_from", _WHEN, "YYYY-MM-DD (a UTC day) or ISO 8601 with offset; default: now"),
    _spec("date_to", _WHEN, f"inclusive; default: {DEFAULT_DAYS} days after date_from"),
    _spec("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 10}),
    _spec(
        "cursor",
        {"type": "string", "pattern": CURSOR_PATTERN},
        "next_cursor of the previous page (a position: -score~id)",
    ),
]


def artist_list(value: str) -> list[str]:
    return list(dict.fromkeys(a.strip(" ") for a in value.split(",") if a.strip(" ")))


def read_request(params: Mapping[str, str], now: datetime) -> Asked:
    """The request, or a 422 (types, required) / 400 (dates, cursor) that says why."""
    read = _Reader(params)
    artists = read.text("artists", max_length=ARTISTS_MAX_LENGTH)
    if artists is None:
        if "artists" not in params:
            read.details.append(field_error("query.artists", "required"))
    elif not _ARTISTS.fullmatch(artists):
        read.details.append(
            field_error("query.artists", f"a comma list of 1 to {MAX_ARTISTS} artists")
        )
        artists = None
    near = read.near("near")
    if near is None and "near" not in params:
        read.details.append(field_error("query.near", "required"))
    limit = read.integer("limit", 10, 1, MAX_LIMIT)
    date_from = read.text("date_from", max_length=40)
    date_to = read.text("date_to", max_length=40)
    cursor = read.text("cursor", max_length=500)
    validated(read)
    assert artists is not None
    assert near is not None
    start_from = parse_when(date_from, "date_from", end_of_day=False) if date_from else now
    start_to = (
        parse_when(date_to, "date_to", end_of_day=True)
        if date_to
        else start_from + timedelta(days=DEFAULT_DAYS)
    )
    after = decode_cursor(cursor, "cursor", instant=False) if cursor is not None else None
    return Asked(
        artists=artist_list(artists),
        center=(near[0], near[1]),
        radius_km=near[2],
        start_from=start_from,
        start_to=start_to,
        limit=limit,
        after=after,
    )


def body_of(result: Result) -> dict[str, Any]:
    return {
        "recommendations": [
            {
                "event": public(doc),
                "score": scored.score,
                "distance_km": scored.distance_km,
                "why": scored.why,
                "artists": scored.artists,
            }
            for scored, doc in result.items
        ],
        "artists": [liked_view(a) for a in result.liked],
        "unmatched": result.unmatched,
        "total_count": result.total,
        "next_cursor": result.next_cursor,
    }


async def recommendations(services: Services, asked: Asked) -> Result:
    try:
        return await Recommender(services.store.db).recommend(asked)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err


def minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@router.get(
    "",
    response_model=RecommendationsResponse,
    responses=READ_ERRORS,
    summary="Upcoming events near a place, ranked by similarity to liked artists, with reasons",
    openapi_extra={"parameters": PARAMETERS},
)
async def get_recommendations(request: Request, services: Deps, _user: AnyUser) -> Response:
    # "now" to the minute: the default range is the same for a minute, so the cache serves it.
    asked = read_request(request.query_params, minute(datetime.now(UTC)))
    key = (
        "recommendations",
        tuple(asked.artists),
        asked.center,
        asked.radius_km,
        asked.start_from,
        asked.start_to,
        asked.limit,
        asked.after,
    )
    found = services.cache.get(key)
    if found is not None:
        services.metrics.cache.labels("hit").inc()
        return json_response(found)
    services.metrics.cache.labels("miss").inc()
    body = dumps(body_of(await recommendations(services, asked)))
    services.cache.put(key, body)
    return json_response(body)
