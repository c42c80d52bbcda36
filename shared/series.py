"""Price and listing time series: a point per sync that saw new prices or listing counts.

Stored as bucketed documents in ``price_series`` (MongoDB time-series collections are not
available on every store this runs on): one document per per-source record and UTC day,
``_id = "{source}:{external_id}:{YYYY-MM-DD}"``, with the day's points in ``points``.

The rule (docs/NORMALIZER.md): a record whose payload is unchanged is not even looked at (the
normalizer skips it before mapping); a changed payload appends a point only when its values
differ from the last point of that day's bucket (the upsert's filter says ``last != values``;
an equal ``last`` makes the upsert collide on ``_id``, which is the "nothing to add" answer).
So unchanged values add at most one point per record per UTC day (the first sync of a day).

Retention: a TTL index on the bucket's ``day`` drops buckets ``RETENTION_DAYS`` after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from pymongo import UpdateOne

PRICE_SERIES = "price_series"
RETENTION_DAYS = 180
VALUES = ("min", "max", "avg", "listings")


@dataclass(frozen=True, slots=True)
class Point:
    """What one sync saw of one per-source record's prices and listings."""

    key: str  # "{source}:{external_id}"
    source: str
    t: datetime  # the fetch time (aware, UTC)
    min: float | None
    max: float | None
    avg: float | None
    listings: int | None
    currency: str | None = None

    def values(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "avg": self.avg, "listings": self.listings}

    def doc(self) -> dict[str, Any]:
        return {"t": self.t, **self.values()}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return round(number, 2) if number == number and number >= 0 else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def point_of(provider: str, external_id: str, payload: Any, fetched_at: datetime) -> Point | None:
    """The point a provider payload carries (None: it says nothing about prices or listings).

    SeatGeek ``stats`` (lowest, average, highest price, listing count); Ticketmaster
    ``priceRanges`` (lowest min, highest max); Eventbrite ``ticket_availability`` (minimum and
    maximum ticket price; a sold-out event counts as no listings)."""
    body = _obj(payload)
    low = high = avg = None
    listings: int | None = None
    currency: str | None = None
    if provider == "seatgeek":
        stats = _obj(body.get("stats"))
        if not stats:
            return None
        low, high = _number(stats.get("lowest_price")), _number(stats.get("highest_price"))
        avg, listings = _number(stats.get("average_price")), _count(stats.get("listing_count"))
        currency = "USD"
    elif provider == "ticketmaster":
        ranges = [_obj(r) for r in body.get("priceRanges") or () if isinstance(r, Mapping)]
        lows = [n for n in (_number(r.get("min")) for r in ranges) if n is not None]
        highs = [n for n in (_number(r.get("max")) for r in ranges) if n is not None]
        low, high = min(lows, default=None), max(highs, default=None)
        cur = next((r.get("currency") for r in ranges if isinstance(r.get("currency"), str)), None)
        currency = cur if isinstance(cur, str) else None
    elif provider == "eventbrite":
        tickets = _obj(body.get("ticket_availability"))
        if not tickets:
            return None
        lo = _obj(tickets.get("minimum_ticket_price"))
        hi = _obj(tickets.get("maximum_ticket_price"))
        low, high = _number(lo.get("major_value")), _number(hi.get("major_value"))
        if tickets.get("is_sold_out") is True:
            listings = 0
        cur = lo.get("currency")
        currency = cur if isinstance(cur, str) else None
    else:
        return None
    if low is None and high is None and avg is None and listings is None:
        return None
    return Point(
        key=f"{provider}:{external_id}",
        source=provider,
        t=fetched_at.astimezone(UTC),
        min=low,
        max=high,
        avg=avg,
        listings=listings,
        currency=currency,
    )


def day_of(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time.min, tzinfo=UTC)


def bucket_id(key: str, moment: datetime) -> str:
    return f"{key}:{moment.astimezone(UTC).date().isoformat()}"


def append_op(point: Point) -> UpdateOne:
    """The upsert that appends ``point`` to its day's bucket unless it repeats the last one."""
    values = point.values()
    return UpdateOne(
        {"_id": bucket_id(point.key, point.t), "last": {"$ne": values}},
        {
            "$push": {"points": point.doc()},
            "$set": {"last": values, "last_t": point.t, "currency": point.currency},
            "$setOnInsert": {"key": point.key, "source": point.source, "day": day_of(point.t)},
            "$inc": {"n": 1},
        },
        upsert=True,
    )


def bucket_doc(point: Point) -> dict[str, Any]:
    """A new bucket holding ``point``: what ``append_op`` upserts into an absent bucket (an
    insert, several times cheaper on the store than an upsert: records seen the first time)."""
    return {
        "_id": bucket_id(point.key, point.t),
        "key": point.key,
        "source": point.source,
        "day": day_of(point.t),
        "points": [point.doc()],
        "last": point.values(),
        "last_t": point.t,
        "currency": point.currency,
        "n": 1,
    }


def latest_per_key(points: Sequence[Point]) -> list[Point]:
    """One point per record (the newest fetch): a batch may hold several of one key."""
    newest: dict[str, Point] = {}
    for p in points:
        seen = newest.get(p.key)
        if seen is None or p.t >= seen.t:
            newest[p.key] = p
    return list(newest.values())


# ---------- reading ----------


def flatten(buckets: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per record key, its points in time order (buckets in any order)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for b in buckets:
        out.setdefault(str(b["key"]), []).extend(dict(_obj(p)) for p in b.get("points") or ())
    for points in out.values():
        points.sort(key=lambda p: p["t"])
    return out


def _trend(first: float | None, last: float | None) -> float | None:
    if first is None or last is None or first == 0:
        return None
    return round((last - first) / first * 100, 1)


def signal(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sell-through signals of one series: listings change per day, sell-through and price
    trend (percent) between the first and the last point, and a label.

    ``selling_fast``: listings fall by 5 % or more of the first count per day;
    ``sold_out``: the last point has no listings; ``steady``: otherwise, with listings known;
    ``unknown``: fewer than two points with listing counts."""
    counted = [p for p in points if p.get("listings") is not None]
    priced = [p for p in points if (p.get("avg") if p.get("avg") is not None else p.get("min"))]
    per_day = sell_through = None
    label = "unknown"
    if counted and counted[-1]["listings"] == 0 and len(counted) >= 1:
        label = "sold_out"
    if len(counted) >= 2:
        first, last = counted[0], counted[-1]
        days = (last["t"] - first["t"]).total_seconds() / 86400
        change = last["listings"] - first["listings"]
        # A rate from minutes apart says nothing (two syncs in a row would read as thousands
        # a day): an hour at least.
        if days >= MIN_RATE_SPAN_DAYS:
            per_day = round(change / days, 2)
        if first["listings"] > 0:
            sell_through = round(-change / first["listings"] * 100, 1)
        if label != "sold_out":
            fast = per_day is not None and first["listings"] > 0
            label = (
                "selling_fast"
                if fast and per_day is not None and -per_day >= 0.05 * first["listings"]
                else "steady"
            )
    price_trend = None
    if len(priced) >= 2:

        def level(p: Mapping[str, Any]) -> float | None:
            value = p.get("avg") if p.get("avg") is not None else p.get("min")
            return float(value) if value is not None else None

        price_trend = _trend(level(priced[0]), level(priced[-1]))
    return {
        "points": len(points),
        "listings_change_per_day": per_day,
        "sell_through_pct": sell_through,
        "price_trend_pct": price_trend,
        "label": label,
    }


MIN_RATE_SPAN_DAYS = 1 / 24


def series_query(keys: Sequence[str], since: datetime, until: datetime) -> dict[str, Any]:
    """The buckets of ``keys`` whose day lies in [since, until] (index ``key_day``)."""
    return {
        "key": {"$in": sorted(set(keys))},
        "day": {"$gte": day_of(since), "$lte": day_of(until)},
    }


SERIES_SORT = [("key", 1), ("day", 1)]
