"""Price and listing history: ``/events/{id}/prices`` (every member record side by side) and
``/external-events/{source}/{external_id}/prices`` (one record)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from pymongo.errors import PyMongoError

from services.api.deps import AnyUser, Deps
from services.api.errors import bad_request, not_found, unavailable
from services.api.prices import (
    DEFAULT_DAYS,
    MAX_DAYS,
    Window,
    comparison,
    member_keys,
    read_series,
)
from services.api.render import dumps, json_response
from services.api.schemas import READ_ERRORS, Error

router = APIRouter(tags=["prices"])


class PricePoint(BaseModel):
    t: datetime = Field(description="when the sync fetched the record")
    min: float | None
    max: float | None
    avg: float | None = Field(description="SeatGeek's average price; null elsewhere")
    listings: int | None = Field(description="listings on sale (SeatGeek; 0 = sold out)")


class Signal(BaseModel):
    points: int
    listings_change_per_day: float | None
    sell_through_pct: float | None = Field(description="share of the first listings sold since")
    price_trend_pct: float | None = Field(description="average (else lowest) price, first to last")
    label: Literal["selling_fast", "steady", "sold_out", "unknown"]


class Series(BaseModel):
    key: str
    source: str
    external_id: str
    currency: str | None
    points: list[PricePoint]
    truncated: bool = Field(description="true: only the newest points are listed")
    signal: Signal


class Latest(BaseModel):
    key: str
    source: str
    currency: str | None
    t: datetime | None
    min: float | None
    max: float | None
    listings: int | None


class Comparison(BaseModel):
    latest: list[Latest]
    cheapest: str | None
    most_listings: str | None


class PricesPage(BaseModel):
    since: date
    until: date
    older: str | None = Field(description="the window of as many days just before this one")


class RecordPrices(PricesPage, Series):
    pass


class EventPrices(PricesPage):
    event_id: str
    series: list[Series]
    comparison: Comparison


DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
SINCE = Query(
    description=f"first UTC day, YYYY-MM-DD (default: {DEFAULT_DAYS} days before until; at "
    f"most {MAX_DAYS} days before it)",
    pattern=DAY,
    json_schema_extra={"format": "date"},
)
UNTIL = Query(
    description="last UTC day, YYYY-MM-DD (default: today)",
    pattern=DAY,
    json_schema_extra={"format": "date"},
)
RESPONSES: dict[int | str, dict[str, Any]] = {**READ_ERRORS, 404: {"model": Error}}


def _day(value: str | None, field: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise bad_request(field, "not a calendar day (YYYY-MM-DD)") from err


def _page(window: Window, path: str) -> dict[str, Any]:
    older = window.older()
    return {
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "older": f"{path}?{older.query_string()}" if older is not None else None,
    }


def _cached(services: Deps, request: Request) -> tuple[tuple[str, ...], bytes | None]:
    key = ("prices", request.url.path, request.url.query)
    cached = services.cache.get(key)
    services.metrics.cache.labels("hit" if cached is not None else "miss").inc()
    return key, cached


@router.get(
    "/events/{event_id}/prices",
    response_model=EventPrices,
    responses=RESPONSES,
    summary="Price and listing history of a canonical event: every member record side by side",
)
async def event_prices(
    request: Request,
    services: Deps,
    _user: AnyUser,
    event_id: Annotated[str, Path(max_length=200)],
    since: Annotated[str | None, SINCE] = None,
    until: Annotated[str | None, UNTIL] = None,
) -> Response:
    key, cached = _cached(services, request)
    if cached is not None:
        return json_response(cached)
    window = Window.of(_day(since, "since"), _day(until, "until"))
    try:
        keys = await member_keys(services.store.db, event_id)
        if keys is None:
            raise not_found("Event")
        series = await read_series(services.store.db, keys, window)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    body = dumps(
        {
            "event_id": event_id,
            **_page(window, f"/events/{event_id}/prices"),
            "series": series,
            "comparison": comparison(series),
        }
    )
    services.cache.put(key, body)
    return json_response(body)


@router.get(
    "/external-events/{source}/{external_id}/prices",
    response_model=RecordPrices,
    responses=RESPONSES,
    summary="Price and listing history of one per-source record, with its sell-through signal",
)
async def record_prices(
    request: Request,
    services: Deps,
    _user: AnyUser,
    source: Annotated[str, Path(max_length=40, description="ticketmaster, seatgeek, …")],
    external_id: Annotated[str, Path(max_length=200)],
    since: Annotated[str | None, SINCE] = None,
    until: Annotated[str | None, UNTIL] = None,
) -> Response:
    cache_key, cached = _cached(services, request)
    if cached is not None:
        return json_response(cached)
    window = Window.of(_day(since, "since"), _day(until, "until"))
    key = f"{source}:{external_id}"
    try:
        if await services.store.external(key) is None:
            raise not_found("Event")
        (series,) = await read_series(services.store.db, [key], window)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    body = dumps({**series, **_page(window, f"/external-events/{source}/{external_id}/prices")})
    services.cache.put(cache_key, body)
    return json_response(body)
