"""The web pages in a real Chromium (Debian's ``chromium``, driven by Playwright) against the API
process and the importer on the test stack: sign in through the dev login, search and filter,
open an event (its JSON-LD parsed), import as an organizer (202, then 201 and 400) and see the
imports with their status; keyboard only; the dev login is absent outside dev. Every page is
saved as a screenshot in ``.cache/test-artifacts/web/``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from services.normalizer.categories import CANONICAL
from shared.contracts import PriceRange
from shared.contracts.documents import Performer
from shared.mongo import (
    CATEGORIES,
    EVENTS,
    EXTERNAL_EVENTS,
    ensure_indexes,
    get_database,
    make_client,
)
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_api import (
    SOON,
    api_env,
    api_topics,
    canonical,
    document,
    free_port,
    record,
    spawn,
    start_api,
    stop,
    tail,
)
from tests.stack import ROOT

CHROMIUM = os.environ.get("MARQUEE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / ".cache" / "test-artifacts" / "web"

GENRES = ["indie rock", "garage rock"]
GIANTS = [
    record(
        "ticketmaster",
        "tm1",
        "Electric Giants",
        "c1",
        performers=[Performer(name="Electric Giants", spotify_id="sp1", genres=GENRES)],
        price_range=PriceRange(min=35, max=90, currency="USD"),
        ticket_url="https://tickets.example.test/tm1",
    ),
    record(
        "seatgeek",
        "sg1",
        "Electric Giants live",
        "c1",
        start=SOON + timedelta(minutes=30),
        performers=[Performer(name="Electric Giants")],
        price_range=PriceRange(min=29.5, max=120, currency="USD"),
        ticket_url="https://seats.example.test/sg1",
    ),
]
MEETUP = [
    record("meetup", "mu1", "Python Nashville", "c2", category="community", subcategory="tech")
]
JAZZ = [
    record(
        "eventbrite",
        "eb1",
        "Blue Monday Jazz",
        "c3",
        start=SOON + timedelta(days=1),
        subcategory="jazz",
        price_range=PriceRange(min=15, max=15, currency="USD"),
    )
]
# Enough events that a listing has a second page (20 a page).
OPEN_MIC = [
    record(
        "meetup",
        f"om{i}",
        f"Open Mic Night {i}",
        f"m{i}",
        start=SOON + timedelta(days=2, hours=i),
        category="community",
        subcategory="workshop",
    )
    for i in range(22)
]


@dataclass
class Site:
    url: str
    browser: Browser
    env: dict[str, str]
    topics: dict[str, str]
    log: Path
    importer_log: Path


def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's chromium"
            " package (`apt-get install -y chromium`; `./marquee setup` installs it when run as"
            " root), or MARQUEE_CHROMIUM naming another Chromium binary."
        )
    return CHROMIUM


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def importer_env(base: dict[str, str], topics: dict[str, str], unique: str) -> dict[str, str]:
    return {
        **base,
        "IMPORTER_GROUP_ID": f"importer-web-{unique}",
        "IMPORTER_UPDATES_GROUP_ID": f"importer-updates-web-{unique}",
        "IMPORTER_HOOKS_GROUP_ID": f"importer-hooks-web-{unique}",
        "IMPORTER_REQUESTS_TOPIC": topics["import_requests"],
        "IMPORTER_RESULTS_TOPIC": topics["import_results"],
        "IMPORTER_NOTIFICATIONS_TOPIC": topics["notifications"],
        "IMPORTER_CHANGES_TOPIC": topics["canonical"],
        "IMPORTER_UPDATES_ENABLED": "false",
        "IMPORTER_HTTP_PORT": "0",
    }


@pytest.fixture(scope="module")
async def site(
    stack: Any, kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path_factory: Any
) -> AsyncIterator[Site]:
    executable = chromium_path()
    unique = os.urandom(4).hex()
    topics = {**api_topics(f"web-{unique}"), "canonical": f"events.canonical.web-{unique}"}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1) for name in topics.values()])
    finally:
        await admin.close()
    database = f"web_{unique}"
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, database)
    await ensure_indexes(db)
    everything = GIANTS + MEETUP + JAZZ + OPEN_MIC
    await db[EXTERNAL_EVENTS].insert_many([document(e) for e in everything])
    events = [canonical("c1", GIANTS), canonical("c2", MEETUP), canonical("c3", JAZZ)]
    events += [canonical(f"m{i}", [e]) for i, e in enumerate(OPEN_MIC)]
    # The canonical event carries the merged performers (with Spotify genres) and prices.
    events[0]["performers"] = [p.model_dump() for p in GIANTS[0].performers]
    await db[EVENTS].insert_many(events)
    await db[CATEGORIES].insert_many([c.to_document() for c in CANONICAL])
    logs = tmp_path_factory.mktemp("web")
    env = {**api_env(stack, topics, database, free_port()), "API_IMPORT_WAIT_S": "4"}
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
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


async def signed_in(site: Site, name: str, role: str) -> tuple[BrowserContext, Page]:
    """A fresh browser session signed in through the dev login page."""
    context = await site.browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto(f"{site.url}/web/")
    await expect(page).to_have_url(re.compile(r"/web/login\?next="))
    await page.get_by_label("Name").fill(name)
    await page.get_by_label(role, exact=True).check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{site.url}/web/")
    return context, page


async def test_user_signs_in_searches_filters_and_opens_an_event(site: Site) -> None:
    context = await site.browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto(f"{site.url}/web/")
    await expect(page.get_by_role("heading", name="Sign in (development)")).to_be_visible()
    await shot(page, "01-login")
    await page.get_by_label("Name").fill("alice")
    await page.get_by_label("user", exact=True).check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Search events")).to_be_visible()
    cookie = next(c for c in await context.cookies() if c["name"] == "marquee_token")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/web")
    await expect(page.get_by_role("navigation", name="Main")).to_contain_text("alice")
    await shot(page, "02-search-upcoming")

    # Upcoming events, a page of 20 and a next page.
    results = page.locator("ol.results > li")
    await expect(results).to_have_count(20)
    await page.get_by_role("link", name="Next page").click()
    await expect(results).to_have_count(5)
    await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    await shot(page, "03-search-page-2")

    # Words: the two providers' records of one performance are one result with two badges.
    await page.goto(f"{site.url}/web/")
    await page.get_by_label("Words").fill("giants")
    await page.get_by_role("button", name="Search").click()
    await expect(results).to_have_count(1)
    first = results.first
    await expect(first.get_by_role("link")).to_have_text("Electric Giants")
    badges = first.get_by_role("list", name="Providers").get_by_role("listitem")
    await expect(badges).to_have_text(["Ticketmaster", "SeatGeek"])
    await shot(page, "04-search-words")

    # Provider, category (from the category tree), dates, and near a place.
    await page.get_by_label("Words").fill("")
    await page.get_by_label("Provider", exact=True).select_option(label="Eventbrite")
    await page.get_by_role("button", name="Search").click()
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("Blue Monday Jazz")
    await page.goto(f"{site.url}/web/")
    await page.get_by_label("Category", exact=True).select_option(value="jazz")
    await page.get_by_role("button", name="Search").click()
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("Blue Monday Jazz")
    await page.goto(f"{site.url}/web/")
    day = (SOON + timedelta(days=1)).date().isoformat()
    await page.get_by_label("From").fill(day)
    await page.get_by_label("To").fill(day)
    await page.get_by_role("button", name="Search").click()
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("Blue Monday Jazz")
    await page.goto(f"{site.url}/web/")
    await page.get_by_label("Words").fill("python")
    await page.get_by_label("Latitude").fill("36.2")
    await page.get_by_label("Longitude").fill("-86.8")
    await page.get_by_label("Radius (km)").fill("10")
    await page.get_by_role("button", name="Search").click()
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text(re.compile(r"Python Nashville.*km away", re.S))
    await shot(page, "05-search-near")
    await page.get_by_label("Longitude").fill("")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_text("Give both latitude and longitude.")).to_be_visible()
    await expect(page.get_by_label("Latitude")).to_have_attribute("aria-invalid", "true")
    await shot(page, "06-search-error")

    # The event: every provider's record side by side, prices, tickets, performers, JSON-LD.
    await page.goto(f"{site.url}/web/?q=giants")
    await results.first.get_by_role("link", name="Electric Giants").click()
    await expect(page).to_have_url(f"{site.url}/web/events/c1")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Electric Giants")
    table = page.get_by_role("table")
    await expect(table.get_by_role("columnheader")).to_have_text(
        ["Field", "Ticketmaster", "SeatGeek"]
    )
    await expect(page.locator("#price-range")).to_have_text("USD 29.50\u2013120.00")
    await expect(page.get_by_role("link", name="Tickets on SeatGeek")).to_have_attribute(
        "href", "https://seats.example.test/sg1"
    )
    await expect(page.locator(".performers")).to_contain_text("indie rock")
    await expect(page.get_by_role("button", name=re.compile("^Import"))).to_have_count(0)
    ld = json.loads(await page.locator('script[type="application/ld+json"]').text_content() or "")
    assert ld["@context"] == "https://schema.org"
    assert ld["@type"] == "Event"
    assert ld["name"] == "Electric Giants"
    assert ld["startDate"].endswith("Z")
    assert ld["location"]["address"]["addressLocality"]
    assert ld["offers"]["lowPrice"] == 29.5
    assert ld["offers"]["priceCurrency"] == "USD"
    assert ld["performer"][0]["genre"] == GENRES
    await shot(page, "07-event")

    # A user has no imports page; logging out ends the session.
    response = await page.goto(f"{site.url}/web/imports")
    assert response is not None
    assert response.status == 403
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(f"{site.url}/web/login")
    assert not [c for c in await context.cookies() if c["name"] == "marquee_token"]
    await context.close()


async def poll_page(page: Page, url: str, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        await page.goto(url)
        if text in (await page.locator("main").inner_text()):
            return
        assert time.monotonic() < deadline, f"{text!r} not on {url} in time"
        await asyncio.sleep(1)


async def test_organizer_imports_and_sees_the_status(site: Site, unique: str) -> None:
    context, page = await signed_in(site, "olga", "organizer")
    await page.goto(f"{site.url}/web/imports")
    await expect(page.get_by_text("You have not imported any event yet")).to_be_visible()
    await shot(page, "08-my-imports-empty")

    # No importer running yet: the API waits briefly, then answers 202 (accepted, pending).
    await page.goto(f"{site.url}/web/events/c3")
    outcome = page.locator("#import-outcome")
    await page.get_by_role("button", name="Import the Eventbrite record").click()
    await expect(outcome).to_contain_text("202 · Accepted", timeout=30_000)
    assert await page.evaluate("document.location.pathname") == "/web/events/c3"  # htmx swap
    await shot(page, "09-import-202")
    await page.goto(f"{site.url}/web/imports")
    row = page.get_by_role("row").filter(has_text="Blue Monday Jazz")
    await expect(row).to_contain_text("pending")
    await shot(page, "10-my-imports-pending")

    importer = spawn(
        "services.importer", importer_env(site.env, site.topics, unique), site.importer_log
    )
    try:
        # The importer picks the waiting request up: the page shows it imported.
        await poll_page(page, f"{site.url}/web/imports", "imported")
        await page.goto(f"{site.url}/web/events/c1")
        await page.get_by_role("button", name="Import the Ticketmaster record").click()
        await expect(outcome).to_contain_text("201 · Imported", timeout=30_000)
        await expect(outcome.locator("code")).to_have_text(re.compile(r"\S+"))
        await shot(page, "11-import-201")
        await page.get_by_role("button", name="Import the SeatGeek record").click()
        await expect(outcome).to_contain_text("400 · Not imported", timeout=30_000)
        await expect(outcome).to_contain_text("already")
        await shot(page, "12-import-400")
        await page.get_by_role("link", name="See my imported events").click()
        await expect(page.get_by_role("heading", name="My imported events")).to_be_visible()
        rows = page.locator("table.imports tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.filter(has_text="Electric Giants")).to_contain_text("imported")
        await expect(rows.filter(has_text="Blue Monday Jazz")).to_contain_text("imported")
        await shot(page, "13-my-imports")
    finally:
        stop(importer)
        if importer.returncode not in (0, -15, None):
            print(tail(site.importer_log))
    await context.close()


async def test_keyboard_only_search(site: Site) -> None:
    context, page = await signed_in(site, "kim", "user")
    await page.goto(f"{site.url}/web/")
    # The first stop is the skip link; it moves focus to the main content.
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    await expect(skip).to_be_focused()
    await page.keyboard.press("Enter")
    words = page.get_by_label("Words")
    for _ in range(10):
        if await words.evaluate("el => el === document.activeElement"):
            break
        await page.keyboard.press("Tab")
    await expect(words).to_be_focused()
    outline = await words.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline not in ("", "none"), "focus is not visible"
    await page.keyboard.type("jazz")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/web/\?q=jazz"))
    await expect(page.locator("ol.results > li")).to_have_count(1)
    # On through the results to the event link, then open it with Enter.
    # (Date fields take a stop per part: day, month, year.)
    for _ in range(60):
        await page.keyboard.press("Tab")
        name = await page.evaluate("document.activeElement.textContent")
        if name == "Blue Monday Jazz":
            break
    await expect(page.get_by_role("link", name="Blue Monday Jazz")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{site.url}/web/events/c3")
    await shot(page, "14-keyboard-event")
    # Every form control of the search page has a label.
    await page.goto(f"{site.url}/web/")
    unlabelled = await page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
           .filter(el => !el.labels || el.labels.length === 0).map(el => el.name)"""
    )
    assert unlabelled == []
    assert await page.locator("main").count() == 1
    assert await page.locator("nav").count() >= 1
    await context.close()


async def test_pages_load_nothing_from_elsewhere_and_dev_login_is_dev_only(
    site: Site, tmp_path: Path
) -> None:
    context, page = await signed_in(site, "zoe", "user")
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await page.goto(f"{site.url}/web/events/c1")
    await page.goto(f"{site.url}/web/?q=giants")
    await page.wait_for_load_state("networkidle")
    assert requested
    assert all(u.startswith(site.url) for u in requested), requested
    await context.close()
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        css = await http.get("/web/static/marquee.css")
        assert css.status_code == 200
        assert "text/css" in css.headers["content-type"]
        assert (await http.get("/web/static/htmx.min.js")).text.startswith("/*! htmx.org 2.")
        # Not signed in: sent to the dev login; the pages are not part of the OpenAPI.
        first = await http.get("/web/events/c1")
        assert first.status_code == 303
        assert first.headers["location"].startswith("/web/login")
        paths = (await http.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if p == "/web" or p.startswith("/web/")]
        # A form posted from another site is refused.
        forged = await http.post(
            "/web/login", data={"name": "x", "role": "admin"}, headers={"Origin": "http://evil"}
        )
        assert forged.status_code == 403
        assert "set-cookie" not in forged.headers
    # Outside dev the login page is 404 and a pasted token signs in.
    env = {**site.env, "MARQUEE_ENV": "staging", "API_HTTP_PORT": str(free_port())}
    env["API_JWT_SECRET"] = "staging-secret-" + os.urandom(16).hex()
    # Outside dev and test no secret may keep its placeholder (the API itself does not use S3).
    env["S3_ACCESS_KEY_ID"] = "web-" + os.urandom(8).hex()
    env["S3_SECRET_ACCESS_KEY"] = os.urandom(16).hex()
    async with start_api(env, tmp_path / "api-staging.log") as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await http.get("/web/login")).status_code == 404
            assert (await http.post("/web/login", data={"name": "a"})).status_code == 404
            first = await http.get("/web/")
            assert first.status_code == 303
            assert first.headers["location"].startswith("/web/token")
        from services.api.auth import mint

        token = mint("pat", "user", secret=env["API_JWT_SECRET"], ttl_s=600)
        context = await site.browser.new_context()
        page = await context.new_page()
        await page.goto(f"{url}/web/")
        await expect(page.get_by_role("heading", name="Sign in with a token")).to_be_visible()
        await shot(page, "15-token-sign-in")
        await page.get_by_label("Access token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Search events")).to_be_visible()
        await context.close()


@contextmanager
def venue_site(html: str) -> Iterator[str]:
    """Another site (its own origin on loopback) whose one page is ``html``."""

    class One(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), One)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_share_links_feeds_and_an_embedded_widget(site: Site) -> None:
    """The event page's Share section (UTM-tagged links, calendars, embed snippets), the search's
    feed links, and a widget embedded as its snippet says: it requests nothing but itself."""
    from urllib.parse import parse_qs, urlsplit

    from icalendar import Calendar

    context, page = await signed_in(site, "sam", "user")
    await page.goto(f"{site.url}/web/events/c1")
    share = page.get_by_role("region", name="Share")
    await expect(share).to_be_visible()
    email = await share.get_by_label("Email link").input_value()
    parts = urlsplit(email)
    assert parts.path == "/web/events/c1"
    assert parse_qs(parts.query) == {
        "utm_source": ["marquee"],
        "utm_medium": ["email"],
        "utm_campaign": ["event_share"],
    }
    venue_ics = await share.get_by_label("Events at Vertex Arena (iCalendar)").input_value()
    assert venue_ics == f"{site.url}/feeds/venues/Vertex%20Arena.ics"
    await expect(share.get_by_label("Events of Electric Giants (iCalendar)")).to_have_value(
        f"{site.url}/feeds/artists/Electric%20Giants.ics"
    )
    snippet = await share.get_by_label("Events at Vertex Arena (widget)").input_value()
    assert snippet.startswith("<iframe ")
    assert "token=YOUR_TOKEN" in snippet
    # Without a token the addresses are refused; a feed token made from the page fills them in.
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(venue_ics)).status_code == 401
        await share.get_by_role("button", name="Make a feed token for these addresses").click()
        await expect(page.locator("#feed-token-made")).to_be_visible()
        share = page.get_by_role("region", name="Share")
        venue_ics = await share.get_by_label("Events at Vertex Arena (iCalendar)").input_value()
        assert venue_ics.startswith(f"{site.url}/feeds/venues/Vertex%20Arena.ics?token=mft_")
        snippet = await share.get_by_label("Events at Vertex Arena (widget)").input_value()
        assert "token=mft_" in snippet
        await share.scroll_into_view_if_needed()
        await shot(page, "16-event-share")
        feed = await http.get(venue_ics)
        assert feed.status_code == 200, feed.text
        uids = {str(e["UID"]) for e in Calendar.from_ical(feed.content).walk("VEVENT")}
        assert "c1@marquee.events" in uids
    # The search page offers its own feeds (a saved search is the feed's address).
    await page.goto(f"{site.url}/web/?q=giants")
    await page.get_by_text("Subscribe to this search").click()
    await expect(page.locator('a.feed-url[data-kind="ics"]')).to_have_attribute(
        "href", f"{site.url}/feeds/search.ics?q=giants"
    )
    await context.close()

    # The widget, embedded by its snippet in another site's page: only the widget is requested.
    context = await site.browser.new_context(viewport={"width": 400, "height": 460})
    page = await context.new_page()
    html = f"<!doctype html><title>A venue's site</title>{snippet}"
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    with venue_site(html) as host:
        await page.goto(host)
        frame = page.frame_locator("iframe")
        await expect(frame.get_by_role("heading")).to_have_text("Next at Vertex Arena")
        await expect(frame.get_by_role("link", name="Electric Giants")).to_be_visible()
        await page.wait_for_load_state("networkidle")
    assert [u.split("?")[0] for u in requested] == [
        host,
        f"{site.url}/widgets/venues/Vertex%20Arena",
    ]
    await shot(page, "17-widget")
    await context.close()
