"""The dashboard's figures (``/analytics/...``) over HTTP in process, on the real store: who may
read them, their shapes and numbers against seeded documents, the cache, and ``explain()`` of
every pipeline they send (no collection scan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.api import figures
from services.api.store import PROVIDER_STATS
from shared.mongo import EVENTS, EXTERNAL_EVENTS, IMPORTS, Document, uses_index
from shared.search import with_search_fields
from tests.integration.test_api_http import (
    auth,
    bad_tokens,
    canonical,
    client_of,
    external,
    seed,
    services_over,
)

BERLIN = (52.52, 13.405)
URLS = {
    "/analytics/catalogue": "user",
    "/analytics/venues": "user",
    "/analytics/imports": "admin",
    "/analytics/imports?bucket=day": "admin",
    "/analytics/providers": "admin",
}


async def seed_figures(db: AsyncDatabase[Document]) -> datetime:
    """The HTTP tests' catalogue (Chicago: c1 with two records, c7; c9 already started), plus
    an upcoming Berlin event, import claims over the last hours and days, provider stats."""
    await seed(db)
    now = datetime.now(UTC).replace(microsecond=0)
    berlin = external(
        "eventbrite:20", "Techno Nacht", now, days=5, canonical="c20", lat=BERLIN[0], lon=BERLIN[1]
    )
    berlin["venue"].update(city="Berlin", country="DE")
    event = canonical([berlin], updated_at=now)
    with_search_fields([berlin, event])
    await db[EXTERNAL_EVENTS].insert_one(berlin)
    await db[EVENTS].insert_one(event)
    hour = now.replace(minute=0, second=0)
    claims = [hour, hour, hour - timedelta(hours=2), hour - timedelta(days=3)]
    claims.append(hour - timedelta(days=40))  # outside both windows
    await db[IMPORTS].insert_many(
        [
            {"_id": f"claim{i}", "source": "meetup", "state": "active", "created_at": at}
            for i, at in enumerate(claims)
        ]
    )
    await db[PROVIDER_STATS].insert_one(
        {
            "_id": "seatgeek",
            "calls": 200,
            "errors": 10,
            "throttled": 4,
            "success_rate": 0.95,
            "latency_ms": {"p50": 41.5, "p95": 180.0},
            "last_run": {"calls": 20, "errors": 1},
            "updated_at": now,
        }
    )
    return now


@pytest.fixture
async def client(mongo_db: AsyncDatabase[Document]) -> AsyncIterator[httpx.AsyncClient]:
    await seed_figures(mongo_db)
    services, _ = services_over(mongo_db, cache_s=60)
    async with client_of(services) as http:
        yield http


async def test_who_may_read_the_figures(client: httpx.AsyncClient) -> None:
    rank = {"user": 1, "organizer": 2, "admin": 3}
    for url, least in URLS.items():
        for role in rank:
            response = await client.get(url, headers=auth(role))
            if rank[role] < rank[least]:
                assert response.status_code == 403, (url, role)
                assert response.json()["error"] == "Requires the admin role"
            else:
                assert response.status_code == 200, (url, role, response.text)
                assert response.headers["content-type"] == "application/json"
        for name, header in bad_tokens().items():
            headers = {"Authorization": header} if header else {}
            response = await client.get(url, headers=headers)
            assert response.status_code == (403 if "role" in name else 401), (url, name)
            assert isinstance(response.json()["error"], str)
    wrong = await client.get("/analytics/imports?bucket=week", headers=auth("admin"))
    assert wrong.status_code == 422
    assert wrong.json()["details"][0]["field"].endswith("bucket")


async def test_catalogue_and_venues_count_the_upcoming_events(client: httpx.AsyncClient) -> None:
    body = (await client.get("/analytics/catalogue", headers=auth("user"))).json()
    # Records: ticketmaster:1, seatgeek:1, meetup:7, eventbrite:20 (eventbrite:9 has started).
    assert body["records"] == 4
    assert body["by_source"] == [
        {"source": "ticketmaster", "count": 1},
        {"source": "seatgeek", "count": 1},
        {"source": "eventbrite", "count": 1},
        {"source": "meetup", "count": 1},
    ]
    # Canonical events: c1 (two records), c7, c20.
    assert body["events"] == 3
    assert body["by_category"] == [
        {"category": "music", "count": 2},
        {"category": "community", "count": 1},
    ]
    assert body["countries"] == [{"country": "US", "count": 2}, {"country": "DE", "count": 1}]
    assert body["cities"] == [
        {"city": "Chicago", "country": "US", "count": 2},
        {"city": "Berlin", "country": "DE", "count": 1},
    ]
    assert body["scope"] == "upcoming"
    assert body["from"].endswith("Z")
    venues = (await client.get("/analytics/venues", headers=auth("user"))).json()
    assert venues["points"] == [
        {"lat": 41.9, "lon": -87.6, "count": 2, "city": "Chicago", "country": "US"},
        {"lat": 52.5, "lon": 13.4, "count": 1, "city": "Berlin", "country": "DE"},
    ]
    assert (venues["grid_degrees"], venues["truncated"]) == (0.1, False)


async def test_imports_per_hour_and_day(client: httpx.AsyncClient) -> None:
    hourly = (await client.get("/analytics/imports", headers=auth("admin"))).json()
    assert hourly["bucket"] == "hour"
    assert len(hourly["series"]) == 48
    assert hourly["total"] == 3
    assert [p["count"] for p in hourly["series"][-3:]] == [1, 0, 2]
    assert all(p["start"].endswith(":00:00Z") for p in hourly["series"])
    daily = (await client.get("/analytics/imports?bucket=day", headers=auth("admin"))).json()
    assert len(daily["series"]) == 30
    assert daily["total"] == 4
    assert daily["series"][-4]["count"] == 1
    assert all(p["start"].endswith("T00:00:00Z") for p in daily["series"])


async def test_providers_performance(client: httpx.AsyncClient) -> None:
    body = (await client.get("/analytics/providers", headers=auth("admin"))).json()
    by_source = {p["source"]: p for p in body["providers"]}
    assert list(by_source) == ["ticketmaster", "seatgeek"]
    assert by_source["seatgeek"]["latency_ms"] == {"p50": 41.5, "p95": 180.0}
    assert by_source["seatgeek"]["success_rate"] == 0.95
    assert (by_source["seatgeek"]["calls"], by_source["seatgeek"]["throttled"]) == (200, 4)
    assert by_source["ticketmaster"]["latency_ms"] == {"p50": None, "p95": None}


async def test_figures_are_cached(mongo_db: AsyncDatabase[Document]) -> None:
    await seed_figures(mongo_db)
    services, _ = services_over(mongo_db, cache_s=60)
    async with client_of(services) as http:
        first = (await http.get("/analytics/catalogue", headers=auth("user"))).json()
        await mongo_db[EVENTS].delete_many({})
        again = (await http.get("/analytics/catalogue", headers=auth("user"))).json()
        assert again == first
        services.cache.clear()
        fresh = (await http.get("/analytics/catalogue", headers=auth("user"))).json()
        assert fresh["events"] == 0


async def test_every_figure_reads_through_an_index(mongo_db: AsyncDatabase[Document]) -> None:
    now = await seed_figures(mongo_db)
    pipelines = [
        (EXTERNAL_EVENTS, figures.sources_pipeline(now)),
        (EVENTS, figures.catalogue_pipeline(now)),
        (EVENTS, figures.venues_pipeline(now)),
        (IMPORTS, figures.imports_pipeline(figures.bucket_start(now, "hour"), "hour")),
        (IMPORTS, figures.imports_pipeline(figures.bucket_start(now, "day"), "day")),
    ]
    for collection, pipeline in pipelines:
        plan = await mongo_db.command(
            "explain", {"aggregate": collection, "pipeline": pipeline, "cursor": {}}
        )
        assert uses_index(plan), (collection, pipeline, plan)
    stats = await mongo_db[PROVIDER_STATS].find(figures.providers_filter()).explain()
    assert uses_index(stats), stats
