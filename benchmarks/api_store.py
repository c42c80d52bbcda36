"""A synthetic catalogue for the API benchmark: per-source records in MongoDB, canonical on Kafka.

Seeds ``external_events`` (the normalizer's stored shape: ``ExternalEvent.to_document()`` with
``_id`` = ``{provider}:{external_id}`` and ``start_utc``) and publishes one ``CanonicalChange``
per canonical event to a compacted topic, like the normalizer does. Deterministic for a seed;
reused when a finished seed of the same size is found (``bench_meta`` marker).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import (
    CanonicalChange,
    CanonicalEvent,
    ChangeOp,
    EventStatus,
    ExternalEvent,
    Performer,
    PriceRange,
    Provider,
    SourceRef,
    Venue,
    When,
)
from shared.kafka import make_producer
from shared.mongo import EXTERNAL_EVENTS, Document
from shared.settings import KafkaSettings

META = "bench_meta"
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
    topic: str


def _name(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS).capitalize() for _ in range(words))


def catalogue(
    events: int, seed: int = 11, start: datetime | None = None
) -> Iterator[tuple[CanonicalEvent, list[ExternalEvent]]]:
    """Canonical events with 1 to 3 per-source records each, until ``events`` records exist."""
    rng = random.Random(seed)
    origin = (start or datetime(2026, 12, 1, tzinfo=UTC)).replace(minute=0, second=0)
    made = 0
    number = 0
    while made < events:
        number += 1
        sources = rng.choices((1, 2, 3), weights=(70, 25, 5))[0]
        sources = min(sources, events - made)
        city, state, country, lat, lon, zone = rng.choice(CITIES)
        top, subs = rng.choice(CATEGORIES)
        sub = rng.choice(subs)
        headliner = _name(rng, 2)
        support = _name(rng, 2) if rng.random() < 0.5 else None
        title = f"{headliner} with {support}" if support else headliner
        day = rng.randrange(0, 180)
        hour = rng.choice((12, 14, 18, 19, 19, 20, 20, 21))
        utc = origin + timedelta(days=day, hours=hour - OFFSETS[zone])
        local = (utc + timedelta(hours=OFFSETS[zone])).replace(tzinfo=None).isoformat()
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
        performers = [Performer(name=headliner, external_id=str(rng.randrange(10**6)))]
        if support:
            performers.append(Performer(name=support, external_id=str(rng.randrange(10**6))))
        low = float(rng.randrange(10, 120))
        status = rng.choices(
            (EventStatus.SCHEDULED, EventStatus.CANCELLED, EventStatus.POSTPONED),
            weights=(95, 3, 2),
        )[0]
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
                    status=status,
                    start=When(utc=utc, local=local, timezone=zone),
                    venue=venue,
                    performers=performers,
                    price_range=PriceRange(min=low, max=low * 3, currency="USD"),
                    ticket_url=f"https://tickets.example/{provider.value}/{external_id}",
                    url=f"https://tickets.example/{provider.value}/{external_id}",
                    start_utc=utc,
                    venue_city=city,
                    content_hash=f"{number:x}{provider.value}",
                    canonical_id=f"evt_b{number:09d}",
                )
            )
        made += len(externals)
        lead = externals[0]
        canonical = CanonicalEvent(
            id=f"evt_b{number:09d}",
            title=lead.title,
            description=lead.description,
            category=top,
            subcategory=sub,
            status=status,
            start=lead.start,
            venue=venue,
            performers=performers,
            price_range=lead.price_range,
            ticket_url=lead.ticket_url,
            sources=[SourceRef(source=e.source, external_id=e.external_id) for e in externals],
        )
        yield canonical, externals


def external_document(event: ExternalEvent) -> Document:
    """The document the normalizer stores for a per-source record."""
    doc = event.to_document()
    doc["_id"] = f"{event.source.value}:{event.external_id}"
    doc["start_utc"] = event.start_utc
    return doc


async def ensure_topic(kafka: KafkaSettings, topic: str, partitions: int = 6) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})]
                )
    finally:
        await admin.close()


async def seed(
    db: AsyncDatabase[Document],
    kafka: KafkaSettings,
    topic: str,
    events: int,
    *,
    batch: int = 1000,
    log: bool = True,
) -> Seeded:
    """Write the catalogue unless a finished seed of this size is there already."""
    meta = await db[META].find_one({"_id": "seed"})
    if meta and meta.get("events") == events and meta.get("done") and meta.get("topic") == topic:
        if log:
            print(f"reusing the seeded store: {events:,} records, topic {topic}", flush=True)
        return Seeded(events, int(meta["canonicals"]), topic)
    await db[EXTERNAL_EVENTS].drop()
    await db[META].drop()
    await ensure_topic(kafka, topic)
    producer = make_producer(kafka, linger_ms=20)
    await producer.start()
    started = time.monotonic()
    docs: list[Document] = []
    written = canonicals = 0
    try:
        for canonical, externals in catalogue(events):
            canonicals += 1
            change = CanonicalChange(
                op=ChangeOp.CREATED, canonical_id=canonical.id, version=1, event=canonical
            )
            await producer.send(
                topic, change.to_json_bytes(), key=canonical.id.encode()
            )  # pipelined; flushed below
            docs += [external_document(e) for e in externals]
            if len(docs) >= batch:
                await db[EXTERNAL_EVENTS].insert_many(docs, ordered=False)
                before, written = written, written + len(docs)
                docs = []
                if log and written // (batch * 50) != before // (batch * 50):
                    rate = written / (time.monotonic() - started)
                    print(f"seeded {written:,}/{events:,} records ({rate:,.0f}/s)", flush=True)
        if docs:
            await db[EXTERNAL_EVENTS].insert_many(docs, ordered=False)
            written += len(docs)
        await producer.flush()
    finally:
        await producer.stop()
    await db[META].insert_one(
        {"_id": "seed", "events": events, "canonicals": canonicals, "topic": topic, "done": True}
    )
    if log:
        print(f"seeded {written:,} records, {canonicals:,} canonical events", flush=True)
    return Seeded(written, canonicals, topic)
