"""``GET /recommendations`` and ``/web/recommendations`` against a real API process and store:
auth, validation, results ordered and explained, paging, unknown artists listed apart,
``explain()`` of every query without a collection scan, and the page in Chromium (keyboard
only, reasons shown, screenshot in ``.cache/test-artifacts/web/``)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from services.api.recommend import CANDIDATE_FIELDS, CANDIDATE_MAX, candidate_filter
from shared.contracts import Venue
from shared.contracts.documents import Performer
from shared.mongo import (
    ARTISTS,
    EVENTS,
    Document,
    ensure_indexes,
    get_database,
    make_client,
)
from shared.search import name_key
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_api import (
    SOON,
    RunningApi,
    api_env,
    api_topics,
    canonical,
    create_topics,
    free_port,
    record,
    start_api,
)
from tests.integration.test_web import CHROMIUM_ARGS, Site, chromium_path, shot, signed_in

NEAR = "36.16,-86.78,50"
FAR = Venue(name="Hall", city="New York", country="US", lat=40.71, lon=-74.0)
OUTSKIRTS = Venue(name="Barn", city="Franklin", country="US", lat=35.93, lon=-86.87)


def artist(key: str, name: str, spotify_id: str, genres: list[str], popularity: int) -> Document:
    return {
        "_id": key,
        "name": name,
        "name_key": name_key(name),
        "spotify_id": spotify_id,
        "genres": genres,
        "popularity": popularity,
    }


ARTIST_DOCS = [
    artist("ticketmaster:a1", "Electric Giants", "sp1", ["indie rock", "garage rock"], 70),
    artist("seatgeek:9", "Electric Giants", "sp1", ["indie rock", "garage rock"], 70),
    artist("ticketmaster:a2", "Velvet Crows", "sp2", ["indie rock", "shoegaze"], 40),
    artist("ticketmaster:a3", "Jazz Trio", "sp3", ["jazz"], 50),
]


def event(cid: str, title: str, performers: list[Performer], **kw: Any) -> Document:
    status, venue = kw.pop("status", None), kw.pop("venue", None)
    member = record("ticketmaster", f"tm-{cid}", title, cid, **kw)
    if venue is not None:
        member = member.model_copy(update={"venue": venue})
    doc = canonical(cid, [member])
    doc["performers"] = [p.model_dump() for p in performers]
    if status:
        doc["status"] = status
    return doc


def band(name: str, genres: list[str], spotify_id: str | None = None, pop: int = 30) -> Performer:
    return Performer(name=name, spotify_id=spotify_id, genres=genres, popularity=pop)


GIANTS = band("Electric Giants", ["indie rock", "garage rock"], "sp1", 70)
CROWS = band("Velvet Crows", ["indie rock", "shoegaze"], "sp2", 40)
EVENT_DOCS = [
    event("r1", "Electric Giants", [GIANTS]),
    event("r2", "Velvet Crows", [CROWS], start=SOON + timedelta(days=1)),
    event("r3", "Blue Monday Jazz", [band("Jazz Trio", ["jazz"], "sp3")]),
    event("r4", "Indie Night", [band("Local Band", ["indie rock"])], venue=FAR),
    event("r5", "Indie Later", [band("Local Band", ["indie rock"])], start=SOON + timedelta(40)),
    event("r6", "Indie Off", [band("Local Band", ["indie rock"])], status="EventCancelled"),
    event("r7", "Garage Days", [band("Rusty Cans", ["garage rock"])], venue=OUTSKIRTS),
    event("r8", "Indie Nights", [band("Local Band", ["indie rock"])]),
]


@dataclass
class Reco:
    api: RunningApi
    db: Any


@pytest.fixture(scope="module")
async def reco(
    stack: Any, kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path_factory: Any
) -> AsyncIterator[Reco]:
    unique = os.urandom(4).hex()
    topics = api_topics(f"reco-{unique}")
    await create_topics(kafka_settings, topics)
    database = f"reco_{unique}"
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, database)
    await ensure_indexes(db)
    await db[ARTISTS].insert_many([dict(d) for d in ARTIST_DOCS])
    await db[EVENTS].insert_many([dict(d) for d in EVENT_DOCS])
    log = tmp_path_factory.mktemp("reco") / "api.log"
    env = api_env(stack, topics, database, free_port())
    try:
        async with start_api(env, log) as url:
            yield Reco(RunningApi(url, env, topics, database, log), db)
    finally:
        await client.drop_database(database)
        await client.close()


async def get(reco: Reco, query: str, role: str | None = "user") -> httpx.Response:
    headers = reco.api.headers(role) if role else {}
    async with httpx.AsyncClient(base_url=reco.api.url, timeout=20) as http:
        return await http.get(f"/recommendations?{query}", headers=headers)


async def test_auth_and_validation(reco: Reco) -> None:
    assert (await get(reco, f"artists=sp1&near={NEAR}", role=None)).status_code == 401
    for role in ("user", "organizer", "admin"):
        assert (await get(reco, f"artists=sp1&near={NEAR}", role)).status_code == 200
    missing = await get(reco, "near=36.16,-86.78")
    assert missing.status_code == 422
    assert [d["field"] for d in missing.json()["details"]] == ["query.artists"]
    nowhere = await get(reco, "artists=sp1&near=95,0")
    assert nowhere.status_code == 422
    assert [d["field"] for d in nowhere.json()["details"]] == ["query.near"]
    many = await get(reco, f"artists={','.join(f'a{i}' for i in range(21))}&near={NEAR}")
    assert many.status_code == 422
    assert "20" in many.json()["details"][0]["message"]
    assert (await get(reco, f"artists=sp1&near={NEAR}&limit=51")).status_code == 422
    bad_date = await get(reco, f"artists=sp1&near={NEAR}&date_from=2026-13-40")
    assert bad_date.status_code == 400
    assert bad_date.json()["details"][0]["field"] == "date_from"
    repeated = await get(reco, f"artists=sp1&artists=sp2&near={NEAR}")
    assert repeated.status_code == 400


async def test_results_are_ordered_explained_and_paged(reco: Reco) -> None:
    query = f"artists=electric%20GIANTS,sp2,Nobody%20Here&near={NEAR}"
    response = await get(reco, query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [a["name"] for a in body["artists"]] == ["Electric Giants", "Velvet Crows"]
    assert body["artists"][0]["asked"] == "electric GIANTS"
    assert body["unmatched"] == ["Nobody Here"]
    items = body["recommendations"]
    # Jazz shares nothing; New York is outside the circle; day 50 after the default 30 days;
    # a cancelled event is not recommended.
    assert [i["event"]["id"] for i in items] == ["r1", "r2", "r8", "r7"]
    assert body["total_count"] == 4
    assert body["next_cursor"] is None
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    assert items[0]["why"] == ["Electric Giants plays", "shares genre indie rock with Velvet Crows"]
    assert items[2]["why"] == [
        "shares genre indie rock with Electric Giants",
        "shares genre indie rock with Velvet Crows",
    ]
    assert items[3]["why"] == ["shares genre garage rock with Electric Giants"]
    assert items[3]["distance_km"] > 20
    assert items[0]["distance_km"] == 0
    # The usual canonical item shape (no stored bookkeeping).
    assert items[0]["event"]["title"] == "Electric Giants"
    assert not {"terms", "when", "geo", "day"} & set(items[0]["event"])
    first = (await get(reco, f"{query}&limit=2")).json()
    assert [i["event"]["id"] for i in first["recommendations"]] == ["r1", "r2"]
    assert first["next_cursor"]
    rest = (await get(reco, f"{query}&limit=2&cursor={first['next_cursor']}")).json()
    assert [i["event"]["id"] for i in rest["recommendations"]] == ["r8", "r7"]
    assert rest["next_cursor"] is None
    # A wider range of dates reaches the later event too.
    later = (SOON + timedelta(days=45)).date().isoformat()
    wide = (await get(reco, f"{query}&date_to={later}")).json()
    assert "r5" in [i["event"]["id"] for i in wide["recommendations"]]
    # Nobody known: a 200 with nothing recommended, the names listed apart.
    unknown = (await get(reco, f"artists=Nobody,Else&near={NEAR}")).json()
    assert unknown["recommendations"] == []
    assert unknown["unmatched"] == ["Nobody", "Else"]


async def test_no_query_scans_a_collection(reco: Reco) -> None:
    now = datetime.now(UTC)
    found = candidate_filter((36.16, -86.78), 50, now, now + timedelta(days=30))
    plans = [
        await reco.db.command(
            "explain",
            {
                "find": EVENTS,
                "filter": found,
                "projection": CANDIDATE_FIELDS,
                "limit": CANDIDATE_MAX + 1,
            },
        ),
        await reco.db.command(
            "explain", {"find": ARTISTS, "filter": {"spotify_id": {"$in": ["sp1", "x"]}}}
        ),
        await reco.db.command(
            "explain", {"find": ARTISTS, "filter": {"name_key": {"$in": ["velvet crows"]}}}
        ),
        await reco.db.command("explain", {"find": EVENTS, "filter": {"_id": {"$in": ["r1"]}}}),
    ]
    for plan in plans:
        assert "COLLSCAN" not in str(plan["queryPlanner"]["winningPlan"]), plan


async def test_the_page_by_keyboard_shows_the_reasons(reco: Reco) -> None:
    executable = chromium_path()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            site = Site(reco.api.url, browser, reco.api.env, reco.api.topics, Path(), Path())
            context, page = await signed_in(site, "rae", "user")
            # Reachable from the navigation.
            await page.get_by_role("link", name="Recommendations").click()
            await expect(page).to_have_url(f"{site.url}/web/recommendations")
            await shot(page, "30-recommendations-empty")
            unlabelled = await page.evaluate(
                """[...document.querySelectorAll('input:not([type=hidden]), select')]
                   .filter(el => !el.labels || el.labels.length === 0).map(el => el.name)"""
            )
            assert unlabelled == []
            artists = page.get_by_label("Liked artists")
            for _ in range(20):
                if await artists.evaluate("el => el === document.activeElement"):
                    break
                await page.keyboard.press("Tab")
            await expect(artists).to_be_focused()
            await page.keyboard.type("Electric Giants, Nobody Here")
            await page.keyboard.press("Tab")
            await expect(page.get_by_label("Latitude")).to_be_focused()
            await page.keyboard.type("36.16")
            await page.keyboard.press("Tab")
            await page.keyboard.type("-86.78")
            await page.keyboard.press("Tab")
            await page.keyboard.type("50")
            await page.keyboard.press("Enter")
            await expect(page).to_have_url(re.compile(r"/web/recommendations\?artists="))
            results = page.locator("ol.results > li")
            await expect(results).to_have_count(4)
            await expect(results.first).to_contain_text("Electric Giants plays")
            reason = page.get_by_text("shares genre garage rock with Electric Giants")
            await expect(reason).to_be_visible()
            await expect(page.locator(".unmatched")).to_contain_text("Nobody Here")
            await shot(page, "31-recommendations")
            # A form error is shown beside its field.
            await page.goto(f"{site.url}/web/recommendations?artists=x&lat=36")
            await expect(page.locator("#lat-error")).to_be_visible()
            await context.close()
        finally:
            await browser.close()
