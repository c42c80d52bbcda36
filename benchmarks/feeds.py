"""Feed benchmark: generating the iCalendar and Atom of 10,000 events.

Seeds ``--events`` upcoming canonical events at one venue (the normalizer's stored shape with its
search fields and the catalogue's indexes) into a database of its own on the test stack
(``tests/stack.py``: the local stack, Docker, or servers named by the environment), then times:

* in process, the builders the endpoints call (``services/api/feeds.py``) on events already
  read: ``calendar`` of all of them, ``atom`` of all of them;
* through the API (``create_app`` over httpx's ASGI transport: routing, auth, the indexed store
  reads, the builder, the ETag), ``GET /feeds/search.ics`` and ``GET /feeds/venues/{venue}.ics``
  of every event, and ``GET /feeds/search.atom`` (bounded: the newest ``FEED_MAX``).

Each figure is the median of ``--repeat`` runs; every .ics is parsed back to check its count.
The database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from icalendar import Calendar

from services.api import feeds
from services.api.app import create_app
from services.api.auth import Authenticator, mint
from services.api.catalogue import Catalogue
from services.api.deps import Services
from services.api.export import Exports
from services.api.limits import RateLimiter, ResponseCache
from services.api.metrics import ApiMetrics
from services.api.store import Store
from shared.metrics import ServiceMetrics
from shared.mongo import EVENTS, Document, ensure_indexes, get_database, make_client
from shared.search import with_search_fields
from shared.settings import ApiSettings, MongoSettings
from tests.stack import endpoints

SECRET = "bench-feeds-secret-0123456789abcdef0123"  # noqa: S105 - loopback-only benchmark
BASE = "http://bench"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def events(n: int, now: datetime) -> list[Document]:
    """``n`` upcoming canonical events at one venue, one a half hour over the next year."""
    docs = []
    for i in range(n):
        start = now + timedelta(days=1, minutes=30 * i)
        docs.append(
            {
                "_id": f"feed{i:06d}",
                "title": f"Feed Bench Show {i}",
                "category": "music",
                "subcategory": "rock",
                "status": "EventCancelled" if i % 50 == 0 else "EventScheduled",
                "start": {
                    "utc": start,
                    "local": start.replace(tzinfo=None).isoformat(),
                    "timezone": "UTC",
                },
                "venue": {"name": "Bench Hall", "city": "Chicago", "country": "US"},
                "performers": [{"name": f"Band {i % 40}"}],
                "description": "An evening of loud guitars. " * 4,
                "sources": [{"source": "ticketmaster", "external_id": f"b{i}"}],
                "duplicate_of": None,
                "version": 1,
                "updated_at": now - timedelta(seconds=n - i),
            }
        )
    with_search_fields(docs)
    return docs


async def timed(repeat: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    runs, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = await work()
        runs.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(runs), 1), result


def vevents(body: bytes) -> int:
    return len(Calendar.from_ical(body).walk("VEVENT"))


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    mongo = MongoSettings(url=env["MONGO_URL"])
    client = make_client(mongo)
    db = get_database(client, mongo, f"bench_feeds_{os.urandom(4).hex()}")
    try:
        await ensure_indexes(db)
        now = datetime.now(UTC).replace(microsecond=0)
        docs = events(args.events, now)
        t0 = time.perf_counter()
        for i in range(0, len(docs), 2000):
            await db[EVENTS].insert_many(docs[i : i + 2000])
        say(f"seeded {len(docs)} events in {time.perf_counter() - t0:.1f}s")
        stored = [d async for d in db[EVENTS].find({}).sort("when", 1)]
        ics_ms, ics = await timed(
            args.repeat, lambda: asyncio.to_thread(feeds.calendar, stored, "bench", BASE)
        )
        atom_ms, atom = await timed(
            args.repeat, lambda: asyncio.to_thread(feeds.atom, stored, "bench", BASE, BASE)
        )
        assert vevents(ics) == args.events, "the in-process calendar lost events"
        services = Services(
            settings=ApiSettings(),
            catalogue=Catalogue(db),
            store=Store(db),
            auth=Authenticator(algorithm="HS256", secret=SECRET),
            limiter=RateLimiter(0, 5),
            cache=ResponseCache(0, 10),
            metrics=ApiMetrics(ServiceMetrics("bench_feeds")),
            exporter=Exports(db),
        )
        headers = {"Authorization": f"Bearer {mint('bench', 'user', secret=SECRET)}"}
        transport = httpx.ASGITransport(app=create_app(services))
        figures: dict[str, Any] = {}
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=600) as http:
            for name, url in (
                ("api_search_ics_ms", "/feeds/search.ics?category=music"),
                ("api_venue_ics_ms", "/feeds/venues/Bench%20Hall.ics"),
                ("api_search_atom_ms", "/feeds/search.atom?category=music"),
            ):

                def get(u: str = url) -> Awaitable[httpx.Response]:
                    return http.get(u, headers=headers)

                ms, response = await timed(args.repeat, get)
                assert response.status_code == 200, response.text[:300]
                if url.split("?")[0].endswith(".ics"):
                    assert vevents(response.content) == args.events, (url, "lost events")
                figures[name] = ms
                figures[name.replace("_ms", "_bytes")] = len(response.content)
                say(f"{url}: {ms} ms, {len(response.content):,} bytes")
        return {
            "benchmark": "feeds",
            "events": args.events,
            "repeat": args.repeat,
            "ics_build_ms": ics_ms,
            "ics_bytes": len(ics),
            "atom_build_ms": atom_ms,
            "atom_bytes": len(atom),
            **figures,
            "atom_api_entries": feeds.FEED_MAX,
        }
    finally:
        await client.drop_database(db.name)
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    with endpoints() as found:
        summary = asyncio.run(run(args, found.env()))
    for key, value in summary.items():
        say(f"{key}: {value}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
