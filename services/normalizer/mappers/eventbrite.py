"""Eventbrite v3 event (with its venue, tickets and sales-status expansions) -> ExternalEvent."""

from __future__ import annotations

from typing import Any

from services.normalizer.categories import (
    EVENTBRITE_CATEGORIES,
    EVENTBRITE_FORMATS,
    EVENTBRITE_SUBCATEGORIES,
)
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
    PriceRange,
    Provider,
    ProviderCategory,
    RawRecord,
    Venue,
    When,
)


def map_eventbrite(record: RawRecord) -> ExternalEvent:
    """Map one Eventbrite event object (from an organization/venue list or events/{id})."""
    payload = obj(record.payload)
    title = require_title(obj(payload.get("name")).get("text") or payload.get("name"))
    start = _when(obj(payload.get("start")))
    if start is None:
        raise MappingError("start", "neither start.utc nor start.local is usable")
    end = end_after_start(start, _when(obj(payload.get("end"))))
    description = obj(payload.get("description"))
    logo = obj(payload.get("logo"))
    return build_event(
        record,
        title=title,
        description=plain_text(description.get("text"))
        or plain_text(description.get("html"))
        or plain_text(payload.get("summary")),
        url=text(payload.get("url")),
        ticket_url=text(payload.get("url")),
        # The original upload is the largest; ``logo.url`` is a 450x200 crop of it.
        image_url=text(obj(logo.get("original")).get("url")) or text(logo.get("url")),
        status=_status(payload),
        start=start,
        end=end,
        venue=_venue(obj(payload.get("venue"))),
        online=flag(payload.get("online_event")),
        performers=[],
        price_range=_price(payload),
        provider_categories=_categories(payload),
        source_updated_at=parse_utc(payload.get("changed")),
    )


def _when(raw: dict[str, Any]) -> When | None:
    return make_when(
        utc=parse_utc(raw.get("utc")),
        local=parse_local(raw.get("local")),
        timezone=raw.get("timezone"),
    )


def _status(payload: dict[str, Any]) -> EventStatus:
    # A cancelled event can still read "live" or "completed": the sales status tells the truth.
    sales = obj(payload.get("event_sales_status"))
    code = (text(sales.get("message_code")) or "").lower()
    status = (text(payload.get("status")) or "").lower()
    if code == "event_cancelled" or status in ("canceled", "cancelled"):
        return EventStatus.CANCELLED
    if code == "event_postponed":
        return EventStatus.POSTPONED
    return EventStatus.SCHEDULED


def _venue(raw: dict[str, Any]) -> Venue | None:
    # Only present with expand=venue (null for online events); the list gives just venue_id.
    if not raw:
        return None
    address = obj(raw.get("address"))
    lat, lon = coordinates(
        address.get("latitude") if address.get("latitude") is not None else raw.get("latitude"),
        address.get("longitude") if address.get("longitude") is not None else raw.get("longitude"),
    )
    lines = [text(address.get("address_1")), text(address.get("address_2"))]
    return venue_or_none(
        Venue(
            name=clean_name(raw.get("name")),
            address=", ".join(x for x in lines if x) or None,
            city=text(address.get("city")),
            state=state_code(address.get("region")),
            country=country_code(address.get("country")),
            postal_code=postal_code(address.get("postal_code")),
            lat=lat,
            lon=lon,
            external_id=text(raw.get("id")),
        )
    )


def _price(payload: dict[str, Any]) -> PriceRange | None:
    tickets = obj(payload.get("ticket_availability"))
    low, high = obj(tickets.get("minimum_ticket_price")), obj(tickets.get("maximum_ticket_price"))
    found = price_range(
        low.get("major_value"),
        high.get("major_value"),
        text(low.get("currency")) or text(high.get("currency")) or payload.get("currency"),
    )
    if found is None and flag(payload.get("is_free")):
        return price_range(0, 0, payload.get("currency"))
    return found


def _categories(payload: dict[str, Any]) -> list[ProviderCategory]:
    """category_id / subcategory_id / format_id, named from the expansion or the known table."""
    out: list[ProviderCategory] = []
    for field, level, table in (
        ("category_id", "category", EVENTBRITE_CATEGORIES),
        ("subcategory_id", "subcategory", EVENTBRITE_SUBCATEGORIES),
    ):
        cid = text(payload.get(field))
        if cid is None:
            continue
        # ``expand=category,subcategory`` puts {id, name} beside the id.
        expanded = obj(payload.get(level))
        same = text(expanded.get("id")) in (None, cid)
        name = text(expanded.get("name")) if same else None
        known = table.get(cid)
        name = name or (known[0] if known else f"{level} {cid}")
        out.append(
            ProviderCategory(source=Provider.EVENTBRITE, external_id=cid, name=name, level=level)
        )
    fid = text(payload.get("format_id"))
    if fid is not None:
        fmt = EVENTBRITE_FORMATS.get(fid)
        out.append(
            ProviderCategory(
                source=Provider.EVENTBRITE,
                external_id=fid,
                name=fmt[0] if fmt else f"format {fid}",
                level="format",
            )
        )
    return out
