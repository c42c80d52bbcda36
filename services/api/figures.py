"""The dashboard's figures (``/analytics/...``): aggregation pipelines, each led by an index.

- catalogue: upcoming per-source records by provider (``external_events``), and upcoming
  canonical events by category, country and city (``events``, one ``$facet``): both start with a
  range on ``when`` (index ``when_id``), so they read the upcoming part of the catalogue only;
- venues: upcoming canonical events' points, grouped on a grid (coordinates rounded) and capped;
- imports: the importer's claims (``imports``) per hour or day, by ``created_at`` (index
  ``created_at``; a covered read);
- providers: the ingestor's ``provider_stats`` (one document per provider) by ``_id``.

The pipelines are built by the functions below so that a test can ``explain()`` exactly what is
sent (no collection scan).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase

from services.api.render import iso
from shared.contracts import Provider
from shared.mongo import EVENTS, EXTERNAL_EVENTS, IMPORTS, Document
from shared.search import ADDON, GEO, WHEN

PROVIDER_STATS = "provider_stats"
PROVIDERS = [p.value for p in Provider]
TOP = 20
# Venue points: coordinates rounded to this many decimals (0.1 degree: about 11 km), at most
# this many points (the busiest).
GRID_DECIMALS = 1
MAX_POINTS = 500
Bucket = Literal["hour", "day"]
# How many buckets of each unit the import series covers (the current one included).
BUCKETS: dict[str, int] = {"hour": 48, "day": 30}


def _ranked(rows: list[Document]) -> list[tuple[Any, int]]:
    return [(row["_id"], int(row["n"])) for row in rows if row.get("_id") not in (None, "")]


def _group(key: str | Document) -> list[Document]:
    return [
        {"$group": {"_id": key, "n": {"$sum": 1}}},
        {"$sort": {"n": -1, "_id": 1}},
        {"$limit": TOP},
    ]


def sources_pipeline(since: datetime) -> list[Document]:
    """Upcoming per-source records (add-ons left out, as listings do) per provider."""
    return [
        {"$match": {WHEN: {"$gte": since}, ADDON: {"$ne": True}}},
        {"$group": {"_id": "$source", "n": {"$sum": 1}}},
        {"$sort": {"n": -1, "_id": 1}},
    ]


def catalogue_pipeline(since: datetime) -> list[Document]:
    """Upcoming canonical events (merged ones left out): total, by category, country, city."""
    return [
        {"$match": {WHEN: {"$gte": since}, "duplicate_of": None, ADDON: {"$ne": True}}},
        {
            "$facet": {
                "total": [{"$group": {"_id": None, "n": {"$sum": 1}}}],
                "categories": _group("$category"),
                "countries": _group("$venue.country"),
                "cities": _group({"city": "$venue.city", "country": "$venue.country"}),
            }
        },
    ]


def venues_pipeline(since: datetime) -> list[Document]:
    """Upcoming canonical events with a point, counted per grid cell; the busiest cells first."""
    coordinate = {"lon": 0, "lat": 1}
    cell = {
        name: {"$round": [{"$arrayElemAt": [f"${GEO}.coordinates", i]}, GRID_DECIMALS]}
        for name, i in coordinate.items()
    }
    return [
        {"$match": {WHEN: {"$gte": since}, "duplicate_of": None, GEO: {"$type": "object"}}},
        {
            "$group": {
                "_id": cell,
                "n": {"$sum": 1},
                "city": {"$max": "$venue.city"},
                "country": {"$max": "$venue.country"},
            }
        },
        {"$sort": {"n": -1, "_id.lat": 1, "_id.lon": 1}},
        {"$limit": MAX_POINTS + 1},
    ]


def bucket_start(now: datetime, bucket: Bucket) -> datetime:
    """The first bucket of the import series ending with the one holding ``now``."""
    now = now.astimezone(UTC)
    if bucket == "hour":
        current = now.replace(minute=0, second=0, microsecond=0)
        return current - timedelta(hours=BUCKETS["hour"] - 1)
    current = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return current - timedelta(days=BUCKETS["day"] - 1)


def imports_pipeline(since: datetime, bucket: Bucket) -> list[Document]:
    """Import claims created since ``since``, per hour or day (UTC)."""
    return [
        {"$match": {"created_at": {"$gte": since}}},
        {
            "$group": {
                "_id": {"$dateTrunc": {"date": "$created_at", "unit": bucket}},
                "n": {"$sum": 1},
            }
        },
        {"$sort": {"_id": 1}},
    ]


def providers_filter() -> Document:
    return {"_id": {"$in": PROVIDERS}}


async def _run(
    db: AsyncDatabase[Document], collection: str, pipeline: list[Document]
) -> list[Document]:
    cursor = await db[collection].aggregate(pipeline)
    return [row async for row in cursor]


async def catalogue(db: AsyncDatabase[Document], now: datetime) -> dict[str, Any]:
    sources, [facets] = await asyncio.gather(
        _run(db, EXTERNAL_EVENTS, sources_pipeline(now)),
        _run(db, EVENTS, catalogue_pipeline(now)),
    )
    counts = dict(_ranked(sources))
    total = facets["total"][0]["n"] if facets["total"] else 0
    return {
        "scope": "upcoming",
        "from": iso(now),
        "records": sum(counts.values()),
        "by_source": [
            {"source": s, "count": counts.get(s, 0)} for s in PROVIDERS if s != "spotify"
        ],
        "events": int(total),
        "by_category": [{"category": k, "count": n} for k, n in _ranked(facets["categories"])],
        "countries": [{"country": k, "count": n} for k, n in _ranked(facets["countries"])],
        "cities": [
            {"city": k.get("city"), "country": k.get("country"), "count": n}
            for k, n in _ranked(facets["cities"])
            if isinstance(k, dict) and k.get("city")
        ],
        "generated_at": iso(datetime.now(UTC)),
    }


async def venues(db: AsyncDatabase[Document], now: datetime) -> dict[str, Any]:
    rows = await _run(db, EVENTS, venues_pipeline(now))
    points = [
        {
            "lat": row["_id"]["lat"],
            "lon": row["_id"]["lon"],
            "count": int(row["n"]),
            "city": row.get("city"),
            "country": row.get("country"),
        }
        for row in rows[:MAX_POINTS]
        if isinstance(row.get("_id"), dict)
        and isinstance(row["_id"].get("lat"), int | float)
        and isinstance(row["_id"].get("lon"), int | float)
    ]
    return {
        "scope": "upcoming",
        "from": iso(now),
        "grid_degrees": 10**-GRID_DECIMALS,
        "points": points,
        "truncated": len(rows) > MAX_POINTS,
        "generated_at": iso(datetime.now(UTC)),
    }


async def imports(db: AsyncDatabase[Document], now: datetime, bucket: Bucket) -> dict[str, Any]:
    since = bucket_start(now, bucket)
    rows = await _run(db, IMPORTS, imports_pipeline(since, bucket))
    counts = {
        row["_id"].astimezone(UTC): int(row["n"])
        for row in rows
        if isinstance(row["_id"], datetime)
    }
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    series = [
        {"start": iso(since + i * step), "count": counts.get(since + i * step, 0)}
        for i in range(BUCKETS[bucket])
    ]
    return {
        "bucket": bucket,
        "from": iso(since),
        "to": iso(since + BUCKETS[bucket] * step),
        "total": sum(p["count"] for p in series),
        "series": series,
        "generated_at": iso(datetime.now(UTC)),
    }


async def providers(db: AsyncDatabase[Document]) -> dict[str, Any]:
    docs = {str(d["_id"]): d async for d in db[PROVIDER_STATS].find(providers_filter())}
    out = []
    for name in PROVIDERS:
        doc = docs.get(name)
        if doc is None:
            continue
        latency = doc.get("latency_ms") or {}
        out.append(
            {
                "source": name,
                "calls": int(doc.get("calls") or 0),
                "errors": int(doc.get("errors") or 0),
                "throttled": int(doc.get("throttled") or 0),
                "success_rate": doc.get("success_rate"),
                "latency_ms": {"p50": latency.get("p50"), "p95": latency.get("p95")},
                "last_run": doc.get("last_run"),
                "updated_at": iso(doc.get("updated_at")),
            }
        )
    return {"providers": out, "generated_at": iso(datetime.now(UTC))}
