"""``/events/{id}/prices`` and ``/external-events/{source}/{id}/prices`` over HTTP in process,
over the real store: roles, 404s, shapes, windows, the cache, the indexed read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from services.normalizer.pipeline import CatalogueStore
from shared.mongo import EVENTS, EXTERNAL_EVENTS, Document, ensure_indexes, uses_index
from shared.series import PRICE_SERIES, SERIES_SORT, Point, series_query
from tests.integration.test_api_http import auth, client_of, services_over

DAY0 = datetime(2027, 4, 1, 12, 0, tzinfo=UTC)
SG, TM = "seatgeek:501", "ticketmaster:vvG1TEST"


async def seed_prices(db: AsyncDatabase[Document], event_id: str = "evt_prices") -> None:
    """A canonical event of two records; SeatGeek sells down over four days, Ticketmaster's
    price rises once."""
    await ensure_indexes(db)
    await db[EVENTS].insert_one(
        {
            "_id": event_id,
            "title": "Price Test Live",
            "sources": [
                {"source": "seatgeek", "external_id": "501"},
                {"source": "ticketmaster", "external_id": "vvG1TEST"},
            ],
        }
    )
    await db[EXTERNAL_EVENTS].insert_many(
        [
            {"_id": SG, "source": "seatgeek", "external_id": "501", "canonical_id": event_id},
            {"_id": TM, "source": "ticketmaster", "external_id": "vvG1TEST"},
        ]
    )
    store = CatalogueStore(db)
    for day, listings in enumerate([400, 300, 210, 120]):
        t = DAY0 + timedelta(days=day)
        sg = Point(SG, "seatgeek", t, 50 + day * 5, 300, 120 + day * 10, listings, "USD")
        await store.write_series([sg])
    for day, low in ((0, 45.0), (2, 55.0)):
        t = DAY0 + timedelta(days=day)
        await store.write_series([Point(TM, "ticketmaster", t, low, 250.0, None, None, "USD")])


def api(db: AsyncDatabase[Document], cache_s: float = 0) -> httpx.AsyncClient:
    services, _fake = services_over(db, cache_s=cache_s)
    return client_of(services)


WINDOW = {"since": "2027-03-20", "until": "2027-04-10"}


async def test_event_prices_side_by_side(mongo_db: AsyncDatabase[Document]) -> None:
    await seed_prices(mongo_db)
    async with api(mongo_db) as http:
        assert (await http.get("/events/evt_prices/prices")).status_code == 401
        r = await http.get("/events/evt_prices/prices", params=WINDOW, headers=auth("user"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["event_id"] == "evt_prices"
        assert (body["since"], body["until"]) == ("2027-03-20", "2027-04-10")
        assert body["older"] == "/events/evt_prices/prices?since=2027-02-26&until=2027-03-19"
        sg, tm = body["series"]
        assert (sg["key"], sg["source"], sg["external_id"], sg["currency"]) == (
            SG,
            "seatgeek",
            "501",
            "USD",
        )
        assert [p["listings"] for p in sg["points"]] == [400, 300, 210, 120]
        assert sg["points"][0] == {
            "t": "2027-04-01T12:00:00Z",
            "min": 50.0,
            "max": 300.0,
            "avg": 120.0,
            "listings": 400,
        }
        assert sg["signal"] == {
            "points": 4,
            "listings_change_per_day": -93.33,
            "sell_through_pct": 70.0,
            "price_trend_pct": 25.0,
            "label": "selling_fast",
        }
        assert [p["min"] for p in tm["points"]] == [45.0, 55.0]
        assert tm["signal"]["label"] == "unknown"
        assert tm["signal"]["price_trend_pct"] == 22.2
        assert body["comparison"]["cheapest"] == TM
        assert body["comparison"]["most_listings"] == SG
        assert [row["key"] for row in body["comparison"]["latest"]] == [SG, TM]
        # A window that misses the points: the records are listed, empty.
        early = await http.get(
            "/events/evt_prices/prices",
            params={"since": "2027-01-01", "until": "2027-03-31"},
            headers=auth("user"),
        )
        assert [s["points"] for s in early.json()["series"]] == [[], []]
        # One day: only that day's bucket.
        one = await http.get(
            "/events/evt_prices/prices",
            params={"since": "2027-04-03", "until": "2027-04-03"},
            headers=auth("user"),
        )
        assert [len(s["points"]) for s in one.json()["series"]] == [1, 1]
        # A long window is cut to its last 92 days.
        long = await http.get(
            "/events/evt_prices/prices",
            params={"since": "2020-01-01", "until": "2027-04-10"},
            headers=auth("user"),
        )
        assert long.json()["since"] == "2027-01-09"
        missing = await http.get("/events/evt_nope/prices", headers=auth("user"))
        assert missing.status_code == 404
        assert missing.json() == {"error": "Event not found"}


async def test_record_prices_errors_and_cache(mongo_db: AsyncDatabase[Document]) -> None:
    await seed_prices(mongo_db)
    async with api(mongo_db, cache_s=60) as http:
        url = "/external-events/seatgeek/501/prices"
        r = await http.get(url, params=WINDOW, headers=auth("organizer"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["key"] == SG
        assert len(body["points"]) == 4
        assert body["truncated"] is False
        assert body["older"] == f"{url}?since=2027-02-26&until=2027-03-19"
        # Served from the replica's cache until it expires.
        await mongo_db[PRICE_SERIES].delete_many({})
        again = await http.get(url, params=WINDOW, headers=auth("user"))
        assert again.json()["points"] == body["points"]
        unknown = await http.get("/external-events/seatgeek/999/prices", headers=auth("user"))
        assert unknown.status_code == 404
        bad = await http.get(url, params={"since": "2027-02-30"}, headers=auth("user"))
        assert bad.status_code == 400
        assert bad.json()["details"][0]["field"] == "since"
        shape = await http.get(url, params={"until": "April"}, headers=auth("user"))
        assert shape.status_code in (400, 422)
        assert isinstance(shape.json()["error"], str)
        # The default window ends today: the seeded April 2027 points are in the future.
        tm_url = "/external-events/ticketmaster/vvG1TEST/prices"
        today = await http.get(tm_url, headers=auth("user"))
        assert today.status_code == 200
        assert today.json()["until"] == datetime.now(UTC).date().isoformat()


async def test_series_read_is_indexed(mongo_db: AsyncDatabase[Document]) -> None:
    await seed_prices(mongo_db)
    query = series_query([SG, TM], DAY0, DAY0 + timedelta(days=3))
    plan = await mongo_db[PRICE_SERIES].find(query).sort(SERIES_SORT).explain()
    assert uses_index(plan), plan
