"""Query parameters of the listing endpoints → a catalogue ``Query`` (with 400s that say why)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any, Literal

from starlette.datastructures import QueryParams

from services.api.catalogue import EPOCH
from services.api.catalogue import Query as CatalogueQuery
from services.api.errors import ApiError, bad_request, field_error
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
DEFAULT_RADIUS_KM = 50.0
_LAT = r"-?(90(\.0+)?|[1-8]?[0-9](\.[0-9]+)?)"
_LON = r"-?(180(\.0+)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]+)?)"
_RADIUS = r"(20000(\.0+)?|(1[0-9]{4}|[1-9][0-9]{0,3})(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)"
# Exactly the points and radii accepted (ranges included), so the OpenAPI says what is valid.
NEAR_PATTERN = rf"^{_LAT},{_LON}(,{_RADIUS})?$"
_NEAR = re.compile(NEAR_PATTERN)
_STATUS_NAMES = "|".join(sorted({*STATUS_ALIASES, *STATUS_CODE}, key=len, reverse=True))
# Exactly what the reader accepts: known names, comma separated, spaces around them allowed.
STATUS_PATTERN = rf"^ *({_STATUS_NAMES}) *(, *({_STATUS_NAMES}) *)*$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2}))?$"


def parse_when(value: str, field: str, *, end_of_day: bool) -> datetime:
    """A date (the whole UTC day) or a datetime with an offset; naive datetimes are refused."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            if end_of_day:
                moment = moment.replace(hour=23, minute=59, second=59, microsecond=999000)
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


# A cursor is a position: the sort value of the last item seen (epoch milliseconds for an
# instant, kilometres for a distance), "~", and its id. Any string of that form is a position,
# so the OpenAPI pattern below says exactly what is accepted.
CURSOR_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]{1,12})?~[!-~]{1,300}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def instant_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(millis: float) -> datetime:
    """An instant from epoch milliseconds, clamped to what a datetime holds."""
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC) if millis > 0 else datetime.min.replace(tzinfo=UTC)


def encode_cursor(after: tuple[Any, str]) -> str:
    value, last_id = after
    number = instant_ms(value) if isinstance(value, datetime) else repr(float(value))
    return f"{number}~{last_id}"


def decode_cursor(cursor: str, field: str, *, instant: bool) -> tuple[Any, str]:
    """A position as ``encode_cursor`` wrote it: (instant or distance, id)."""
    if not _CURSOR.match(cursor):
        raise bad_request(field, "a next cursor as the previous page returned it")
    number, last_id = cursor.split("~", 1)
    return (from_ms(float(number)) if instant else float(number)), last_id


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
        near: tuple[float, float, float] | None = None,
        imported: bool | None = None,
        include_addons: bool = False,
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
        self.near = near
        self.imported = imported
        self.include_addons = include_addons
        self.sort = sort
        self.limit = limit
        self.cursor = cursor

    def query(self, q: str | None) -> CatalogueQuery:
        details = []
        source = self.source
        if source not in SOURCES:
            details.append(field_error("source", f"one of {', '.join(SOURCES)}"))
        words = tokens(q)
        if q is not None and not words:
            details.append(field_error("q", "no searchable word (letters or digits)"))
        location = tokens(self.location)
        if self.location is not None and not location:
            details.append(field_error("location", "no searchable word (letters or digits)"))
        statuses = []
        if self.status is not None and not _listed(self.status):
            details.append(field_error("status", "name at least one status"))
        for name in _listed(self.status):
            known = STATUS_ALIASES.get(name) or (name if name in STATUS_CODE else None)
            if known is None:
                details.append(field_error("status", f"unknown status {name!r}"))
            else:
                statuses.append(known)
        if details:
            raise ApiError(400, "Invalid request", details=details)
        start_from = (
            parse_when(self.date_from, "date_from", end_of_day=False)
            if self.date_from is not None
            else None
        )
        start_to = (
            parse_when(self.date_to, "date_to", end_of_day=True)
            if self.date_to is not None
            else None
        )
        # date_to before date_from is an empty range (no error: each value is valid alone).
        if start_from is None and self.include_past:
            start_from = EPOCH
        center = (self.near[0], self.near[1]) if self.near else None
        return CatalogueQuery(
            words=words,
            location=location,
            source=None if source == "all" else source,
            categories=_listed(self.category),
            statuses=statuses,
            start_from=start_from,
            start_to=start_to,
            center=center,
            radius_km=self.near[2] if self.near else None,
            imported=self.imported,
            addons=self.include_addons,
            sort=self.sort,
            after=(
                decode_cursor(
                    self.cursor, "cursor", instant=not (self.sort == "distance" and self.near)
                )
                if self.cursor is not None
                else None
            ),
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
    _spec(
        "status",
        {"type": "string", "pattern": STATUS_PATTERN, "maxLength": 200},
        "scheduled, cancelled, postponed, rescheduled, moved_online (comma list)",
    ),
    _spec(
        "near",
        {"type": "string", "pattern": NEAR_PATTERN},
        "lat,lon[,radius_km]: events within radius_km (default 50) of the point; each item then"
        " carries distance_km",
    ),
    _spec("imported", {"type": "boolean"}, "only imported records (or only not imported)"),
    _spec(
        "include_addons",
        {"type": "boolean", "default": False},
        "add-ons (parking passes, VIP upgrades, pre-game passes sold beside a performance) are"
        " left out unless this is true",
    ),
    _spec(
        "sort",
        {"type": "string", "enum": ["start", "-start", "updated", "-updated", "distance"]},
        "distance: nearest to `near` first (without `near`, every distance is equal: start order)",
    ),
    _spec("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
    _spec(
        "cursor",
        {"type": "string", "pattern": CURSOR_PATTERN},
        "next_cursor of the previous page (a position: value~id)",
    ),
]
_Q_DESCRIPTION = "words of the title, category, performers or venue; the last one also as a prefix"
Q_PARAMETER = _spec("q", _WORDS, _Q_DESCRIPTION)
Q_REQUIRED = _spec("q", _WORDS, _Q_DESCRIPTION, required=True)
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

    def near(self, name: str) -> tuple[float, float, float] | None:
        value = self.params.get(name)
        if value is None:
            return None
        if not _NEAR.match(value):
            self.details.append(
                field_error(f"query.{name}", "lat,lon or lat,lon,radius_km (0 < radius <= 20000)")
            )
            return None
        parts = [float(p) for p in value.split(",")]
        return parts[0], parts[1], parts[2] if len(parts) == 3 else DEFAULT_RADIUS_KM

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
    sort = read.text("sort", "start") or ""
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
        near=read.near("near"),
        imported=read.flag("imported"),
        include_addons=bool(read.flag("include_addons")),
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
