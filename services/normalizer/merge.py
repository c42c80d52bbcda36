"""Build a canonical event from its per-source records: the best value per field."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import orjson

from shared.contracts import CanonicalEvent, EventStatus, ExternalEvent, Performer, PriceRange
from shared.contracts.documents import SourceRef

# Which source's value wins a tie: the richest catalogues first.
PRIORITY = {"ticketmaster": 0, "seatgeek": 1, "eventbrite": 2, "meetup": 3}


def _ranked(members: Sequence[ExternalEvent]) -> list[ExternalEvent]:
    return sorted(members, key=lambda m: (PRIORITY.get(m.source.value, 9), m.external_id))


def merge(
    canonical_id: str, members: Sequence[ExternalEvent], scores: dict[str, float]
) -> CanonicalEvent:
    """One canonical event from its sources (deterministic: same members, same result)."""
    ranked = _ranked(members)
    lead = ranked[0]
    # A known time beats a TBD one; among known times the leading source's.
    timed = [m for m in ranked if not m.start.time_tbd and m.start.utc is not None]
    start = (timed or ranked)[0].start
    end = next((m.end for m in ranked if m.end is not None), None)
    venue = next((m.venue for m in ranked if m.venue and m.venue.lat is not None), None) or next(
        (m.venue for m in ranked if m.venue), None
    )
    description = max((m.description or "" for m in ranked), key=len) or None
    performers: dict[str, Performer] = {}
    for member in ranked:
        for performer in member.performers:
            key = performer.name.casefold()
            known = performers.get(key)
            if known is None or (known.spotify_id is None and performer.spotify_id):
                performers[key] = performer
    prices = [m.price_range for m in ranked if m.price_range and m.price_range.currency]
    price = None
    if prices:
        currency = prices[0].currency
        same = [p for p in prices if p.currency == currency]
        lows = [p.min for p in same if p.min is not None]
        highs = [p.max for p in same if p.max is not None]
        price = PriceRange(
            min=min(lows) if lows else None, max=max(highs) if highs else None, currency=currency
        )
    # The most recently synced source knows the current status best.
    latest = max(ranked, key=lambda m: m.last_synced)
    status = latest.status
    if all(m.status is EventStatus.CANCELLED for m in ranked):
        status = EventStatus.CANCELLED
    return CanonicalEvent(
        id=canonical_id,
        title=lead.title,
        description=description,
        category=next((m.category for m in ranked if m.category), None),
        subcategory=next((m.subcategory for m in ranked if m.subcategory), None),
        provider_categories=[c for m in ranked for c in m.provider_categories],
        status=status,
        previous_start=next((m.previous_start for m in ranked if m.previous_start), None),
        start=start,
        end=end,
        venue=venue,
        online=all(m.online for m in ranked),
        performers=list(performers.values()),
        price_range=price,
        ticket_url=next((m.ticket_url or m.url for m in ranked if m.ticket_url or m.url), None),
        image_url=next((m.image_url for m in ranked if m.image_url), None),
        sources=[
            SourceRef(
                source=m.source,
                external_id=m.external_id,
                match_score=scores.get(f"{m.source.value}:{m.external_id}"),
            )
            for m in ranked
        ],
    )


def content_hash(event: CanonicalEvent) -> str:
    """What subscribers see, without bookkeeping: equal hashes mean nothing to announce."""
    body = event.model_dump(
        mode="json",
        exclude={"version", "created_at", "updated_at", "is_imported", "imported_event"},
    )
    for source in body.get("sources", []):
        source.pop("match_score", None)
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
