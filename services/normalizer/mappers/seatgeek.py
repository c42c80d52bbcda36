"""SeatGeek Platform v2 event -> ExternalEvent."""

from __future__ import annotations

from typing import Any

from services.normalizer.categories import canonical_category, match_name
from services.normalizer.mappers._common import (
    MappingError,
    build_event,
    clean_name,
    coordinates,
    country_code,
    end_after_start,
    flag,
    make_when,
    obj,
    objs,
    parse_local,
    parse_utc,
    plain_text,
    postal_code,
    price_range,
    require_title,
    state_code,
    text,
    venue_or_none,
)
from shared.contracts import (
    EventStatus,
    ExternalEvent,
    Performer,
    Provider,
    ProviderCategory,
    RawRecord,
    Venue,
    When,
)


def map_seatgeek(record: RawRecord) -> ExternalEvent:
    """Map one SeatGeek event object (as listed in ``events``)."""
    payload = obj(record.payload)
    title = require_title(payload.get("title") or payload.get("short_title"))
    raw_venue = obj(payload.get("venue"))
    tz = text(raw_venue.get("timezone"))
    start = _start(payload, tz)
    end_utc = parse_utc(payload.get("enddatetime_utc"))
    end = None if end_utc is None else make_when(utc=end_utc, local=None, timezone=tz)
    raw_performers = objs(payload.get("performers"))
    performers = [_performer(p) for p in raw_performers if clean_name(p.get("name"))]
    categories = _categories(payload)
    category, subcategory = canonical_category(Provider.SEATGEEK, categories)
    if category == "music" and subcategory is None:
        # SeatGeek taxonomies stop at "concert"; the performers' genres say which music.
        for genre in (g for p in performers for g in p.genres):
            match = match_name(genre)
            if match is not None and match[0] == "music" and match[1] is not None:
                subcategory = match[1]
                break
    stats = obj(payload.get("stats"))
    return build_event(
        record,
        title=title,
        description=plain_text(payload.get("description")),
        url=text(payload.get("url")),
        ticket_url=text(payload.get("url")),
        image_url=_image(raw_performers),
        status=_status(payload),
        start=start,
        end=end_after_start(start, end),
        venue=_venue(raw_venue),
        online=False,
        performers=performers,
        # Prices are USD; with no listings every stat is null and there is no range.
        price_range=price_range(stats.get("lowest_price"), stats.get("highest_price"), "USD"),
        provider_categories=categories,
        category=category,
        subcategory=subcategory,
    )


def _start(payload: dict[str, Any], tz: str | None) -> When:
    # ``datetime_utc`` is UTC although it carries no "Z"; ``datetime_local`` has no offset.
    utc = parse_utc(payload.get("datetime_utc"))
    local = parse_local(payload.get("datetime_local"))
    date_tbd = flag(payload.get("date_tbd")) or flag(payload.get("datetime_tbd"))
    # An unknown time shows as 03:30 local: a placeholder, so the time (and its UTC) is dropped.
    time_tbd = flag(payload.get("time_tbd")) or flag(payload.get("datetime_tbd")) or date_tbd
    when = make_when(utc=utc, local=local, timezone=tz, date_tbd=date_tbd, time_tbd=time_tbd)
    if when is None:
        raise MappingError("datetime_utc", "neither datetime_utc nor datetime_local is usable")
    return when


def _status(payload: dict[str, Any]) -> EventStatus:
    # SeatGeek drops cancelled events from its lists ("normal" is all one sees); a status that
    # does say otherwise is still honoured.
    status = (text(payload.get("status")) or "").lower()
    if "cancel" in status:
        return EventStatus.CANCELLED
    if "postpone" in status:
        return EventStatus.POSTPONED
    if "reschedul" in status:
        return EventStatus.RESCHEDULED
    return EventStatus.SCHEDULED


def _venue(raw: dict[str, Any]) -> Venue | None:
    if not raw:
        return None
    location = obj(raw.get("location"))
    lat, lon = coordinates(location.get("lat"), location.get("lon"))
    return venue_or_none(
        Venue(
            name=clean_name(raw.get("name")),
            address=text(raw.get("address")),
            city=text(raw.get("city")),
            state=state_code(raw.get("state")),
            country=country_code(raw.get("country")),
            postal_code=postal_code(raw.get("postal_code")),
            lat=lat,
            lon=lon,
            timezone=text(raw.get("timezone")),
            external_id=text(raw.get("id")),
        )
    )


def _performer(raw: dict[str, Any]) -> Performer:
    genres = [n for n in (text(g.get("name")) for g in objs(raw.get("genres"))) if n]
    return Performer(
        name=clean_name(raw.get("name")) or "",
        external_id=text(raw.get("id")),
        genres=genres,
    )


def _image(performers: list[dict[str, Any]]) -> str | None:
    # Events have no image of their own; the primary performer's "huge" image is the best one.
    ordered = sorted(performers, key=lambda p: not flag(p.get("primary")))
    for p in ordered:
        url = text(obj(p.get("images")).get("huge")) or text(p.get("image"))
        if url:
            return url
    return None


def _categories(payload: dict[str, Any]) -> list[ProviderCategory]:
    """The taxonomies (root first, as SeatGeek lists them) and the event ``type``."""
    out: list[ProviderCategory] = []
    for t in objs(payload.get("taxonomies")):
        name = text(t.get("name"))
        if name:
            out.append(
                ProviderCategory(
                    source=Provider.SEATGEEK,
                    external_id=text(t.get("id")),
                    name=name,
                    level="taxonomy",
                )
            )
    event_type = text(payload.get("type"))
    if event_type and all(pc.name != event_type for pc in out):
        # The type is the most specific label ("mlb", "parking"): it also flags add-ons.
        out.append(ProviderCategory(source=Provider.SEATGEEK, name=event_type, level="type"))
    return out
