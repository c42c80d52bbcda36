"""The mappers against every record the provider sandbox lists (its JSON mimics the real APIs)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from deploy.sandbox import World, render
from deploy.sandbox.world import Rec
from services.ingestor.providers.meetup import GROUP_EVENTS
from services.normalizer.mappers import is_addon, map_event
from shared.contracts import EventStatus, ExternalEvent, Provider, RawRecord

EXPAND = {"venue", "ticket_availability", "event_sales_status", "category"}


def payload(world: World, rec: Rec) -> dict[str, Any]:
    if rec.provider == "ticketmaster":
        return render.tm_event(world, rec)
    if rec.provider == "seatgeek":
        return render.sg_event(world, rec)
    if rec.provider == "eventbrite":
        return render.eb_event(world, rec, EXPAND)
    return render.mu_node(world, rec)


def mapped(world: World) -> Iterator[tuple[Rec, dict[str, Any], ExternalEvent]]:
    """Every listed record of every provider, with its payload and its mapping."""
    for provider, recs in world.index.items():
        for rec in recs:
            body = payload(world, rec)
            record = RawRecord(
                provider=Provider(provider),
                external_id=rec.ext_id,
                payload=body,
                fetched_at=world.now,
            )
            yield rec, body, map_event(record)


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=3, events=2000)


@pytest.fixture(scope="module")
def events(world: World) -> list[tuple[Rec, dict[str, Any], ExternalEvent]]:
    return list(mapped(world))


def test_every_listed_record_maps(events: list[tuple[Rec, dict[str, Any], ExternalEvent]]) -> None:
    providers = {e.source for _, _, e in events}
    assert providers == {
        Provider.TICKETMASTER,
        Provider.SEATGEEK,
        Provider.EVENTBRITE,
        Provider.MEETUP,
    }
    for rec, _, event in events:
        assert event.external_id == rec.ext_id
        assert event.title == rec.title
        assert event.start_utc is not None  # every sandbox record has a zone or an offset
        assert event.category is not None
        if event.venue is not None:
            for value in (event.venue.lat, event.venue.lon):
                assert value is None or isinstance(value, float)


def test_known_times_match_the_world(
    world: World, events: list[tuple[Rec, dict[str, Any], ExternalEvent]]
) -> None:
    for rec, _, event in events:
        if event.start.time_tbd:
            continue
        if rec.provider == "eventbrite" and render.eb_zone(world, rec) != rec.perf.tz:
            # The organiser's zone by mistake: the wall clock is right, the UTC hours off.
            assert event.start.timezone == render.eb_zone(world, rec)
            assert event.start.utc is not None
            assert (event.start.utc - rec.start) % timedelta(hours=1) == timedelta(0)
            assert event.start.utc != rec.start
        else:
            assert event.start.utc == rec.start, (rec.provider, rec.ext_id)
            assert event.start_utc == rec.start
        if rec.provider != "meetup":
            tz = ZoneInfo(rec.perf.tz)
            wall = rec.start.astimezone(tz).replace(tzinfo=None).isoformat(timespec="seconds")
            assert event.start.local == wall
        else:
            # Meetup sends an offset on the event; the zone comes from the group we ask for.
            local = rec.start.astimezone(ZoneInfo(rec.perf.tz)).replace(tzinfo=None)
            assert event.start.local == local.isoformat(timespec="seconds")
            if rec.perf.group is not None:
                assert event.start.timezone == rec.perf.tz, rec.ext_id


def test_meetup_photos_and_zones_are_asked_for_and_mapped(
    events: list[tuple[Rec, dict[str, Any], ExternalEvent]],
) -> None:
    """The GraphQL query names what the mapper reads (the real API sends only what is asked)."""
    for field in ("highResUrl", "id baseUrl", "timezone"):
        assert field in GROUP_EVENTS, field
    photos = [(body, event) for rec, body, event in events if rec.provider == "meetup"]
    with_photo = [(b, e) for b, e in photos if b.get("featuredEventPhoto")]
    assert with_photo
    for body, event in with_photo:
        assert event.image_url == body["featuredEventPhoto"]["highResUrl"]


def test_tbd_rule(events: list[tuple[Rec, dict[str, Any], ExternalEvent]]) -> None:
    checked = 0
    for rec, body, event in events:
        perf_tbd = rec.perf.time_tbd or rec.perf.status == "postponed"
        if rec.provider not in ("ticketmaster", "seatgeek") or not perf_tbd:
            continue
        checked += 1
        tz = ZoneInfo(rec.perf.tz)
        day = rec.start.astimezone(tz).date()
        assert event.start.time_tbd
        assert event.start.utc is None
        assert event.start.local == day.isoformat()
        assert event.start_utc == datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        if rec.provider == "seatgeek":
            # The 03:30 placeholder is in the payload and nowhere in the mapping.
            assert body["datetime_local"].endswith("T03:30:00")
            assert "03:30" not in (event.start.local or "")
    assert checked > 10


def test_addons_are_detected_and_nothing_else(
    world: World, events: list[tuple[Rec, dict[str, Any], ExternalEvent]]
) -> None:
    truth = {(a["provider"], a["external_id"]) for c in world.ground_truth() for a in c["addons"]}
    assert truth
    flagged = {(e.source.value, e.external_id) for _, _, e in events if is_addon(e)}
    assert flagged == truth


def test_seatgeek_prices_are_null_without_listings(
    events: list[tuple[Rec, dict[str, Any], ExternalEvent]],
) -> None:
    empty = [
        e for _, b, e in events if e.source is Provider.SEATGEEK and not b["stats"]["listing_count"]
    ]
    assert empty
    assert all(e.price_range is None for e in empty)


def test_cancellations_after_the_clock_moves() -> None:
    world = World(seed=3, events=2000)
    world.advance(72)
    seen: dict[str, list[EventStatus]] = {"ticketmaster": [], "eventbrite": [], "meetup": []}
    eb_statuses: set[str] = set()
    for rec, body, event in mapped(world):
        if not rec.perf.cancelled or rec.addon or rec.provider not in seen:
            continue
        seen[rec.provider].append(event.status)
        if rec.provider == "eventbrite":
            eb_statuses.add(body["status"])
    for provider, statuses in seen.items():
        assert statuses, provider
        assert set(statuses) == {EventStatus.CANCELLED}, provider
    # At least one of them still read live or completed: only the sales status said so.
    assert eb_statuses - {"canceled"}
