"""Admin analytics from the read model (counts) and the ingestor's ``provider_stats``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.api.index import PROVIDER_BIT, PROVIDERS
from services.api.readmodel import ReadModel
from shared.mongo import Document


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def analytics(model: ReadModel, provider_stats: list[Document]) -> dict[str, Any]:
    table = model.externals
    by_provider = table.counts("providers")
    imported_mask = table.cols["imported"][: table.size]
    imported_by_provider = table.counts("providers", mask=imported_mask)
    source_stats = [
        {
            "source": name,
            "count": by_provider.get(PROVIDER_BIT[name], 0),
            "imported_count": imported_by_provider.get(PROVIDER_BIT[name], 0),
        }
        for name in PROVIDERS
        if name != "spotify"
    ]
    categories = table.counts("category")
    top = sorted(
        ((model.categories.names[c], n) for c, n in categories.items() if c),
        key=lambda p: (-p[1], p[0]),
    )[:10]
    total = table.live
    imported = sum(imported_by_provider.values())
    recent = sorted(
        (c for c in model.claims.values() if c.active and c.local_event_id),
        key=lambda c: c.created_at or datetime.min.replace(tzinfo=UTC),
        reverse=True,
    )[:10]
    countries = table.counts("country")
    cities = table.counts("city")
    return {
        "source_stats": source_stats,
        "top_categories": [{"category": name, "count": n} for name, n in top],
        "import_stats": {
            "total_events": total,
            "imported_events": imported,
            "import_rate": round(imported / total, 4) if total else 0.0,
        },
        "recent_imports": [
            {
                "local_event_id": c.local_event_id,
                "source": c.source,
                "external_id": c.external_id,
                "canonical_id": c.canonical_id,
                "requested_by": c.requested_by,
                "created_at": _iso(c.created_at),
            }
            for c in recent
        ],
        "source_performance": [
            {
                "source": str(doc.get("_id")),
                "calls": doc.get("calls"),
                "errors": doc.get("errors"),
                "throttled": doc.get("throttled"),
                "success_rate": doc.get("success_rate"),
                "latency_ms": doc.get("latency_ms"),
                "updated_at": _iso(doc.get("updated_at")),
            }
            for doc in sorted(provider_stats, key=lambda d: str(d.get("_id")))
        ],
        "geographic_distribution": {
            "countries": _top(model, countries, 20),
            "cities": _top(model, cities, 20),
        },
        "canonical_events": model.canonicals.live,
        "generated_at": datetime.now(UTC).isoformat(),
    }


def _top(model: ReadModel, counts: dict[int, int], n: int) -> list[dict[str, Any]]:
    named = sorted(
        ((model.places.names[k], v) for k, v in counts.items() if k), key=lambda p: -p[1]
    )
    return [{"name": name, "count": count} for name, count in named[:n]]
