"""Helpers shared by the provider mappers: errors, safe field access, times, places, prices."""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.normalizer.categories import canonical_category
from shared.contracts import RawRecord
from shared.contracts.documents import ExternalEvent, PriceRange, ProviderCategory, Venue, When


class MappingError(ValueError):
    """A provider record that cannot become an ExternalEvent; the message names field and why.

    The normalizer sends the record to the dead-letter queue with this message.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# ---------------- safe access ----------------
def obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (providers send null, [] or {})."""
    return value if isinstance(value, dict) else {}


def objs(value: Any) -> list[dict[str, Any]]:
    """The JSON objects in ``value`` if it is a list (anything else in it is skipped)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def text(value: Any) -> str | None:
    """A stripped non-empty string, or None (numbers are accepted: ids arrive as both)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def flag(value: Any) -> bool:
    """A JSON boolean that may also arrive as the strings "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return value is True


_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<\s*(br|/p|/div|/li)\s*/?>", re.IGNORECASE)


def plain_text(value: Any) -> str | None:
    """Plain text from a description that may hold HTML (tags dropped, entities decoded)."""
    raw = text(value)
    if raw is None:
        return None
    if "<" in raw and ">" in raw:
        raw = _TAG.sub("", _BREAK.sub("\n", raw))
    raw = html.unescape(raw)
    lines = [" ".join(line.split()) for line in raw.splitlines()]
    out = "\n".join(lines).strip()
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out or None


def require_title(value: Any) -> str:
    title = text(value)
    if title is None:
        raise MappingError("title", "missing or blank")
    return " ".join(title.split())


# ---------------- numbers and places ----------------
def number(value: Any) -> float | None:
    """A finite float from a number or a numeric string (Ticketmaster/Eventbrite send strings)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return out if math.isfinite(out) else None


# Meetup puts every online venue at this spot in the Pacific (near Tuvalu): not a real place.
_ONLINE_PLACEHOLDER = (-8.521147, 179.1962)


def coordinates(lat_raw: Any, lon_raw: Any) -> tuple[float | None, float | None]:
    """Numeric lat/lon, or (None, None) for junk: non-numeric, out of range, (0, 0), placeholder."""
    lat, lon = number(lat_raw), number(lon_raw)
    if lat is None or lon is None:
        return None, None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    if lat == 0 and lon == 0:  # "null island": an unset geocode, not a venue in the Atlantic
        return None, None
    if (round(lat, 4), round(lon, 4)) == (
        round(_ONLINE_PLACEHOLDER[0], 4),
        round(_ONLINE_PLACEHOLDER[1], 4),
    ):
        return None, None
    return lat, lon


def country_code(value: Any) -> str | None:
    """An ISO 3166-1 alpha-2 code, upper-cased (Meetup sends "ng"); anything else is dropped."""
    code = text(value)
    if code is None or len(code) != 2 or not code.isalpha():
        return None
    return code.upper()


def state_code(value: Any) -> str | None:
    """A region; short codes are upper-cased (Meetup sometimes lower-cases them)."""
    state = text(value)
    if state is None:
        return None
    return state.upper() if len(state) <= 3 and state.isalpha() else state


_JUNK_POSTAL = re.compile(r"^meetup\d*$", re.IGNORECASE)


def postal_code(value: Any) -> str | None:
    """A postal code; Meetup's placeholder ("meetup1") and values without a digit are junk."""
    code = text(value)
    if code is None or _JUNK_POSTAL.match(code) or not any(c.isdigit() for c in code):
        return None
    return code


def venue_or_none(venue: Venue) -> Venue | None:
    """None when the provider gave no usable venue field at all."""
    if venue.model_dump(exclude_defaults=True):
        return venue
    return None


def clean_name(value: Any) -> str | None:
    """A name without the trailing separators some providers leave ("Building, ")."""
    name = text(value)
    if name is None:
        return None
    name = " ".join(name.split()).rstrip(",;- ").strip()
    return name or None


# ---------------- prices ----------------
def price_range(low: Any, high: Any, currency: Any) -> PriceRange | None:
    """A PriceRange, or None when neither bound is known (e.g. SeatGeek without listings)."""
    lo, hi = number(low), number(high)
    lo = lo if lo is not None and lo >= 0 else None
    hi = hi if hi is not None and hi >= 0 else None
    if lo is None and hi is None:
        return None
    if lo is not None and hi is not None and hi < lo:
        lo, hi = hi, lo
    cur = text(currency)
    cur = cur.upper() if cur is not None and len(cur) == 3 and cur.isalpha() else None
    return PriceRange(min=lo, max=hi, currency=cur)


# ---------------- times ----------------
def zone(name: Any) -> ZoneInfo | None:
    """The IANA zone called ``name``, or None when absent or unknown to the tz database."""
    key = text(name)
    if key is None:
        return None
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _iso(value: Any) -> datetime | None:
    """An ISO 8601 datetime as written (offset or not), or None when absent or unreadable."""
    raw = text(value)
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def parse_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO string; a string without offset is taken as UTC.

    SeatGeek's ``datetime_utc`` has no "Z" although it is UTC; Ticketmaster and Eventbrite add one.
    """
    parsed = _iso(value)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_aware(value: Any) -> datetime | None:
    """An ISO datetime that must carry its own offset (Meetup); None if it has none."""
    parsed = _iso(value)
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def parse_local(value: Any) -> datetime | None:
    """A naive wall-clock datetime; any offset in the string is dropped (wall time kept)."""
    parsed = _iso(value)
    return parsed.replace(tzinfo=None) if parsed is not None else None


def parse_date(value: Any) -> date | None:
    raw = text(value)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        return None


def parse_time(value: Any) -> time | None:
    raw = text(value)
    if raw is None:
        return None
    try:
        return time.fromisoformat(raw)
    except ValueError:
        return None


_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any) -> timedelta | None:
    """An ISO 8601 duration such as PT2H or PT2H30M (no years or months: not fixed lengths)."""
    raw = text(value)
    if raw is None:
        return None
    match = _DURATION.match(raw.upper())
    if match is None or raw.upper() in ("P", "PT"):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(
        weeks=parts.get("w", 0),
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )


def _wall(dt: datetime) -> str:
    return dt.replace(tzinfo=None).isoformat(timespec="seconds")


def make_when(
    *,
    utc: datetime | None,
    local: datetime | date | None,
    timezone: Any,
    date_tbd: bool = False,
    time_tbd: bool = False,
) -> When | None:
    """A When from what the provider gave, filling the missing side from the IANA zone.

    * local + zone, no UTC: UTC is computed (zoneinfo resolves DST; an ambiguous wall time takes
      its first occurrence, fold=0).
    * UTC + zone, no local: local is computed.
    * unknown time (``time_tbd``): ``utc`` is None and ``local`` is the date only; the date comes
      from ``local`` or, failing that, from UTC seen in the zone.
    * an unknown zone name is dropped, never guessed.
    Returns None when there is neither a local date nor a UTC instant.
    """
    tz = zone(timezone)
    tz_name = str(tz.key) if tz is not None else None
    if time_tbd:
        day: date | None
        if isinstance(local, datetime):
            day = local.date()
        elif isinstance(local, date):
            day = local
        elif utc is not None and tz is not None:
            day = utc.astimezone(tz).date()
        else:
            day = None
        if day is None:
            return None
        return When(
            utc=None, local=day.isoformat(), timezone=tz_name, date_tbd=date_tbd, time_tbd=True
        )
    if isinstance(local, date) and not isinstance(local, datetime):
        # A date without a time that nobody flagged as TBD is still a date-only value.
        return make_when(utc=utc, local=local, timezone=timezone, date_tbd=date_tbd, time_tbd=True)
    if utc is None and local is not None and tz is not None:
        utc = local.replace(tzinfo=tz).astimezone(UTC)
    if local is None and utc is not None and tz is not None:
        local = utc.astimezone(tz)
    if utc is None and local is None:
        return None
    return When(
        utc=utc,
        local=_wall(local) if local is not None else None,
        timezone=tz_name,
        date_tbd=date_tbd,
        time_tbd=False,
    )


def flat_utc(when: When) -> datetime | None:
    """The instant for the flat ``start_utc`` index copy.

    A known time gives its UTC. An unknown time (TBD) gives the start of its local day in UTC,
    so that date-range queries and blocking still see the event; without a zone there is no
    such instant and the result is None.
    """
    if when.utc is not None:
        return when.utc
    if when.time_tbd and when.local and when.timezone:
        day = parse_date(when.local)
        tz = zone(when.timezone)
        if day is not None and tz is not None:
            return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    return None


def end_after_start(start: When, end: When | None) -> When | None:
    """Drop an end that precedes the start: a provider data error that would break ranges."""
    if end is None:
        return None
    if start.utc is not None and end.utc is not None and end.utc < start.utc:
        return None
    return end


# ---------------- assembly ----------------
def build_event(record: RawRecord, **fields: Any) -> ExternalEvent:
    """The ExternalEvent with the fields every mapper fills the same way."""
    start: When = fields["start"]
    venue: Venue | None = fields.get("venue")
    categories: list[ProviderCategory] = fields.get("provider_categories", [])
    if "category" not in fields:
        fields["category"], fields["subcategory"] = canonical_category(record.provider, categories)
    return ExternalEvent(
        source=record.provider,
        external_id=record.external_id,
        start_utc=flat_utc(start),
        venue_city=venue.city if venue is not None else None,
        content_hash=record.payload_hash,
        last_synced=record.fetched_at,
        **fields,
    )


def largest_image(images: Any) -> str | None:
    """The URL of the largest image, preferring provider-made ones over generic fallbacks."""
    best: tuple[bool, float, str] | None = None
    for image in objs(images):
        url = text(image.get("url"))
        if url is None:
            continue
        width, height = number(image.get("width")) or 0, number(image.get("height")) or 0
        key = (not flag(image.get("fallback")), width * height, url)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best is not None else None
