"""Price and listing series: points from provider payloads, buckets, the change rule's
upsert, sell-through signals, and the sandbox moving prices over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from deploy.sandbox import render
from deploy.sandbox.world import SG, World
from shared.series import (
    RETENTION_DAYS,
    Point,
    append_op,
    bucket_doc,
    bucket_id,
    day_of,
    flatten,
    latest_per_key,
    point_of,
    signal,
)

T0 = datetime(2027, 3, 1, 10, 30, tzinfo=UTC)


def test_seatgeek_stats_make_a_point() -> None:
    stats = {"lowest_price": 40, "highest_price": 200, "average_price": 120, "listing_count": 55}
    p = point_of("seatgeek", "123", {"stats": stats}, T0)
    assert p is not None
    assert (p.key, p.min, p.max, p.avg, p.listings, p.currency) == (
        "seatgeek:123",
        40.0,
        200.0,
        120.0,
        55,
        "USD",
    )
    # No listings: prices are null, the count of 0 is still a point (sold out).
    empty = {"listing_count": 0, "lowest_price": None, "highest_price": None}
    sold = point_of("seatgeek", "123", {"stats": empty}, T0)
    assert sold is not None
    assert (sold.listings, sold.min) == (0, None)
    assert point_of("seatgeek", "123", {"title": "x"}, T0) is None


def test_ticketmaster_and_eventbrite_prices() -> None:
    ranges = [
        {"currency": "EUR", "min": 30.5, "max": 80},
        {"currency": "EUR", "min": 25, "max": 95.25},
    ]
    tm = point_of("ticketmaster", "vvG1", {"priceRanges": ranges}, T0)
    assert tm is not None
    assert (tm.min, tm.max, tm.avg, tm.listings, tm.currency) == (
        25.0,
        95.25,
        None,
        None,
        "EUR",
    )
    assert point_of("ticketmaster", "vvG1", {"name": "no prices"}, T0) is None
    tickets = {
        "minimum_ticket_price": {"currency": "USD", "major_value": "12.50"},
        "maximum_ticket_price": {"currency": "USD", "major_value": "40.00"},
        "is_sold_out": True,
    }
    eb = point_of("eventbrite", "1", {"ticket_availability": tickets}, T0)
    assert eb is not None
    assert (eb.min, eb.max, eb.listings, eb.currency) == (12.5, 40.0, 0, "USD")
    assert point_of("meetup", "x", {"fee": 1}, T0) is None
    # Junk values are dropped, not stored.
    junk = {"stats": {"lowest_price": "n/a", "highest_price": -3, "listing_count": True}}
    assert point_of("seatgeek", "9", junk, T0) is None


def test_buckets_are_per_record_and_utc_day() -> None:
    late = datetime(2027, 3, 1, 23, 59, tzinfo=UTC)
    assert bucket_id("seatgeek:1", late) == "seatgeek:1:2027-03-01"
    assert bucket_id("seatgeek:1", late + timedelta(minutes=2)) == "seatgeek:1:2027-03-02"
    assert day_of(late) == datetime(2027, 3, 1, tzinfo=UTC)
    assert RETENTION_DAYS == 180


def _point(t: datetime, listings: int | None, avg: float | None = 100.0) -> Point:
    return Point("seatgeek:1", "seatgeek", t, 50.0, 150.0, avg, listings)


def test_the_upsert_appends_only_a_changed_point() -> None:
    op = append_op(_point(T0, 10))
    doc: Any = op._doc
    flt = op._filter
    assert flt == {
        "_id": "seatgeek:1:2027-03-01",
        "last": {"$ne": {"min": 50.0, "max": 150.0, "avg": 100.0, "listings": 10}},
    }
    assert doc["$push"] == {
        "points": {"t": T0, "min": 50.0, "max": 150.0, "avg": 100.0, "listings": 10}
    }
    assert doc["$setOnInsert"]["day"] == datetime(2027, 3, 1, tzinfo=UTC)
    assert op._upsert is True
    # A record's first bucket is inserted whole: what the upsert would have made of nothing.
    fresh = bucket_doc(_point(T0, 10))
    assert fresh["_id"] == flt["_id"]
    assert fresh["points"] == [doc["$push"]["points"]]
    assert fresh["last"] == doc["$set"]["last"]
    assert {k: fresh[k] for k in ("key", "source", "day")} == doc["$setOnInsert"]
    # A batch holding two fetches of a record appends the newest only.
    newest = latest_per_key([_point(T0, 10), _point(T0 + timedelta(hours=1), 8)])
    assert [p.listings for p in newest] == [8]


def test_sell_through_signals() -> None:
    points = [
        {"t": T0, "listings": 100, "avg": 100.0, "min": 50.0},
        {"t": T0 + timedelta(days=1), "listings": 80, "avg": 105.0, "min": 50.0},
        {"t": T0 + timedelta(days=2), "listings": 60, "avg": 110.0, "min": 55.0},
    ]
    s = signal(points)
    assert s == {
        "points": 3,
        "listings_change_per_day": -20.0,
        "sell_through_pct": 40.0,
        "price_trend_pct": 10.0,
        "label": "selling_fast",
    }
    slow = signal([{**points[0]}, {**points[2], "listings": 99}])
    assert slow["label"] == "steady"
    assert signal([{"t": T0, "listings": 0, "avg": None, "min": None}])["label"] == "sold_out"
    assert signal([{"t": T0, "listings": None, "avg": 10.0, "min": 5.0}])["label"] == "unknown"
    assert signal([])["listings_change_per_day"] is None
    # Two syncs a minute apart: sell-through, but no rate a day (it would read as thousands).
    close = signal([points[0], {**points[1], "t": T0 + timedelta(minutes=1)}])
    assert (close["listings_change_per_day"], close["sell_through_pct"]) == (None, 20.0)
    buckets: list[dict[str, Any]] = [
        {"key": "a", "points": [points[2]]},
        {"key": "a", "points": [points[0], points[1]]},
        {"key": "b", "points": []},
    ]
    flat = flatten(buckets)
    assert [p["listings"] for p in flat["a"]] == [100, 80, 60]
    assert flat["b"] == []


def test_the_sandbox_moves_prices_and_listings_deterministically() -> None:
    a, b = World(seed=4, events=400), World(seed=4, events=400)

    def stats(w: World) -> dict[str, object]:
        return {ext: render.sg_event(w, rec)["stats"] for ext, rec in w.by_id[SG].items()}

    before = stats(a)
    summary = a.advance(24)
    assert summary["repriced"] > 0
    assert b.advance(24) == summary
    after = stats(a)
    assert after == stats(b)
    moved = [k for k in before if k in after and before[k] != after[k]]
    assert moved
    fell = [k for k in moved if after[k]["listing_count"] < before[k]["listing_count"]]  # type: ignore[index]
    assert fell
    assert a.advance(0)["repriced"] == 0
