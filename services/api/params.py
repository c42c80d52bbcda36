"""Query parameters of the listing endpoints → a catalogue ``Query`` (with 400s that say why)."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import orjson
from starlette.datastructures import QueryParams

from services.api.catalogue import EPOCH
from services.api.catalogue import Query as CatalogueQuery
from services.api.errors import ApiError, field_error
from shared.contracts import EventStatus
from shared.search import tokens

Sort = Literal["start", "-start", "updated", "-updated", "distance"]
STATUS_ALIASES = {
    "scheduled": "EventScheduled",
    "cancelled": "EventCancelled",
    "canceled": "EventCancelled",
    "postponed": "EventPostponed",
    "rescheduled": "EventRescheduled",
    "moved_online": "EventMovedOnline",
    "movedonline": "EventMovedOnline",
}
SOURCES = ("all", "ticketmaster", "seatgeek", "eventbrite", "meetup")
STATUS_CODE = {s.value for s in EventStatus}
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2}))?$"


def parse_when(value: str, field: str, *, end_of_day: bool) -> datetime:
    """A date (the whole UTC day) or a datetime with an offset; naive datetimes are refused."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            if end_of_day:
                moment += timedelta(days=1) - timedelta(milliseconds=1)
            return moment
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ApiError(
            400,
            "Invalid request",
            details=[field_error(field, "use YYYY-MM-DD or an ISO 8601 datetime with offset")],
        ) from err
    if parsed.tzinfo is None:
        raise ApiError(
            400,
            "Invalid request",
            details=[field_error(field, "a datetime needs a UTC offset, e.g. +00:00", "naive")],
        )
    return parsed.astimezone(UTC)


def _encode_value(value: Any) -> Any:
    # Datetimes travel as epoch milliseconds (MongoDB's own precision), so they compare exact.
    if isinstance(value, datetime):
        return {"ms": int(value.timestamp() * 1000)}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        return datetime.fromtimestamp(int(value["ms"]) / 1000, UTC)
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise ValueError("not a cursor value")


def encode_cursor(sort: str, after: tuple[Any, str], dedupe: bool) -> str:
    raw = orjson.dumps([sort, _encode_value(after[0]), after[1], dedupe])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, dedupe: bool) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value: Any = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        kind, number, tie, collapsed = value
        if kind != sort or collapsed != dedupe or not isinstance(tie, str):
            raise ValueError("cursor of another sort order")
        return _decode_value(number), tie
    except (ValueError, TypeError, KeyError, binascii.Error, orjson.JSONDecodeError) as err:
        raise ApiError(
            400,
            "Invalid request",
            details=[field_error("cursor", "not a cursor of this query (take next_cursor as is)")],
        ) from err


def _listed(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class Filters:
    """The filters every listing shares (read from the query string by ``read_filters``)."""

    def __init__(
        self,
        *,
        source: str = "all",
        location: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        include_past: bool = False,
        category: str | None = None,
        status: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        radius_km: float | None = None,
        imported: bool | None = None,
        sort: str = "start",
        limit: int = 20,
        cursor: str | None = None,
    ) -> None:
        self.source = source
        self.location = location
        self.date_from = date_from
        self.date_to = date_to
        self.include_past = include_past
        self.category = category
        self.status = status
        self.lat = lat
        self.lon = lon
        self.radius_km = radius_km
        self.imported = imported
        self.sort = sort
        self.limit = limit
        self.cursor = cursor

    def query(self, q: str | None, *, dedupe: bool = False) -> CatalogueQuery:
        details = []
        source = self.source.strip().lower()
        if source not in SOURCES:
            details.append(field_error("source", f"one of {', '.join(SOURCES)}"))
        words = tokens(q)
        if q is not None and not words:
            details.append(field_error("q", "no searchable word (letters or digits)"))
        location = tokens(self.location)
        if self.location is not None and not location:
            details.append(field_error("location", "no searchable word (letters or digits)"))
        statuses = []
        for name in _listed(self.status):
            known = STATUS_ALIASES.get(name.lower()) or (name if name in STATUS_CODE else None)
            if known is None:
                details.append(field_error("status", f"unknown status {name!r}"))
            else:
                statuses.append(known)
        geo = (self.lat, self.lon, self.radius_km)
        if any(v is not None for v in geo) and not all(v is not None for v in geo):
            details.append(field_error("radius_km", "lat, lon and radius_km go together"))
        if self.sort == "distance" and self.radius_km is None:
            details.append(field_error("sort", "distance needs lat, lon and radius_km"))
        if details:
            raise ApiError(400, "Invalid request", details=details)
        start_from = (
            parse_when(self.date_from, "date_from", end_of_day=False) if self.date_from else None
        )
        start_to = parse_when(self.date_to, "date_to", end_of_day=True) if self.date_to else None
        if start_from is not None and start_to is not None and start_from > start_to:
            raise ApiError(
                400,
                "Invalid request",
                details=[field_error("date_to", "date_to is before date_from")],
            )
        if start_from is None and self.include_past:
            start_from = EPOCH
        center = (self.lat, self.lon) if self.lat is not None and self.lon is not None else None
        return CatalogueQuery(
            words=words,
            location=location,
            source=None if source == "all" else source,
            categories=_listed(self.category),
            statuses=statuses,
            start_from=start_from,
            start_to=start_to,
            center=center,
            radius_km=self.radius_km,
            imported=self.imported,
            sort=self.sort,
            after=decode_cursor(self.cursor, self.sort, dedupe) if self.cursor else None,
            limit=self.limit,
        )


def _spec(
    name: str, schema: dict[str, Any], description: str = "", *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


_TEXT = {"type": "string", "maxLength": 200}
# A word is a run of letters or digits (shared/search.py): text without one matches nothing.
_WORDS = {"type": "string", "maxLength": 200, "pattern": r"[^\W_]"}
_WHEN = {
    "anyOf": [
        {"type": "string", "format": "date"},
        {"type": "string", "format": "date-time", "maxLength": 40},
    ]
}
FILTER_PARAMETERS: list[dict[str, Any]] = [
    _spec("source", {"type": "string", "enum": list(SOURCES), "default": "all"}),
    _spec("location", _WORDS, "words of the venue's name, city, state, country, postal code"),
    _spec("date_from", _WHEN, "YYYY-MM-DD (a UTC day) or ISO 8601 with offset; default: now"),
    _spec("date_to", _WHEN, "inclusive; as date_from"),
    _spec(
        "include_past",
        {"type": "boolean", "default": False},
        "without date_from, events that already started are listed too",
    ),
    _spec("category", _TEXT, "category or subcategory (comma list)"),
    _spec("status", _TEXT, "scheduled, cancelled, postponed, rescheduled, moved_online"),
    _spec("lat", {"type": "number", "minimum": -90, "maximum": 90}),
    _spec("lon", {"type": "number", "minimum": -180, "maximum": 180}),
    _spec("radius_km", {"type": "number", "exclusiveMinimum": 0, "maximum": 20_000}),
    _spec("imported", {"type": "boolean"}, "only imported records (or only not imported)"),
    _spec(
        "sort",
        {"type": "string", "enum": ["start", "-start", "updated", "-updated", "distance"]},
        "distance needs lat, lon and radius_km",
    ),
    _spec("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
    _spec("cursor", {"type": "string", "maxLength": 500}, "next_cursor of the previous page"),
]
Q_PARAMETER = _spec(
    "q",
    _WORDS,
    "words of the title, category, performers or venue; the last one also as a prefix",
)
DEDUPE_PARAMETER = _spec(
    "dedupe", {"type": "boolean", "default": False}, "one canonical event per real performance"
)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class _Reader:
    """Typed reads of query parameters; type errors are collected as 422 details."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self.params = params
        self.details: list[dict[str, Any]] = []

    def text(self, name: str, default: str | None = None, max_length: int = 200) -> str | None:
        value = self.params.get(name)
        if value is None:
            return default
        if len(value) > max_length:
            self.details.append(field_error(f"query.{name}", f"at most {max_length} characters"))
            return default
        return value

    def number(self, name: str, low: float, high: float, *, above: bool = False) -> float | None:
        value = self.params.get(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or not (
            (number > low if above else number >= low) and number <= high
        ):
            self.details.append(field_error(f"query.{name}", f"a number in [{low}, {high}]"))
            return None
        return number

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.params.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            self.details.append(field_error(f"query.{name}", f"an integer in [{low}, {high}]"))
            return default
        return number

    def flag(self, name: str) -> bool | None:
        value = self.params.get(name)
        if value is None:
            return None
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.details.append(field_error(f"query.{name}", "true or false"))
        return None


def read_filters(params: Mapping[str, str]) -> tuple[Filters, _Reader]:
    """Every shared filter from the query string (FastAPI's per-parameter validation costs
    more than the search itself, so the hot listings read them here, documented by hand)."""
    read = _Reader(params)
    sort = read.text("sort", "start") or "start"
    if sort not in ("start", "-start", "updated", "-updated", "distance"):
        read.details.append(field_error("query.sort", "start, -start, updated, -updated, distance"))
        sort = "start"
    found = Filters(
        source=read.text("source", "all") or "all",
        location=read.text("location"),
        date_from=read.text("date_from", max_length=40),
        date_to=read.text("date_to", max_length=40),
        include_past=bool(read.flag("include_past")),
        category=read.text("category"),
        status=read.text("status"),
        lat=read.number("lat", -90, 90),
        lon=read.number("lon", -180, 180),
        radius_km=read.number("radius_km", 0, 20_000, above=True),
        imported=read.flag("imported"),
        sort=sort,
        limit=read.integer("limit", 20, 1, 100),
        cursor=read.text("cursor", max_length=500),
    )
    return found, read


def reject_repeats(params: QueryParams) -> None:
    """Every query parameter is single-valued (lists are comma-separated): a repeated one is a
    400, never a silent choice of one of its values."""
    repeated = sorted({k for k, _ in params.multi_items() if len(params.getlist(k)) > 1})
    if repeated:
        raise ApiError(
            400,
            "Invalid request",
            details=[field_error(name, "given more than once") for name in repeated],
        )


def validated(read: _Reader) -> None:
    if read.details:
        raise ApiError(422, "Validation failed", details=read.details)
