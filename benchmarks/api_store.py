"""A synthetic catalogue for the API benchmark, written straight into the store.

Seeds ``external_events`` (the normalizer's stored shape: ``ExternalEvent.to_document()`` with
``_id`` = ``{provider}:{external_id}`` and ``start_utc``) and ``events`` (one canonical event per
performance, ``CanonicalEvent.to_document()`` with its ``sources``, ``duplicate_of`` None),
both with the search fields (``shared.search.with_search_fields``) and the catalogue's indexes
(``shared.mongo.ensure_indexes``, created before the first insert, as in a live store).

The shape of the catalogue: 1 to 3 providers per performance; 16 cities on 3 continents with
``VENUES_PER_CITY`` venues each, somewhere within ~15 km of the city's centre; start times
spread evenly over the ``DAYS_AHEAD`` days from the seeding day, and ``PAST_SHARE`` of them in
the ``PAST_DAYS`` before it; modification times (``updated_at``) spread evenly over the
``UPDATED_DAYS`` before it; 5 categories, 22 subcategories; one or two performers, whose names
are the title. Written in start order (see ``catalogue``).

Deterministic for a seed and a seeding day; a finished seed of the same size and
``SEED_VERSION`` (the ``bench_meta`` marker) is reused while it is younger than ``REUSE_DAYS``
(the upcoming part shrinks as it ages) and its indexes are still those of ``INDEXES``.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from shared.contracts import (
    CanonicalEvent,
    EventStatus,
    ExternalEvent,
    Performer,
    PriceRange,
    Provider,
    SourceRef,
    Venue,
    When,
)
from shared.contracts.documents import ProviderCategory
from shared.mongo import (
    EVENTS,
    EXTERNAL_EVENTS,
    INDEXES,
    Document,
    duplicates_only,
    ensure_indexes,
)
from shared.search import with_search_fields

META = "bench_meta"
# 2: search fields, canonical events in ``events``, start times around the seeding day;
# 3: venues shared by many events, written in start order; 4: the day beside the instant.
SEED_VERSION = 4
DAYS_AHEAD = 365
PAST_SHARE = 0.05
PAST_DAYS = 60
UPDATED_DAYS = 180
VENUES_PER_CITY = 60
REUSE_DAYS = 14
PROVIDERS = (Provider.TICKETMASTER, Provider.SEATGEEK, Provider.EVENTBRITE, Provider.MEETUP)
CITIES = (
    ("New York", "NY", "US", 40.7128, -74.0060, "America/New_York"),
    ("Los Angeles", "CA", "US", 34.0522, -118.2437, "America/Los_Angeles"),
    ("Chicago", "IL", "US", 41.8781, -87.6298, "America/Chicago"),
    ("Houston", "TX", "US", 29.7604, -95.3698, "America/Chicago"),
    ("Nashville", "TN", "US", 36.1627, -86.7816, "America/Chicago"),
    ("Seattle", "WA", "US", 47.6062, -122.3321, "America/Los_Angeles"),
    ("Denver", "CO", "US", 39.7392, -104.9903, "America/Denver"),
    ("Boston", "MA", "US", 42.3601, -71.0589, "America/New_York"),
    ("Austin", "TX", "US", 30.2672, -97.7431, "America/Chicago"),
    ("Atlanta", "GA", "US", 33.7490, -84.3880, "America/New_York"),
    ("London", None, "GB", 51.5074, -0.1278, "Europe/London"),
    ("Manchester", None, "GB", 53.4808, -2.2426, "Europe/London"),
    ("Berlin", None, "DE", 52.5200, 13.4050, "Europe/Berlin"),
    ("Paris", None, "FR", 48.8566, 2.3522, "Europe/Paris"),
    ("Toronto", "ON", "CA", 43.6532, -79.3832, "America/Toronto"),
    ("Sydney", "NSW", "AU", -33.8688, 151.2093, "Australia/Sydney"),
)
OFFSETS = {
    "America/New_York": -5,
    "America/Los_Angeles": -8,
    "America/Chicago": -6,
    "America/Denver": -7,
    "America/Toronto": -5,
    "Europe/London": 0,
    "Europe/Berlin": 1,
    "Europe/Paris": 1,
    "Australia/Sydney": 11,
}
CATEGORIES = (
    ("music", ("rock", "pop", "jazz", "hip-hop", "electronic", "country", "classical")),
    ("sports", ("basketball", "baseball", "football", "soccer", "hockey")),
    ("arts & theatre", ("theatre", "comedy", "musical", "dance", "opera")),
    ("family", ("kids shows", "circus")),
    ("community", ("tech", "workshop", "networking", "food & drink")),
)
WORDS = [
    "electric",
    "giants",
    "velvet",
    "harbor",
    "neon",
    "tides",
    "golden",
    "hour",
    "midnight",
    "parade",
    "silver",
    "foxes",
    "crimson",
    "echo",
    "paper",
    "lanterns",
    "northern",
    "lights",
    "river",
    "kings",
    "wild",
    "orchid",
    "static",
    "bloom",
    "blue",
    "monday",
    "lunar",
    "drift",
    "ember",
    "road",
    "iron",
    "saints",
    "glass",
    "houses",
    "quiet",
    "riot",
    "hollow",
    "pines",
    "summer",
    "ghosts",
    "atlas",
    "union",
    "cobalt",
    "kids",
    "amber",
    "waves",
    "broken",
    "compass",
    "city",
    "sparrows",
]
VENUE_WORDS = ("Arena", "Hall", "Theatre", "Club", "Stadium", "Center", "Ballroom", "Park")


@dataclass(frozen=True, slots=True)
class Seeded:
    externals: int
    canonicals: int
    origin: datetime  # the seeding instant: start times are spread around its day
    updated_from: datetime  # the range of ``updated_at``
    updated_to: datetime
    seed_s: float  # how long the seed took (when it was written)
    reused: bool


def _name(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS).capitalize() for _ in range(words))


def venues(rng: random.Random) -> list[tuple[Venue, str]]:
    """``VENUES_PER_CITY`` venues in each city (with its zone), each somewhere within ~15 km
    of the city's centre: many events share a venue, its point and its postal code."""
    found = []
    for city, state, country, lat, lon, zone in CITIES:
        for _ in range(VENUES_PER_CITY):
            venue = Venue(
                name=f"{_name(rng, 1)} {rng.choice(VENUE_WORDS)} - {city}",
                address=f"{rng.randrange(1, 9999)} {_name(rng, 1)} St",
                city=city,
                state=state,
                country=country,
                postal_code=f"{rng.randrange(10000, 99999)}",
                lat=round(lat + rng.uniform(-0.15, 0.15), 6),
                lon=round(lon + rng.uniform(-0.15, 0.15), 6),
                timezone=zone,
            )
            found.append((venue, zone))
    return found


def schedule(events: int, rng: random.Random) -> list[tuple[int, int]]:
    """(start day from the seeding day, providers) of each performance, in start order, until
    the providers' records add up to ``events``."""
    plan = []
    made = 0
    while made < events:
        sources = min(rng.choices((1, 2, 3), weights=(70, 25, 5))[0], events - made)
        if rng.random() < PAST_SHARE:
            day = -rng.randrange(1, PAST_DAYS + 1)
        else:
            day = rng.randrange(0, DAYS_AHEAD)
        plan.append((day, sources))
        made += sources
    plan.sort(key=lambda p: p[0])
    return plan


def catalogue(
    events: int, origin: datetime, seed: int = 11
) -> Iterator[tuple[Document, list[Document]]]:
    """Canonical events with 1 to 3 per-source records each, until ``events`` records exist,
    as the documents the normalizer stores (search fields not added yet).

    They come in start order, as a first sync writes them (providers list upcoming events by
    date), so each index of the start time grows at its end; a random order made the seed of a
    million records slow down to ~250 records/s on the 2-core VM (SecantusDB with a 512 MB
    cache rewrote and re-read ~170 MB of evicted index pages a second)."""
    rng = random.Random(seed)
    day0 = origin.replace(hour=0, minute=0, second=0, microsecond=0)
    places = venues(rng)
    for number, (day, sources) in enumerate(schedule(events, rng), start=1):
        top, subs = rng.choice(CATEGORIES)
        sub = rng.choice(subs)
        headliner = _name(rng, 2)
        support = _name(rng, 2) if rng.random() < 0.5 else None
        title = f"{headliner} with {support}" if support else headliner
        venue, zone = rng.choice(places)
        city = venue.city
        hour = rng.choice((12, 14, 18, 19, 19, 20, 20, 21))
        utc = day0 + timedelta(days=day, hours=hour - OFFSETS[zone])
        local = (utc + timedelta(hours=OFFSETS[zone])).replace(tzinfo=None).isoformat()
        updated = origin - timedelta(seconds=rng.uniform(60, UPDATED_DAYS * 86400))
        created = updated - timedelta(seconds=rng.uniform(0, 30 * 86400))
        version = rng.choices((1, 2, 3), weights=(60, 30, 10))[0]
        performers = [Performer(name=headliner, external_id=str(rng.randrange(10**6)))]
        if support:
            performers.append(Performer(name=support, external_id=str(rng.randrange(10**6))))
        low = float(rng.randrange(10, 120))
        status = rng.choices(
            (EventStatus.SCHEDULED, EventStatus.CANCELLED, EventStatus.POSTPONED),
            weights=(95, 3, 2),
        )[0]
        start = When(utc=utc, local=local, timezone=zone)
        providers = rng.sample(PROVIDERS, sources)
        externals = []
        for provider in providers:
            external_id = f"b{number:07d}{provider.value[:2]}"
            externals.append(
                ExternalEvent(
                    source=provider,
                    external_id=external_id,
                    title=title if provider is providers[0] else f"{title} (live)",
                    description=f"{title} live in {city}. {_name(rng, 6)}.",
                    category=top,
                    subcategory=sub,
                    provider_categories=[
                        ProviderCategory(source=provider, name=sub.title(), level="genre")
                    ],
                    status=status,
                    start=start,
                    venue=venue,
                    performers=performers,
                    price_range=PriceRange(min=low, max=low * 3, currency="USD"),
                    ticket_url=f"https://tickets.example/{provider.value}/{external_id}",
                    url=f"https://tickets.example/{provider.value}/{external_id}",
                    start_utc=utc,
                    venue_city=city,
                    content_hash=f"{number:x}{provider.value}",
                    canonical_id=f"evt_b{number:09d}",
                    version=version,
                    created_at=created,
                    updated_at=updated,
                    last_synced=updated,
                )
            )
        lead = externals[0]
        canonical = CanonicalEvent(
            id=f"evt_b{number:09d}",
            title=lead.title,
            description=lead.description,
            category=top,
            subcategory=sub,
            provider_categories=[c for e in externals for c in e.provider_categories],
            status=status,
            start=start,
            venue=venue,
            performers=performers,
            price_range=lead.price_range,
            ticket_url=lead.ticket_url,
            sources=[SourceRef(source=e.source, external_id=e.external_id) for e in externals],
            version=version,
            created_at=created,
            updated_at=updated,
        )
        doc = canonical.to_document()
        doc["content_hash"] = f"{number:x}"
        yield doc, [external_document(e) for e in externals]


def external_document(event: ExternalEvent) -> Document:
    """The document the normalizer stores for a per-source record."""
    doc = event.to_document()
    doc["_id"] = f"{event.source.value}:{event.external_id}"
    doc["start_utc"] = event.start_utc
    return doc


def _unusable(meta: Document | None, events: int, now: datetime) -> str | None:
    """Why the stored seed can be neither reused nor resumed (None: it can)."""
    if not meta:
        return "no seed"
    if meta.get("version") != SEED_VERSION:
        return f"seed version {meta.get('version')} (now {SEED_VERSION})"
    if meta.get("events") != events:
        return f"{meta.get('events')} records seeded, {events} wanted"
    origin = meta.get("origin")
    if not isinstance(origin, datetime) or now - origin > timedelta(days=REUSE_DAYS):
        return f"seeded {origin}, more than {REUSE_DAYS} days ago"
    return None


async def _index_drift(db: AsyncDatabase[Document]) -> str | None:
    """Which catalogue collection's indexes differ from ``INDEXES`` now (None: none)."""
    for collection in (EXTERNAL_EVENTS, EVENTS):
        wanted = {"_id_", *(str(m.document["name"]) for m in INDEXES[collection])}
        have = {str(i["name"]) async for i in await db[collection].list_indexes()}
        if have != wanted:
            return f"the indexes of {collection} changed ({sorted(have ^ wanted)})"
    return None


async def _insert(db: AsyncDatabase[Document], collection: str, docs: list[Document]) -> float:
    """One unordered bulk; returns its seconds. A bulk the driver sent again after losing the
    answer (a retryable write) finds its first copy's documents: those duplicates are fine."""
    started = time.monotonic()
    try:
        await db[collection].insert_many(docs, ordered=False)
    except BulkWriteError as err:
        duplicates_only(err)
    return time.monotonic() - started


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def seed(
    db: AsyncDatabase[Document],
    events: int,
    *,
    batch: int = 10_000,
    in_flight: int = 2,
    log: bool = True,
) -> Seeded:
    """Write the catalogue unless a finished seed of this size and version is there already;
    resume a seed that was interrupted.

    Documents go out in unordered ``insert_many`` bulks of ``batch`` per-source records (and
    their canonical events), ``in_flight`` bulks at a time, so the next bulk is built while
    the store writes the last one. The marker records how many canonical events are written
    for sure (every bulk up to them acknowledged): a run that finds an unfinished seed of the
    same shape regenerates the catalogue (it is deterministic), skips those and goes on.
    """
    now = datetime.now(UTC)
    meta = await db[META].find_one({"_id": "seed"})
    why = _unusable(meta, events, now) or await _index_drift(db)
    if why is None and meta is not None and meta.get("done"):
        if log:
            _say(f"reusing the seeded store {db.name}: {events:,} records ({meta['origin']})")
        return Seeded(
            events,
            int(meta["canonicals"]),
            meta["origin"],
            meta["updated_from"],
            meta["updated_to"],
            float(meta["seed_s"]),
            True,
        )
    if why is None and meta is not None:
        origin: datetime = meta["origin"]
        skip, spent = int(meta.get("resume_at", 0)), float(meta.get("seed_s", 0.0))
        if log:
            _say(f"resuming the seed of {db.name} after {skip:,} canonical events ({spent:,.0f} s)")
    else:
        if log:
            _say(f"seeding {db.name} ({why})")
        for name in (META, EXTERNAL_EVENTS, EVENTS):
            await db[name].drop()
        await ensure_indexes(db)
        # Milliseconds, as the store keeps it: a resumed seed regenerates the same catalogue.
        origin, skip, spent = now.replace(microsecond=now.microsecond // 1000 * 1000), 0, 0.0
        marker = {"_id": "seed", "version": SEED_VERSION, "events": events, "origin": origin}
        await db[META].insert_one({**marker, "done": False, "resume_at": 0, "seed_s": 0.0})
    started = time.monotonic()
    # Bulks in flight, in order: (canonical events up to here, their tasks).
    flights: deque[tuple[int, list[asyncio.Task[float]]]] = deque()
    externals: list[Document] = []
    canonicals: list[Document] = []
    written = made = 0
    low, high = now, now - timedelta(days=UPDATED_DAYS + 1)
    slowest = 0.0

    async def settle(most: int) -> None:
        """Wait until at most ``most`` bulks are in flight; record what is written for sure."""
        nonlocal slowest
        sure = None
        while flights and (len(flights) > most or all(t.done() for t in flights[0][1])):
            upto, tasks = flights.popleft()
            for task in tasks:
                slowest = max(slowest, await task)
            sure = upto
        if sure is not None:
            await db[META].update_one(
                {"_id": "seed"},
                {"$set": {"resume_at": sure, "seed_s": spent + time.monotonic() - started}},
            )

    async def flush() -> None:
        nonlocal externals, canonicals, written, slowest
        with_search_fields(externals)
        with_search_fields(canonicals)
        await settle(in_flight - 1)
        tasks = [
            asyncio.create_task(_insert(db, collection, docs))
            for collection, docs in ((EXTERNAL_EVENTS, externals), (EVENTS, canonicals))
        ]
        flights.append((made, tasks))
        before, written = written, written + len(externals)
        externals, canonicals = [], []
        await asyncio.sleep(0)  # let the bulks go out before the next one is built
        if log and written // 100_000 != before // 100_000:
            elapsed = spent + time.monotonic() - started
            _say(
                f"seeded {written:,}/{events:,} records, {made:,} canonical events "
                f"({elapsed:,.0f} s; slowest bulk of {batch:,} since the last line"
                f" {slowest:.1f} s)"
            )
            slowest = 0.0

    for canonical, records in catalogue(events, origin):
        made += 1
        updated = canonical["updated_at"]
        low, high = min(low, updated), max(high, updated)
        if made <= skip:
            written += len(records)
            continue
        canonicals.append(canonical)
        externals += records
        if len(externals) >= batch:
            await flush()
    if externals:
        await flush()
    await settle(0)
    seconds = spent + time.monotonic() - started
    await db[META].update_one(
        {"_id": "seed"},
        {
            "$set": {
                "canonicals": made,
                "updated_from": low,
                "updated_to": high,
                "seed_s": round(seconds, 1),
                "done": True,
            }
        },
    )
    if log:
        _say(
            f"seeded {written:,} records and {made:,} canonical events in {seconds:,.0f} s "
            f"({(written + made) / seconds:,.0f} documents/s)"
        )
    return Seeded(written, made, origin, low, high, seconds, False)
