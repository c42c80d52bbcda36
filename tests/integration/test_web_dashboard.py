"""The dashboard page in a real Chromium against the API process on the test stack: every chart
drawn (SVG bars) with its numbers in the text alternatives, the venue map drawn over the locally
served country layer with a circle per place, admin-only sections, keyboard navigation, nothing
loaded from elsewhere. Screenshots go to ``.cache/test-artifacts/web/`` (``dash-*``)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from playwright.async_api import Page, async_playwright, expect

from services.api.store import PROVIDER_STATS
from shared.contracts import Venue
from shared.mongo import EVENTS, EXTERNAL_EVENTS, IMPORTS, ensure_indexes, get_database, make_client
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_api import (
    SOON,
    api_env,
    api_topics,
    canonical,
    document,
    free_port,
    record,
    start_api,
)
from tests.integration.test_web import (
    CHROMIUM_ARGS,
    GIANTS,
    JAZZ,
    MEETUP,
    Site,
    chromium_path,
    shot,
    signed_in,
)

BERLIN = record("eventbrite", "eb20", "Techno Nacht", "c20", start=SOON + timedelta(days=3))
BERLIN = BERLIN.model_copy(
    update={
        "venue": Venue(name="Tresor", city="Berlin", country="DE", lat=52.51, lon=13.42),
        "venue_city": "Berlin",
    }
)


@pytest.fixture(scope="module")
async def site(
    stack: Any, kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path_factory: Any
) -> AsyncIterator[Site]:
    executable = chromium_path()
    unique = os.urandom(4).hex()
    topics = api_topics(f"dash-{unique}")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1) for name in topics.values()])
    finally:
        await admin.close()
    database = f"dash_{unique}"
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, database)
    await ensure_indexes(db)
    records = GIANTS + MEETUP + JAZZ + [BERLIN]
    await db[EXTERNAL_EVENTS].insert_many([document(e) for e in records])
    await db[EVENTS].insert_many(
        [
            canonical("c1", GIANTS),
            canonical("c2", MEETUP),
            canonical("c3", JAZZ),
            canonical("c20", [BERLIN]),
        ]
    )
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    claims = [hour, hour, hour, hour - timedelta(hours=2)]
    await db[IMPORTS].insert_many(
        [
            {"_id": f"claim{i}", "source": "meetup", "state": "active", "created_at": at}
            for i, at in enumerate(claims)
        ]
    )
    await db[PROVIDER_STATS].insert_many(
        [
            {
                "_id": "ticketmaster",
                "calls": 50,
                "errors": 10,
                "throttled": 2,
                "success_rate": 0.8,
                "latency_ms": {"p50": 120.0, "p95": 400.0},
                "updated_at": hour,
            },
            {
                "_id": "seatgeek",
                "calls": 200,
                "errors": 10,
                "throttled": 0,
                "success_rate": 0.95,
                "latency_ms": {"p50": 41.5, "p95": 180.0},
                "updated_at": hour,
            },
        ]
    )
    logs = tmp_path_factory.mktemp("dash")
    env = api_env(stack, topics, database, free_port())
    try:
        async with start_api(env, logs / "api.log") as url, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield Site(url, browser, env, topics, logs / "api.log", logs / "importer.log")
            finally:
                await browser.close()
    finally:
        await client.drop_database(database)
        await client.close()


async def map_ready(page: Page) -> None:
    the_map = page.locator("#venue-map")
    await expect(the_map).to_have_attribute("data-state", "ready", timeout=20_000)
    assert await the_map.get_attribute("data-base-error") is None


async def bars_drawn(page: Page, chart: str) -> list[float]:
    """The widths of a chart's drawn bars (its SVG, not the table)."""
    widths: list[float] = await page.locator(f"#chart-{chart} svg rect.bar").evaluate_all(
        "els => els.map(e => e.getBBox().width * e.getBBox().height)"
    )
    return widths


async def test_admin_sees_every_chart_and_the_map(site: Site) -> None:
    context, page = await signed_in(site, "ada", "admin")
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await page.get_by_role("link", name="Dashboard").click()
    await expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    await map_ready(page)

    # Every chart is drawn, and says its numbers (aria-label) and lists them (table).
    for chart in ("by-source", "by-category", "by-country", "by-city", "imports", "latency"):
        areas = await bars_drawn(page, chart)
        assert areas, chart
        assert any(a > 0 for a in areas), chart
    svg = page.locator("#chart-by-source svg")
    await expect(svg).to_have_attribute("role", "img")
    await expect(svg).to_have_attribute(
        "aria-label",
        "Upcoming records by provider. Ticketmaster: 1; SeatGeek: 1; Eventbrite: 2; Meetup: 1.",
    )
    await expect(page.locator("#chart-by-category svg")).to_have_attribute(
        "aria-label", re.compile(r"music: 3; community: 1")
    )
    await expect(page.locator("#chart-by-country svg")).to_have_attribute(
        "aria-label", re.compile(r"US: 3; DE: 1")
    )
    await expect(page.locator("#chart-by-city svg")).to_have_attribute(
        "aria-label", re.compile(r"Nashville, US: 3; Berlin, DE: 1")
    )
    await expect(page.locator("#chart-imports svg")).to_have_attribute(
        "aria-label", re.compile(r"^Imports per hour\. 4 in all; .* 1, .* 3\.$")
    )
    await expect(page.locator("#chart-latency svg")).to_have_attribute(
        "aria-label", re.compile(r"Ticketmaster: p50 120 ms, p95 400 ms; SeatGeek: p50 41.5 ms")
    )
    await expect(page.locator("#chart-success svg")).to_have_attribute(
        "aria-label", re.compile(r"Ticketmaster: 80%; SeatGeek: 95%")
    )
    await expect(page.locator("#chart-by-source table")).to_contain_text("Eventbrite2")
    await page.locator("#chart-success summary").click()
    row = page.locator("#chart-success table tbody tr").filter(has_text="SeatGeek")
    await expect(row.locator("td")).to_have_text(["200", "10", "0", "95.0%", "41.5", "180.0"])

    # The map: the country outlines (served here) and a circle per place, sized by its events.
    the_map = page.locator("#venue-map")
    assert int(await the_map.get_attribute("data-countries") or 0) > 150
    assert await page.locator("#venue-map path.marquee-country").count() > 150
    points = page.locator("#venue-map path.marquee-point")
    await expect(points).to_have_count(2)
    await points.first.hover()
    await expect(page.locator(".leaflet-tooltip")).to_have_text("Nashville, US: 3 events")
    await expect(page.locator("table.places tbody tr")).to_have_count(2)
    await shot(page, "dash-01-admin")

    # Per day instead of per hour.
    await page.get_by_role("link", name="Per day (30 days)").click()
    await expect(page.locator("#chart-imports figcaption")).to_have_text("Imports per day")
    await map_ready(page)
    await shot(page, "dash-02-admin-per-day")

    assert requested
    assert all(u.startswith(site.url) for u in requested), requested
    assert any(u.endswith("/web/static/map/countries-110m.json") for u in requested)
    await context.close()


async def test_user_sees_the_catalogue_not_the_operations(site: Site) -> None:
    context, page = await signed_in(site, "uma", "user")
    await page.goto(f"{site.url}/web/dashboard")
    await map_ready(page)
    await expect(page.locator("#venue-map path.marquee-point")).to_have_count(2)
    await expect(page.locator("#chart-by-source svg rect.bar")).to_have_count(4)
    await expect(page.locator("#chart-imports")).to_have_count(0)
    await expect(page.locator("#chart-latency")).to_have_count(0)
    await expect(page.get_by_text("shown to admins")).to_be_visible()
    # Every chart has a text alternative; every control a label.
    unlabelled = await page.evaluate(
        """[...document.querySelectorAll('svg[role=img]')]
           .filter(s => !s.getAttribute('aria-label')).length"""
    )
    assert unlabelled == 0
    await shot(page, "dash-03-user")
    await context.close()
    # Not signed in: the sign-in page, then back.
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        first = await http.get("/web/dashboard")
        assert first.status_code == 303
        assert first.headers["location"] == "/web/login?next=/web/dashboard"
        assert (await http.get("/web/static/map/countries-110m.json")).json()["type"] == (
            "Topology"
        )
        assert (await http.get("/web/static/leaflet.js")).text.startswith("/* @preserve")


async def test_keyboard_to_the_dashboard_and_its_numbers(site: Site) -> None:
    context, page = await signed_in(site, "kai", "admin")
    await page.goto(f"{site.url}/web/")
    link = page.get_by_role("link", name="Dashboard")
    for _ in range(15):
        await page.keyboard.press("Tab")
        if await link.evaluate("el => el === document.activeElement"):
            break
    await expect(link).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{site.url}/web/dashboard")
    await map_ready(page)
    # On to the first chart's numbers; Enter opens them.
    summary = page.locator("#chart-by-source summary")
    for _ in range(30):
        await page.keyboard.press("Tab")
        if await summary.evaluate("el => el === document.activeElement"):
            break
    await expect(summary).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#chart-by-source table")).to_be_visible()
    # The map takes focus too (arrows pan it, + and - zoom).
    the_map = page.locator("#venue-map.leaflet-container")
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await the_map.evaluate("el => el === document.activeElement"):
            break
    await expect(the_map).to_be_focused()
    await page.keyboard.press("+")
    await shot(page, "dash-04-keyboard")
    await context.close()


async def test_search_near_a_place_shows_the_results_on_the_map(site: Site) -> None:
    context, page = await signed_in(site, "nia", "user")
    await page.goto(f"{site.url}/web/")
    await expect(page.locator("#venue-map")).to_have_count(0)  # no place: no map
    await page.get_by_label("Latitude").fill("36.2")
    await page.get_by_label("Longitude").fill("-86.8")
    await page.get_by_label("Radius (km)").fill("25")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("ol.results > li")).to_have_count(3)
    await map_ready(page)
    points = page.locator("#venue-map path.marquee-point")
    await expect(points).to_have_count(1)
    await points.first.hover()
    await expect(page.locator(".leaflet-tooltip")).to_have_text("Nashville, US: 3 events")
    await shot(page, "dash-05-search-near-map")
    await context.close()
