"""Provider payload -> ExternalEvent mappers: one pure function per provider, plus add-on hints."""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import ValidationError

from services.normalizer.mappers._common import MappingError
from services.normalizer.mappers.eventbrite import map_eventbrite
from services.normalizer.mappers.meetup import map_meetup
from services.normalizer.mappers.seatgeek import map_seatgeek
from services.normalizer.mappers.spotify import map_artist
from services.normalizer.mappers.ticketmaster import map_ticketmaster
from shared.contracts import Entity, ExternalEvent, Provider, RawRecord

__all__ = [
    "MappingError",
    "is_addon",
    "map_artist",
    "map_event",
    "map_eventbrite",
    "map_meetup",
    "map_seatgeek",
    "map_ticketmaster",
]

_EVENT_MAPPERS: dict[Provider, Callable[[RawRecord], ExternalEvent]] = {
    Provider.TICKETMASTER: map_ticketmaster,
    Provider.SEATGEEK: map_seatgeek,
    Provider.EVENTBRITE: map_eventbrite,
    Provider.MEETUP: map_meetup,
}


def map_event(record: RawRecord) -> ExternalEvent:
    """Map a raw event record to an ExternalEvent; MappingError says which field and why."""
    if record.tombstone:
        raise MappingError("tombstone", "a tombstone has no payload to map")
    if record.entity is not Entity.EVENT:
        raise MappingError("entity", f"expected an event record, got {record.entity.value!r}")
    mapper = _EVENT_MAPPERS.get(record.provider)
    if mapper is None:
        raise MappingError("provider", f"{record.provider.value!r} is not an event source")
    if not isinstance(record.payload, dict):
        kind = type(record.payload).__name__
        raise MappingError("payload", f"expected a JSON object, got {kind}")
    try:
        return mapper(record)
    except ValidationError as err:
        # A value that slipped past the mapper's own checks: still a DLQ case with a reason.
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise MappingError(where, f"does not fit the contract: {first['msg']}") from err


# Listings that look like events but sell something around the performance. Matched on the
# title (and performer names: Ticketmaster files parking under an attraction "Parking Event").
_ADDON_TITLE = re.compile(
    r"^\s*parking\b"  # "Parking: …" (Ticketmaster)
    r"|\bparking\s+(pass(es)?|only|lot|permit)\b"  # "Parking Passes Only - …" (SeatGeek)
    r"|\bpre-?\s?game\s+pass\b"
    r"|\bvip\b.*\b(package|upgrade)s?\b"
    r"|\b(rv|camping|tailgate)\s+pass(es)?\b",
    re.IGNORECASE,
)
# Provider categories that mark add-ons: TM classification type "Upsell" / subType "Parking",
# SeatGeek event type / taxonomy "parking".
_ADDON_CATEGORY = {"upsell", "parking", "add-on", "addon"}


def is_addon(event: ExternalEvent) -> bool:
    """True for a parking pass, pre-game pass, VIP package … that is not the performance itself.

    Add-ons are kept (they are real listings) but the entity resolver must not merge them with
    the performance they belong to.
    """
    if _ADDON_TITLE.search(event.title):
        return True
    if any(pc.name.strip().lower() in _ADDON_CATEGORY for pc in event.provider_categories):
        return True
    return any(re.match(r"^\s*parking\b", p.name, re.IGNORECASE) for p in event.performers)
