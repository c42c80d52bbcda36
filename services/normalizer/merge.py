"""Build a canonical event from its per-source records: the best value per field."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from services.normalizer.resolve import SAME_TIME, wall_clock, zone_shift
from shared.contracts import (
    CanonicalEvent,
    EventStatus,
    ExternalEvent,
    Performer,
    PriceRange,
    StartConflict,
    When,
)
from shared.contracts.documents import SourceRef

# Which source's value wins a tie: the richest catalogues first.
PRIORITY = {"ticketmaster": 0, "seatgeek": 1, "eventbrite": 2, "meetup": 3}


def _ranked(members: Sequence[ExternalEvent]) -> list[ExternalEvent]:
    return sorted(members, key=lambda m: (PRIORITY.get(m.source.value, 9), m.external_id))


def _in_venue_zone(member: ExternalEvent, zones: set[str]) -> bool:
    """Whether a member's start is the venue's wall clock in the venue's zone, as the members'
    venues report it: its own zone is one of those, and its UTC seen there is its wall clock."""
    when = member.start
    if when.utc is None or when.timezone not in zones:
        return False
    try:
        seen = when.utc.astimezone(ZoneInfo(when.timezone)).replace(tzinfo=None)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return seen == wall_clock(when.local)


def _start(ranked: list[ExternalEvent]) -> tuple[When, list[StartConflict], set[str]]:
    """The canonical start, the sources whose start is a time-zone error off it, their keys.

    A known time beats a TBD one; among known times the leading source's, unless some members
    are a whole number of hours off it with the same wall clock (a provider's time-zone error,
    ``resolve.zone_shift``). Then the instant that most members give wins (one provider's error
    is outvoted); on a tie, the one whose members are in the venue's zone as the venues report
    it (an organiser's zone or a provider's offset is what goes wrong, the place's zone is
    what is right); then the leading source's.
    """
    timed = [m for m in ranked if not m.start.time_tbd and m.start.utc is not None]
    if not timed:
        return ranked[0].start, [], set()
    walls = {id(m): wall_clock(m.start.local) for m in timed}

    def utc(m: ExternalEvent) -> datetime:
        assert m.start.utc is not None  # timed
        return m.start.utc

    def shift(a: ExternalEvent, b: ExternalEvent) -> int | None:
        return zone_shift(utc(a), walls[id(a)], utc(b), walls[id(b)])

    lead = timed[0]
    options = [lead, *(m for m in timed[1:] if shift(lead, m) is not None)]
    chosen = lead
    if len(options) > 1:
        zones = {m.venue.timezone for m in ranked if m.venue and m.venue.timezone}

        def weight(option: ExternalEvent) -> tuple[int, int]:
            same = [m for m in timed if abs(utc(m) - utc(option)) <= SAME_TIME]
            return len(same), sum(_in_venue_zone(m, zones) for m in same)

        # max keeps the first of equals: the leading source's among ties.
        chosen = max(options, key=weight)
    conflicts = []
    for member in timed:
        hours = shift(chosen, member)
        if hours is not None:
            conflicts.append(
                StartConflict(
                    source=member.source,
                    external_id=member.external_id,
                    utc=utc(member),
                    timezone=member.start.timezone,
                    hours=hours,
                )
            )
    keys = {f"{c.source.value}:{c.external_id}" for c in conflicts}
    return chosen.start, conflicts, keys


def merge(
    canonical_id: str, members: Sequence[ExternalEvent], scores: dict[str, float]
) -> CanonicalEvent:
    """One canonical event from its sources (deterministic: same members, same result)."""
    ranked = _ranked(members)
    lead = ranked[0]
    start, conflicts, off = _start(ranked)
    # An end from a source whose start is hours off is as far off.
    end = next(
        (
            m.end
            for m in ranked
            if m.end is not None and f"{m.source.value}:{m.external_id}" not in off
        ),
        None,
    )
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
        start_conflicts=conflicts,
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
