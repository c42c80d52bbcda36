"""The price history page in a real Chromium against the API process on the test stack: the
event page links to it, both line charts are drawn (a line per provider record) with their
numbers in the aria-label and the tables, the sell-through signals are listed, an unknown
event is a 404 page. Screenshots go to ``.cache/test-artifacts/web/`` (``prices-*``)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from playwright.async_api import async_playwright, expect

from services.normalizer.pipeline import CatalogueStore
from shared.mongo import EVENTS, EXTERNAL_EVENTS, ensure_indexes, get_database, make_client
from shared.series import Point
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_api import (
    api_env,
    api_topics,
    canonical,
    document,
    free_port,
    start_api,
)
from tests.integration.test_web import CHROMIUM_ARGS, GIANTS, Site, chromium_path, shot, signed_in

TODAY = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
async def site(
    stack: Any, kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path_factory: Any
) -> AsyncIterator[Site]:
    executable = chromium_path()
    unique = os.urandom(4).hex()
    topics = api_topics(f"prices-{unique}")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1) for name in topics.values()])
    finally:
        await admin.close()
    database = f"prices_{unique}"
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, database)
    await ensure_indexes(db)
    await db[EXTERNAL_EVENTS].insert_many([document(e) for e in GIANTS])
    await db[EVENTS].insert_one(canonical("c1", GIANTS))
    store = CatalogueStore(db)
    # Over four days SeatGeek sells down and its prices rise; Ticketmaster's price moves once.
    for day, listings in enumerate([400, 300, 210, 120]):
        t = TODAY - timedelta(days=3 - day)
        low = 40.0 + day * 5
        await store.write_series(
            [Point("seatgeek:sg1", "seatgeek", t, low, 200.0, low + 40, listings, "USD")]
        )
        if day in (0, 2):
            await store.write_series(
                [Point("ticketmaster:tm1", "ticketmaster", t, 30.0 + day, 90.0, None, None, "USD")]
            )
    logs = tmp_path_factory.mktemp("prices")
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


async def test_price_history_chart_and_table(site: Site) -> None:
    context, page = await signed_in(site, "pat", "user")
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await page.goto(f"{site.url}/web/events/c1")
    await page.get_by_role("link", name="Prices and listings over time").click()
    await expect(page).to_have_url(f"{site.url}/web/events/c1/prices")
    await expect(page.get_by_role("heading", name="Prices and listings", level=1)).to_be_visible()

    # A line per record in the price chart; only SeatGeek counts listings.
    price = page.locator("#chart-lowest-price svg")
    await expect(price).to_have_attribute("role", "img")
    await expect(price.locator("polyline.line")).to_have_count(2)
    lengths: list[float] = await price.locator("polyline.line").evaluate_all(
        "els => els.map(e => e.getTotalLength())"
    )
    assert all(n > 0 for n in lengths), lengths
    await expect(price.locator("circle.dot")).to_have_count(6)
    await expect(price).to_have_attribute(
        "aria-label", re.compile(r"Ticketmaster tm1: 30 to 32; SeatGeek sg1: 40 to 55\.$")
    )
    listings = page.locator("#chart-listings svg")
    await expect(listings).to_have_attribute(
        "aria-label", re.compile(r"Ticketmaster tm1: no data; SeatGeek sg1: 400 to 120\.$")
    )

    # The signals, and every point in the table alternative.
    sg = page.locator("#signals tbody tr[data-key='seatgeek:sg1']")
    await expect(sg.locator("td")).to_have_text(
        ["4", "55.00 USD", "120", "-93.33", "70.0 %", "18.8 %", "selling fast"]
    )
    tm = page.locator("#signals tbody tr[data-key='ticketmaster:tm1']")
    await expect(tm.locator("th")).to_contain_text("cheapest")
    await page.locator("#price-points summary").click()
    await expect(page.locator("#price-points tbody tr")).to_have_count(6)
    await shot(page, "prices-01-history")

    # Earlier days: nothing there yet.
    await page.locator("#older-prices").click()
    await expect(page.locator("#chart-lowest-price .empty")).to_be_visible()
    assert all(u.startswith(site.url) for u in requested), requested

    await page.goto(f"{site.url}/web/events/nope/prices")
    await expect(page.get_by_role("heading", name="Event not found")).to_be_visible()
    await context.close()
