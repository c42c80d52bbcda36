"""Meetup GraphQL event node -> ExternalEvent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.normalizer.mappers._common import (
    MappingError,
    build_event,
    clean_name,
    coordinates,
    country_code,
    end_after_start,
    obj,
    objs,
    parse_aware,
    parse_duration,
    plain_text,
    postal_code,
    price_range,
    require_title,
    state_code,
    text,
    venue_or_none,
    zone,
)
from shared.contracts import EventStatus, ExternalEvent, PriceRange, RawRecord, Venue, When

_CANCELLED = {"CANCELLED", "CANCELLED_PERM"}


def map_meetup(record: RawRecord) -> ExternalEvent:
    """Map one Meetup event node (``edges[].node``)."""
    payload = obj(record.payload)
    title = require_title(payload.get("title"))
    venues = objs(payload.get("venues"))
    physical = [v for v in venues if not _is_online_venue(v)]
    event_type = (text(payload.get("eventType")) or "").upper()
    # ONLINE means online; without an eventType (older selections) a list of only online
    # venues says the same. HYBRID keeps its physical venue and is not marked online.
    online = event_type == "ONLINE" or (not event_type and bool(venues) and not physical)
    raw_venue = physical[0] if physical and not online else {}
    # Meetup sends no zone on the event; the group or venue may carry one.
    tz_name = next(
        (
            t
            for t in (
                text(obj(payload.get("group")).get("timezone")),
                text(raw_venue.get("timezone")),
            )
            if zone(t) is not None
        ),
        None,
    )
    start_at = parse_aware(payload.get("dateTime"))
    if start_at is None:
        raise MappingError("dateTime", "missing or without an offset")
    start = _when(start_at, tz_name)
    end_at = parse_aware(payload.get("endTime"))
    if end_at is None:
        # No endTime in the selection: the ISO 8601 duration (PT2H) gives it.
        duration = parse_duration(payload.get("duration"))
        end_at = start_at + duration if duration else None
    end = end_after_start(start, _when(end_at, tz_name) if end_at else None)
    status = (text(payload.get("status")) or "").upper()
    return build_event(
        record,
        title=title,
        description=plain_text(payload.get("description")),
        url=text(payload.get("eventUrl")),
        ticket_url=None,
        image_url=_image(obj(payload.get("featuredEventPhoto"))),
        status=EventStatus.CANCELLED if status in _CANCELLED else EventStatus.SCHEDULED,
        start=start,
        end=end,
        venue=_venue(raw_venue, tz_name),
        online=online,
        performers=[],
        price_range=_price(obj(payload.get("feeSettings"))),
        provider_categories=[],
    )


def _when(at: datetime, tz_name: str | None) -> When:
    """UTC from the offset (always right); the wall clock as sent (the offset's local time)."""
    tz = zone(tz_name)
    local = at.astimezone(tz) if tz is not None else at
    return When(
        utc=at.astimezone(UTC),
        local=local.replace(tzinfo=None).isoformat(timespec="seconds"),
        timezone=tz_name,
    )


def _is_online_venue(raw: dict[str, Any]) -> bool:
    kind = (text(raw.get("venueType")) or "").lower()
    name = (text(raw.get("name")) or "").lower()
    return kind == "online" or name == "online event"


def _venue(raw: dict[str, Any], tz_name: str | None) -> Venue | None:
    if not raw:
        return None
    # Junk happens: trailing ", " in names, lower-cased states, "meetup1" postal codes.
    lat, lon = coordinates(raw.get("lat"), raw.get("lon"))
    return venue_or_none(
        Venue(
            name=clean_name(raw.get("name")),
            address=clean_name(raw.get("address")),
            city=clean_name(raw.get("city")),
            state=state_code(raw.get("state")),
            country=country_code(raw.get("country")),
            postal_code=postal_code(raw.get("postalCode")),
            lat=lat,
            lon=lon,
            timezone=tz_name,
            external_id=text(raw.get("id")),
        )
    )


def _image(photo: dict[str, Any]) -> str | None:
    # A photo is {baseUrl, id}: the URL is built from both (a baseUrl alone is no image).
    url = text(photo.get("highResUrl"))
    if url:
        return url
    base, pid = text(photo.get("baseUrl")), text(photo.get("id"))
    if base and pid:
        return f"{base.rstrip('/')}/{pid}/676x380.webp"
    return None


def _price(fee: dict[str, Any]) -> PriceRange | None:
    # feeSettings is null for events without a fee; a fee is a single amount.
    amount = fee.get("amount")
    return price_range(amount, amount, fee.get("currency"))
