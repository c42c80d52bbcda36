"""Ticketmaster Discovery v2 event -> ExternalEvent."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from services.normalizer.mappers._common import (
    MappingError,
    build_event,
    clean_name,
    coordinates,
    country_code,
    end_after_start,
    flag,
    largest_image,
    make_when,
    number,
    obj,
    objs,
    parse_date,
    parse_time,
    parse_utc,
    plain_text,
    postal_code,
    price_range,
    require_title,
    state_code,
    text,
    venue_or_none,
    zone,
)
from shared.contracts import (
    EventStatus,
    ExternalEvent,
    Performer,
    PriceRange,
    Provider,
    ProviderCategory,
    RawRecord,
    Venue,
    When,
)

_STATUS = {
    "onsale": EventStatus.SCHEDULED,
    "offsale": EventStatus.SCHEDULED,
    # The docs spell it "canceled"; "cancelled" has been seen too: accept both.
    "canceled": EventStatus.CANCELLED,
    "cancelled": EventStatus.CANCELLED,
    "postponed": EventStatus.POSTPONED,
    "rescheduled": EventStatus.RESCHEDULED,
}

# Ticketmaster's placeholder for "no such level" in classifications: carries no information.
_UNDEFINED = "undefined"

_SPOTIFY_ID = re.compile(r"(?:open\.spotify\.com/artist/|spotify:artist:)([A-Za-z0-9]{22})")


def map_ticketmaster(record: RawRecord) -> ExternalEvent:
    """Map one Ticketmaster event object (as listed in ``_embedded.events``)."""
    payload = obj(record.payload)
    title = require_title(payload.get("name"))
    dates = obj(payload.get("dates"))
    # ``_embedded`` is missing entirely on some events (no venue, no attractions).
    embedded = obj(payload.get("_embedded"))
    venues = objs(embedded.get("venues"))
    raw_venue = venues[0] if venues else {}
    # The zone is on ``dates.timezone``, which is sometimes absent; the venue carries one too.
    tz = text(dates.get("timezone")) if zone(dates.get("timezone")) else None
    tz = tz or text(raw_venue.get("timezone"))
    start = _start(obj(dates.get("start")), tz)
    end = end_after_start(start, _end(obj(dates.get("end")), tz))
    classifications = objs(payload.get("classifications"))
    return build_event(
        record,
        title=title,
        description=_description(payload),
        url=text(payload.get("url")),
        ticket_url=text(payload.get("url")),
        image_url=largest_image(payload.get("images")),
        # An empty or unknown status object ({} happens) announces nothing: scheduled.
        status=_STATUS.get(
            (text(obj(dates.get("status")).get("code")) or "").lower(), EventStatus.SCHEDULED
        ),
        start=start,
        end=end,
        venue=_venue(raw_venue, tz),
        online=False,
        performers=[
            _performer(a) for a in objs(embedded.get("attractions")) if clean_name(a.get("name"))
        ],
        price_range=_price(payload.get("priceRanges")),
        provider_categories=_categories(classifications),
    )


def _start(start: dict[str, Any], tz: str | None) -> When:
    local_date = parse_date(start.get("localDate"))
    local_time = parse_time(start.get("localTime"))
    utc = parse_utc(start.get("dateTime"))
    date_tbd = flag(start.get("dateTBD")) or flag(start.get("dateTBA"))
    # timeTBA / noSpecificTime, or a date that comes without any time, all mean "time unknown".
    time_tbd = (
        flag(start.get("timeTBA"))
        or flag(start.get("noSpecificTime"))
        or (local_time is None and utc is None)
    )
    local: datetime | date | None = None
    if time_tbd:
        local = local_date
    elif local_date is not None and local_time is not None:
        local = datetime.combine(local_date, local_time)
    # With the time unknown, make_when keeps only the day (from localDate, else UTC + zone).
    when = make_when(utc=utc, local=local, timezone=tz, date_tbd=date_tbd, time_tbd=time_tbd)
    if when is None:
        raise MappingError("dates.start", "no localDate and no dateTime")
    return when


def _end(end: dict[str, Any], tz: str | None) -> When | None:
    utc = parse_utc(end.get("dateTime"))
    local_date, local_time = parse_date(end.get("localDate")), parse_time(end.get("localTime"))
    # An end often has a localTime without localDate: useless alone, so UTC decides then.
    local = (
        datetime.combine(local_date, local_time)
        if local_date is not None and local_time is not None
        else None
    )
    if utc is None and local is None:
        return None
    return make_when(utc=utc, local=local, timezone=tz)


def _description(payload: dict[str, Any]) -> str | None:
    # ``description`` exists on some (older) events; ``info`` and ``pleaseNote`` are often absent.
    parts = [plain_text(payload.get(k)) for k in ("description", "info", "pleaseNote")]
    seen: list[str] = []
    for part in parts:
        if part and part not in seen:
            seen.append(part)
    return "\n\n".join(seen) or None


def _venue(raw: dict[str, Any], tz: str | None) -> Venue | None:
    if not raw:
        return None
    location = obj(raw.get("location"))
    # Latitude and longitude arrive as strings ("-87.62480800"); junk becomes None.
    lat, lon = coordinates(location.get("latitude"), location.get("longitude"))
    address = obj(raw.get("address"))
    lines = [text(address.get(k)) for k in ("line1", "line2", "line3")]
    return venue_or_none(
        Venue(
            name=clean_name(raw.get("name")),
            address=", ".join(x for x in lines if x) or None,
            city=text(obj(raw.get("city")).get("name")),
            state=state_code(obj(raw.get("state")).get("stateCode"))
            or text(obj(raw.get("state")).get("name")),
            country=country_code(obj(raw.get("country")).get("countryCode")),
            postal_code=postal_code(raw.get("postalCode")),
            lat=lat,
            lon=lon,
            timezone=text(raw.get("timezone")) or tz,
            external_id=text(raw.get("id")),
        )
    )


def _performer(raw: dict[str, Any]) -> Performer:
    spotify_id = None
    links = obj(raw.get("externalLinks"))
    for link in objs(links.get("spotify")):
        match = _SPOTIFY_ID.search(text(link.get("url")) or "")
        if match:
            spotify_id = match.group(1)
            break
    genres: list[str] = []
    for c in objs(raw.get("classifications")):
        for level in ("genre", "subGenre"):
            name = text(obj(c.get(level)).get("name"))
            if name and name.lower() != _UNDEFINED and name not in genres:
                genres.append(name)
    return Performer(
        name=clean_name(raw.get("name")) or "",
        external_id=text(raw.get("id")),
        spotify_id=spotify_id,
        genres=genres,
    )


def _price(raw: Any) -> PriceRange | None:
    ranges = objs(raw)
    lows = [v for v in (number(r.get("min")) for r in ranges) if v is not None]
    highs = [v for v in (number(r.get("max")) for r in ranges) if v is not None]
    currency = next((text(r.get("currency")) for r in ranges if text(r.get("currency"))), None)
    return price_range(min(lows, default=None), max(highs, default=None), currency)


def _categories(classifications: list[dict[str, Any]]) -> list[ProviderCategory]:
    """segment / genre / subGenre (and type / subType: add-on hints such as "Upsell")."""
    # The primary classification first: it decides the canonical category.
    ordered = sorted(classifications, key=lambda c: not flag(c.get("primary")))
    out: list[ProviderCategory] = []
    for c in ordered:
        for key, level in (
            ("segment", "segment"),
            ("genre", "genre"),
            ("subGenre", "subgenre"),
            ("type", "type"),
            ("subType", "subtype"),
        ):
            part = obj(c.get(key))
            name = text(part.get("name"))
            if name is None or name.lower() == _UNDEFINED:
                continue
            pc = ProviderCategory(
                source=Provider.TICKETMASTER,
                external_id=text(part.get("id")),
                name=name,
                level=level,
            )
            if pc not in out:
                out.append(pc)
    return out
