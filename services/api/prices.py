"""Price and listing history (``price_series``, shared/series.py) as the API and the web
pages serve it: per record its points and sell-through signal, for a window of UTC days."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import EVENTS, Document
from shared.series import PRICE_SERIES, SERIES_SORT, flatten, series_query, signal

# A window is at most this many days (a longer one is cut to its last MAX_DAYS); the default
# is the last DEFAULT_DAYS. Older days are read by the window the ``older`` link names.
MAX_DAYS = 92
DEFAULT_DAYS = 30
# At most this many points per record in one answer (the newest ones).
MAX_POINTS = 2000


@dataclass(frozen=True)
class Window:
    since: date
    until: date

    @classmethod
    def of(cls, since: date | None, until: date | None, today: date | None = None) -> Window:
        end = until or today or datetime.now(UTC).date()
        try:
            floor = end - timedelta(days=MAX_DAYS - 1)
        except OverflowError:
            floor = date.min
        start = since if since is not None else max(floor, _minus(end, DEFAULT_DAYS - 1))
        return cls(max(start, floor), end)

    def older(self) -> Window | None:
        """The window of as many days just before this one (None: before year 1)."""
        days = max((self.until - self.since).days + 1, 1)
        try:
            end = self.since - timedelta(days=1)
        except OverflowError:
            return None
        return Window(_minus(end, days - 1), end)

    def query_string(self) -> str:
        return f"since={self.since.isoformat()}&until={self.until.isoformat()}"

    def bounds(self) -> tuple[datetime, datetime]:
        return (
            datetime.combine(self.since, time.min, tzinfo=UTC),
            datetime.combine(self.until, time.min, tzinfo=UTC),
        )


def _minus(day: date, days: int) -> date:
    try:
        return day - timedelta(days=days)
    except OverflowError:
        return date.min


async def member_keys(db: AsyncDatabase[Document], event_id: str) -> list[str] | None:
    """The record keys of a canonical event's sources (None: no such event)."""
    doc = await db[EVENTS].find_one({"_id": event_id}, {"sources": 1})
    if doc is None:
        return None
    refs = [r for r in doc.get("sources") or () if isinstance(r, dict)]
    return list(dict.fromkeys(f"{r.get('source')}:{r.get('external_id')}" for r in refs))


async def read_series(
    db: AsyncDatabase[Document], keys: Sequence[str], window: Window
) -> list[dict[str, Any]]:
    """Per record of ``keys`` (in their order), its points in the window, oldest first, and
    its signal: one indexed query."""
    buckets: list[Document] = []
    if keys and window.since <= window.until:
        since, until = window.bounds()
        cursor = db[PRICE_SERIES].find(
            series_query(keys, since, until), {"key": 1, "points": 1, "currency": 1}
        )
        buckets = await cursor.sort(SERIES_SORT).to_list(None)
    points = flatten(buckets)
    currency = {str(b["key"]): b.get("currency") for b in buckets}
    return [series_item(k, points.get(k, []), currency.get(k)) for k in keys]


def series_item(key: str, points: list[dict[str, Any]], currency: str | None) -> dict[str, Any]:
    source, _, external_id = key.partition(":")
    kept = points[-MAX_POINTS:]
    return {
        "key": key,
        "source": source,
        "external_id": external_id,
        "currency": currency,
        "points": [
            {
                "t": p["t"],
                "min": p.get("min"),
                "max": p.get("max"),
                "avg": p.get("avg"),
                "listings": p.get("listings"),
            }
            for p in kept
        ],
        "truncated": len(points) > len(kept),
        "signal": signal(kept),
    }


def _latest(item: dict[str, Any]) -> dict[str, Any] | None:
    points = item["points"]
    return points[-1] if points else None


def comparison(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The members side by side at their latest points: who is cheapest, who lists most."""
    rows = []
    for item in items:
        last = _latest(item)
        rows.append(
            {
                "key": item["key"],
                "source": item["source"],
                "currency": item["currency"],
                "t": last["t"] if last else None,
                "min": last.get("min") if last else None,
                "max": last.get("max") if last else None,
                "listings": last.get("listings") if last else None,
            }
        )
    priced = [r for r in rows if r["min"] is not None]
    listed = [r for r in rows if r["listings"] is not None]
    return {
        "latest": rows,
        "cheapest": min(priced, key=lambda r: (r["min"], r["key"]))["key"] if priced else None,
        "most_listings": (
            max(listed, key=lambda r: (r["listings"], r["key"]))["key"] if listed else None
        ),
    }
