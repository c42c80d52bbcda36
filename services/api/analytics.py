"""Admin analytics: aggregation pipelines over the catalogue, claims and ``provider_stats``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.api.render import iso
from shared.contracts import Provider
from shared.mongo import EVENTS, EXTERNAL_EVENTS, IMPORTS, Document

PROVIDER_STATS = "provider_stats"
SOURCES = [p.value for p in Provider if p is not Provider.SPOTIFY]
ACTIVE: Document = {"$or": [{"state": "active"}, {"state": {"$exists": False}}]}


async def _grouped(
    db: AsyncDatabase[Document],
    collection: str,
    key: str,
    *,
    match: Document | None = None,
    top: int | None = None,
) -> list[tuple[Any, int]]:
    """``(value, count)`` per distinct value of ``key``, most first."""
    pipeline: list[Document] = [
        {"$match": match or {key: {"$type": "string"}}},
        {"$group": {"_id": f"${key}", "n": {"$sum": 1}}},
        {"$sort": {"n": -1, "_id": 1}},
    ]
    if top is not None:
        pipeline.append({"$limit": top})
    cursor = await db[collection].aggregate(pipeline)
    return [(row["_id"], int(row["n"])) async for row in cursor]


async def analytics(db: AsyncDatabase[Document]) -> dict[str, Any]:
    by_source, imported_by_source, categories, countries, cities = await asyncio.gather(
        _grouped(db, EXTERNAL_EVENTS, "source"),
        _grouped(db, IMPORTS, "source", match={"$and": [ACTIVE, {"source": {"$type": "string"}}]}),
        _grouped(db, EXTERNAL_EVENTS, "category", top=10),
        _grouped(db, EXTERNAL_EVENTS, "venue.country", top=20),
        _grouped(db, EXTERNAL_EVENTS, "venue.city", top=20),
    )
    canonical = await db[EVENTS].count_documents({"duplicate_of": None})
    recent = await db[IMPORTS].find(ACTIVE).sort([("created_at", -1)]).limit(10).to_list()
    stats = await db[PROVIDER_STATS].find({}).to_list()
    counts = dict(by_source)
    imported_counts = dict(imported_by_source)
    total = sum(counts.values())
    imported = sum(imported_counts.values())
    return {
        "source_stats": [
            {"source": s, "count": counts.get(s, 0), "imported_count": imported_counts.get(s, 0)}
            for s in SOURCES
        ],
        "top_categories": [{"category": name, "count": n} for name, n in categories],
        "import_stats": {
            "total_events": total,
            "imported_events": imported,
            "import_rate": round(imported / total, 4) if total else 0.0,
        },
        "recent_imports": [
            {
                "local_event_id": c.get("local_event_id"),
                "source": c.get("source"),
                "external_id": c.get("external_id"),
                "canonical_id": c.get("canonical_id"),
                "requested_by": c.get("requested_by"),
                "created_at": iso(c.get("created_at")),
            }
            for c in recent
            if c.get("local_event_id")
        ],
        "source_performance": [
            {
                "source": str(doc.get("_id")),
                "calls": doc.get("calls"),
                "errors": doc.get("errors"),
                "throttled": doc.get("throttled"),
                "success_rate": doc.get("success_rate"),
                "latency_ms": doc.get("latency_ms"),
                "updated_at": iso(doc.get("updated_at")),
            }
            for doc in sorted(stats, key=lambda d: str(d.get("_id")))
        ],
        "geographic_distribution": {
            "countries": [{"name": name, "count": n} for name, n in countries],
            "cities": [{"name": name, "count": n} for name, n in cities],
        },
        "canonical_events": canonical,
        "generated_at": iso(datetime.now(UTC)),
    }
