"""Recommendation evaluation: precision@10 and recall@10 of ``GET /recommendations``' ranking
against taste profiles built from the sandbox world's truth.

The store (a fresh database on the tests' MongoDB-wire server) is seeded with the world's
performances as canonical events, their performers carrying what the normalizer joins from
Spotify (id, genres, popularity: the world's own artists, so no matching error), and with those
artists in ``artists``. A profile is someone in one of the world's cities who likes 3 artists of
one genre (the providers' genre of the performer: the truth, known for every performer, where
Spotify lists a genre for only some artists). Relevant: the upcoming performances within
``--radius-km`` of the city in the window whose performers are of that genre or liked. The
recommender (``services.api.recommend.Recommender``, what the endpoint calls) ranks from the
Spotify data only. Profiles with fewer than 10 relevant events are left out (precision@10 could
not reach 1). Liked artists are given by name for half the profiles, by Spotify id for the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.sandbox import World
from deploy.sandbox.world import CITIES, Performance
from deploy.sandbox.world import Performer as WorldPerformer
from services.api.catalogue import great_circle_km
from services.api.recommend import Recommender, Request
from shared.contracts import (
    CanonicalEvent,
    EventStatus,
    Performer,
    Provider,
    SourceRef,
    Venue,
    When,
)
from shared.mongo import ARTISTS, EVENTS, Document, ensure_indexes, get_database, make_client
from shared.search import name_key, with_search_fields
from shared.settings import MongoSettings
from tests.stack import endpoints

K = 10
LIKED = 3
STATUS = {
    "cancelled": EventStatus.CANCELLED,
    "postponed": EventStatus.POSTPONED,
    "rescheduled": EventStatus.RESCHEDULED,
}


def performer(world: World, p: WorldPerformer) -> Performer:
    artist = world.artists_by_id.get(p.spotify_id or "")
    return Performer(
        name=p.name,
        external_id=p.tm_id,
        spotify_id=p.spotify_id,
        genres=list(artist.genres) if artist else [],
        popularity=artist.popularity if artist else None,
    )


def event_document(world: World, perf: Performance) -> Document:
    venue = perf.venue
    event = CanonicalEvent(
        id=perf.pid,
        title=perf.title,
        category=perf.category,
        status=STATUS.get(perf.status, EventStatus.SCHEDULED),
        start=When(
            utc=perf.start, local=perf.start.replace(tzinfo=None).isoformat(), timezone=perf.tz
        ),
        venue=Venue(
            name=venue.name,
            city=venue.city.name,
            country=venue.city.country_code,
            lat=venue.lat,
            lon=venue.lon,
        ),
        performers=[performer(world, p) for p in perf.performers],
        sources=[SourceRef(source=Provider.TICKETMASTER, external_id=perf.pid)],
    )
    doc = event.to_document()
    with_search_fields([doc])
    return doc


def artist_documents(world: World) -> list[Document]:
    out = []
    for p in world.performers:
        artist = world.artists_by_id.get(p.spotify_id or "")
        if artist is None:
            continue
        out.append(
            {
                "_id": f"ticketmaster:{p.tm_id}",
                "name": artist.name,
                "name_key": name_key(artist.name),
                "spotify_id": artist.id,
                "genres": list(artist.genres),
                "popularity": artist.popularity,
            }
        )
    return out


def profiles(world: World, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per city and genre: 3 liked artists of the genre (with a Spotify id) and the relevant
    performances (truth)."""
    rng = random.Random(args.seed)
    start, end = world.start, world.start + timedelta(days=args.days)
    by_genre: dict[str, list[WorldPerformer]] = {}
    for p in world.music:
        if p.spotify_id:
            by_genre.setdefault(p.genre, []).append(p)
    out = []
    for i, (genre, pool) in enumerate(sorted(by_genre.items())):
        for j, city in enumerate(CITIES):
            liked = rng.sample(pool, LIKED)
            liked_ids = {p.idx for p in liked}
            relevant = {
                perf.pid
                for perf in world.perfs
                if start <= perf.start <= end
                and perf.status != "cancelled"
                and not perf.online
                and great_circle_km(city.lat, city.lon, perf.venue.lat, perf.venue.lon)
                <= args.radius_km
                and any(p.genre == genre or p.idx in liked_ids for p in perf.performers)
            }
            by_name = (i + j) % 2 == 0
            out.append(
                {
                    "city": city,
                    "genre": genre,
                    "artists": [p.name if by_name else str(p.spotify_id) for p in liked],
                    "relevant": relevant,
                }
            )
    return out


async def run(args: argparse.Namespace, mongo_url: str) -> dict[str, Any]:
    began = time.monotonic()
    world = World(seed=args.seed, events=args.events)
    settings = MongoSettings(url=mongo_url)
    client = make_client(settings)
    database = f"bench_recommend_{args.seed}_{args.events}"
    try:
        await client.drop_database(database)
        db = get_database(client, settings, database)
        await ensure_indexes(db)
        docs = [event_document(world, perf) for perf in world.perfs if not perf.online]
        for i in range(0, len(docs), 2000):
            await db[EVENTS].insert_many(docs[i : i + 2000])
        await db[ARTISTS].insert_many(artist_documents(world))
        seeded = time.monotonic() - began
        recommender = Recommender(db)
        evaluated, precision, recall, unmatched = 0, 0.0, 0.0, 0
        latencies: list[float] = []
        for profile in profiles(world, args):
            if len(profile["relevant"]) < K:
                continue
            city = profile["city"]
            asked = Request(
                artists=profile["artists"],
                center=(city.lat, city.lon),
                radius_km=args.radius_km,
                start_from=world.start,
                start_to=world.start + timedelta(days=args.days),
                limit=K,
            )
            t0 = time.perf_counter()
            result = await recommender.recommend(asked)
            latencies.append((time.perf_counter() - t0) * 1000)
            unmatched += len(result.unmatched)
            top = [scored.event_id for scored, _ in result.items]
            hits = len(set(top) & profile["relevant"])
            precision += hits / K
            recall += hits / len(profile["relevant"])
            evaluated += 1
        await client.drop_database(database)
    finally:
        await client.close()
    latencies.sort()
    return {
        "benchmark": "recommend_eval",
        "events": len(docs),
        "profiles": evaluated,
        "precision_at_10": round(precision / evaluated, 4) if evaluated else None,
        "recall_at_10": round(recall / evaluated, 4) if evaluated else None,
        "unmatched_artists": unmatched,
        "p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
        "seed": args.seed,
        "radius_km": args.radius_km,
        "days": args.days,
        "seed_s": round(seeded, 1),
        "total_s": round(time.monotonic() - began, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=30_000, help="performances in the world")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--radius-km", type=float, default=50.0)
    parser.add_argument("--days", type=int, default=60, help="the window, from the world's start")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    with endpoints() as found:
        result = asyncio.run(run(args, found.mongo_url))
    for name, value in result.items():
        print(f"{name}: {value}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
