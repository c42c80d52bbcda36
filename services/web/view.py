"""Pure helpers of the pages: form fields → listing parameters, stored documents → what a page
shows (dates, prices, performers, links) and the schema.org ``Event`` JSON-LD. No I/O here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from shared.contracts import EventStatus
from shared.mongo import Document

PROVIDER_NAMES = {
    "ticketmaster": "Ticketmaster",
    "seatgeek": "SeatGeek",
    "eventbrite": "Eventbrite",
    "meetup": "Meetup",
    "spotify": "Spotify",
}
# The search form's fields, in the order of the page; each maps onto a listing parameter.
FORM_FIELDS = ("q", "source", "category", "date_from", "date_to", "lat", "lon", "radius_km")
# A listing error's field (params.py names them so) → the form field it belongs to.
ERROR_FIELDS = {
    "q": "q",
    "source": "source",
    "category": "category",
    "date_from": "date_from",
    "date_to": "date_to",
    "query.near": "lat",
    "radius_km": "radius_km",
    "cursor": "q",
    "query.cursor": "q",
}
PAGE_SIZE = 20


def provider_name(source: Any) -> str:
    return PROVIDER_NAMES.get(str(source), str(source).title())


def form_values(params: Mapping[str, str]) -> dict[str, str]:
    """The search form's fields as given (stripped), empty ones left out."""
    return {name: params[name].strip() for name in FORM_FIELDS if params.get(name, "").strip()}


def listing_params(form: Mapping[str, str], cursor: str | None) -> tuple[dict[str, str], list[str]]:
    """The listing parameters (as ``/events`` reads them) for the form's values, and the form's
    own errors (a point needs both latitude and longitude)."""
    out: dict[str, str] = {"limit": str(PAGE_SIZE)}
    errors: list[str] = []
    for name in ("source", "category", "date_from", "date_to"):
        if name in form and not (name == "source" and form[name] == "all"):
            out[name] = form[name]
    lat, lon, radius = form.get("lat"), form.get("lon"), form.get("radius_km")
    if lat or lon:
        if not (lat and lon):
            errors.append("lat")
        else:
            out["near"] = f"{lat},{lon}" + (f",{radius}" if radius else "")
    elif radius:
        errors.append("lat")
    if cursor:
        out["cursor"] = cursor
    return out, errors


def count_text(total: int, exact: bool) -> str:
    """How many matches (from this page on): exact, or a lower bound."""
    if not exact:
        return f"More than {total} events"
    return "1 event" if total == 1 else f"{total} events"


def page_link(form: Mapping[str, str], cursor: str | None = None) -> str:
    """The search page's URL for these form values (and a cursor: the next page)."""
    query = dict(form)
    if cursor:
        query["cursor"] = cursor
    return "/web/" + (f"?{urlencode(query)}" if query else "")


def when_text(when: Any) -> str:
    """A stored ``When`` as people read it: the local wall clock and its zone."""
    if not isinstance(when, Mapping):
        return "date to be announced"
    if when.get("date_tbd"):
        return "date to be announced"
    local, zone = when.get("local"), when.get("timezone")
    moment: datetime | None = None
    if isinstance(local, str):
        try:
            moment = datetime.fromisoformat(local)
        except ValueError:
            moment = None
    if moment is None and isinstance(when.get("utc"), datetime):
        moment, zone = when["utc"].astimezone(UTC), "UTC"
    if moment is None:
        return "date to be announced"
    text = (
        moment.strftime("%a %d %b %Y")
        if when.get("time_tbd")
        else moment.strftime("%a %d %b %Y, %H:%M")
    )
    return f"{text} ({zone})" if zone else text


def iso_utc(when: Any) -> str | None:
    """The UTC instant of a stored ``When`` as ISO 8601 (``…Z``)."""
    moment = when.get("utc") if isinstance(when, Mapping) else None
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return None


def place_text(venue: Any) -> str:
    if not isinstance(venue, Mapping):
        return ""
    parts = [venue.get("name"), venue.get("city"), venue.get("state"), venue.get("country")]
    return ", ".join(str(p) for p in parts if p)


def safe_url(value: Any) -> str | None:
    """An http(s) URL to link to, or None (a ``javascript:`` or odd value is never a link)."""
    if not isinstance(value, str) or len(value) > 2000:
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def price_text(price: Any) -> str:
    if not isinstance(price, Mapping):
        return ""
    low, high, currency = price.get("min"), price.get("max"), price.get("currency") or ""
    if low is None and high is None:
        return ""
    if low is None or high is None or low == high:
        one = low if low is not None else high
        return f"{currency} {one:,.2f}".strip()
    return f"{currency} {low:,.2f}\u2013{high:,.2f}".strip()


def price_ranges(docs: Iterable[Document]) -> list[dict[str, Any]]:
    """One range per currency over every record's price range (the lowest minimum, the highest
    maximum)."""
    found: dict[str, dict[str, Any]] = {}
    for doc in docs:
        price = doc.get("price_range")
        if not isinstance(price, Mapping):
            continue
        values = [v for v in (price.get("min"), price.get("max")) if isinstance(v, int | float)]
        if not values:
            continue
        currency = str(price.get("currency") or "")
        entry = found.setdefault(currency, {"currency": currency, "min": min(values), "max": 0})
        entry["min"] = min(entry["min"], *values)
        entry["max"] = max(entry["max"], *values)
    return [found[c] for c in sorted(found)]


def performers(event: Document, records: Iterable[Document]) -> list[dict[str, Any]]:
    """Every performer once (by name, case-insensitively), the canonical event's first, with
    the Spotify genres, id and popularity any record gives."""
    found: dict[str, dict[str, Any]] = {}
    for doc in (event, *records):
        for person in doc.get("performers") or []:
            if not isinstance(person, Mapping) or not person.get("name"):
                continue
            entry = found.setdefault(
                str(person["name"]).casefold(),
                {"name": person["name"], "genres": [], "spotify_id": None, "popularity": None},
            )
            for genre in person.get("genres") or []:
                if genre not in entry["genres"]:
                    entry["genres"].append(genre)
            entry["spotify_id"] = entry["spotify_id"] or person.get("spotify_id")
            if entry["popularity"] is None:
                entry["popularity"] = person.get("popularity")
    return list(found.values())


def ticket_links(records: Iterable[Document]) -> list[dict[str, str]]:
    links = []
    for doc in records:
        url = safe_url(doc.get("ticket_url")) or safe_url(doc.get("url"))
        if url:
            links.append({"source": str(doc.get("source")), "url": url})
    return links


def status_name(status: Any) -> str:
    """``EventScheduled`` → ``scheduled``."""
    text = str(status or EventStatus.SCHEDULED.value)
    return text.removeprefix("Event").lower() if text.startswith("Event") else text


def json_ld(event: Document, records: list[Document], page_url: str) -> dict[str, Any]:
    """The canonical event as a schema.org ``Event`` (what search engines read from the page)."""
    out: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Event",
        "@id": page_url,
        "url": page_url,
        "name": event.get("title"),
        "eventStatus": f"https://schema.org/{event.get('status') or EventStatus.SCHEDULED.value}",
        "eventAttendanceMode": "https://schema.org/"
        + ("OnlineEventAttendanceMode" if event.get("online") else "OfflineEventAttendanceMode"),
    }
    if event.get("description"):
        out["description"] = event["description"]
    if start := iso_utc(event.get("start")):
        out["startDate"] = start
    if end := iso_utc(event.get("end")):
        out["endDate"] = end
    if isinstance(event.get("previous_start"), datetime):
        out["previousStartDate"] = event["previous_start"].astimezone(UTC).isoformat()
    venue = event.get("venue")
    if isinstance(venue, Mapping):
        place: dict[str, Any] = {"@type": "Place", "name": venue.get("name")}
        address = {
            "@type": "PostalAddress",
            "streetAddress": venue.get("address"),
            "addressLocality": venue.get("city"),
            "addressRegion": venue.get("state"),
            "postalCode": venue.get("postal_code"),
            "addressCountry": venue.get("country"),
        }
        place["address"] = {k: v for k, v in address.items() if v}
        if isinstance(venue.get("lat"), int | float) and isinstance(venue.get("lon"), int | float):
            place["geo"] = {
                "@type": "GeoCoordinates",
                "latitude": venue["lat"],
                "longitude": venue["lon"],
            }
        out["location"] = {k: v for k, v in place.items() if v}
    people = performers(event, records)
    if people:
        out["performer"] = [
            {"@type": "PerformingGroup", "name": p["name"]}
            | ({"genre": p["genres"]} if p["genres"] else {})
            for p in people
        ]
    ranges = price_ranges([event, *records])
    tickets = ticket_links(records)
    if ranges:
        first = ranges[0]
        offer: dict[str, Any] = {
            "@type": "AggregateOffer",
            "lowPrice": first["min"],
            "highPrice": first["max"],
            "offerCount": len(records),
        }
        if first["currency"]:
            offer["priceCurrency"] = first["currency"]
        if tickets:
            offer["url"] = tickets[0]["url"]
        out["offers"] = offer
    image = safe_url(event.get("image_url"))
    if image:
        out["image"] = [image]
    same = [t["url"] for t in tickets]
    if same:
        out["sameAs"] = same
    return out


def script_json(value: Any) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` escaped, so no text of an event can
    close the element."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a page of this site only (never another host)."""
    if target and target.startswith("/web/") and not target.startswith("//"):
        return target
    return "/web/"
