"""Search fields stored on every catalogue document: normalised tokens, a sort instant, a point."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

_WORD = re.compile(r"[^\W_]+")
# Location words share the token array under a prefix, so one multikey index serves both
# ``q`` and ``location`` (a city called "Reading" is not the word "reading").
LOCATION = "@"
# A TBD time sorts and filters at noon UTC of its local date: inside that UTC day, so a date
# filter finds it on its own date.
TBD_HOUR = 12

TERMS = "terms"
WHEN = "when"
DAY = "day"
GEO = "geo"
SEARCH_FIELDS = (TERMS, WHEN, DAY, GEO)
# True on an add-on (a parking pass, a VIP upgrade, a pre-game pass sold beside a performance):
# the normalizer marks it, and listings leave add-ons out unless asked for them.
ADDON = "addon"
# What the API and the importer answer to an import of one (FieldError code ``addon``).
ADDON_REFUSED = "An add-on (parking, upgrade, pass) cannot be imported as an event"


def fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def tokens(text: str | None) -> list[str]:
    """Lower case, accents folded, split on anything not a letter or digit."""
    if not text:
        return []
    return _WORD.findall(fold(text))


def _names(items: Any, key: str) -> list[str | None]:
    return [i.get(key) for i in items or () if isinstance(i, dict)]


def terms_of(doc: Mapping[str, Any]) -> list[str]:
    """Title, categories (canonical and the providers'), performers and venue name as words;
    venue name, city, state, country and postal code as ``@`` location words."""
    venue = doc.get("venue") or {}
    words: set[str] = set()
    for part in (
        doc.get("title"),
        doc.get("category"),
        doc.get("subcategory"),
        venue.get("name"),
        *_names(doc.get("provider_categories"), "name"),
        *_names(doc.get("performers"), "name"),
    ):
        words.update(tokens(part))
    for part in (
        venue.get("name"),
        venue.get("city"),
        venue.get("state"),
        venue.get("country"),
        venue.get("postal_code"),
    ):
        words.update(LOCATION + t for t in tokens(part))
    return sorted(words)


def when_of(start: Mapping[str, Any] | None) -> datetime | None:
    """The instant an event sorts and filters by: its UTC start, or noon UTC of its local date
    when only the date is known."""
    if not start:
        return None
    utc = start.get("utc")
    if isinstance(utc, datetime):
        return utc.astimezone(UTC)
    if isinstance(utc, str) and utc:
        return datetime.fromisoformat(utc.replace("Z", "+00:00")).astimezone(UTC)
    local = start.get("local")
    if isinstance(local, str) and len(local) >= 10:
        try:
            day = date.fromisoformat(local[:10])
        except ValueError:
            return None
        return datetime.combine(day, time(TBD_HOUR), tzinfo=UTC)
    return None


def day_of(when: datetime) -> str:
    """The UTC date of an instant (``2026-12-04``): with a word it keys the word's index entries
    by day, so a range of days is a set of exact keys (see services/api/catalogue.py)."""
    return when.astimezone(UTC).date().isoformat()


def point_of(venue: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The venue as a GeoJSON point (longitude first), for the 2dsphere index."""
    if not venue:
        return None
    lat, lon = venue.get("lat"), venue.get("lon")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    return {"type": "Point", "coordinates": [float(lon), float(lat)]}


def search_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The fields to store beside a document; a missing instant or point is left out (the
    2dsphere index refuses a null point; a missing field is simply not indexed)."""
    found: dict[str, Any] = {TERMS: terms_of(doc)}
    when = when_of(doc.get("start"))
    if when is not None:
        found[WHEN] = when
        found[DAY] = day_of(when)
    point = point_of(doc.get("venue"))
    if point is not None:
        found[GEO] = point
    return found


def with_search_fields(docs: Iterable[dict[str, Any]]) -> None:
    """Add the search fields to documents about to be written (in place)."""
    for doc in docs:
        for name in SEARCH_FIELDS:
            doc.pop(name, None)
        doc.update(search_fields(doc))


def name_key(name: str) -> str:
    """How artist names are compared (the ``artists`` collection's ``name_key``): their words,
    lower case, accents folded."""
    return " ".join(tokens(name))
