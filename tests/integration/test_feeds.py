"""Marketing tools over a real store: iCalendar feeds (parsed back by ``icalendar``), Atom and RSS
(parsed by xml.etree), JSON-LD, widgets; their auth (header or ``token``), 404s and caching."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from icalendar import Calendar, Component
from pymongo.asynchronous.database import AsyncDatabase

from services.api.feeds import WIDGET_CSP
from services.api.limits import ResponseCache
from shared.mongo import EVENTS, LOCAL_EVENTS, Document
from shared.search import TERMS, terms_of
from tests.integration.test_api_http import Api, auth, build, client_of, token

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
async def api(mongo_db: AsyncDatabase[Document]) -> AsyncIterator[Api]:
    services, fake = await build(mongo_db)
    # A performer on c1, a cancelled c7 (STATUS:CANCELLED), and two local events of alice's.
    c1 = await mongo_db[EVENTS].find_one({"_id": "c1"})
    assert c1 is not None
    c1["performers"] = [{"name": "The Electric Giants"}]
    # The normalizer's search words include the performers' names.
    await mongo_db[EVENTS].update_one(
        {"_id": "c1"}, {"$set": {"performers": c1["performers"], TERMS: terms_of(c1)}}
    )
    await mongo_db[EVENTS].update_one({"_id": "c7"}, {"$set": {"status": "EventCancelled"}})
    now = datetime.now(UTC).replace(microsecond=0)
    await mongo_db[LOCAL_EVENTS].insert_many(
        [
            {
                "_id": "le_a",
                "title": "Alice's",
                "start": now + timedelta(days=5),
                "created_by": "alice",
            },
            {
                "_id": "le_b",
                "title": "Bob's",
                "start": now + timedelta(days=6),
                "created_by": "bob",
            },
        ]
    )
    async with client_of(services) as client:
        yield Api(client, services, fake, mongo_db)


def events_of(body: bytes) -> dict[str, Component]:
    calendar = Calendar.from_ical(body)
    return {str(e["UID"]): e for e in calendar.walk("VEVENT")}


async def test_search_ics_parses_with_stable_uids_and_status(api: Api) -> None:
    user = auth("user")
    response = await api.client.get("/feeds/search.ics?q=electric", headers=user)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    assert response.headers["cache-control"] == "private, max-age=300"
    assert b"\r\n" in response.content
    found = events_of(response.content)
    assert set(found) == {"c1@marquee.events"}  # upcoming only: c9 already started
    entry = found["c1@marquee.events"]
    for name in ("DTSTAMP", "DTSTART", "SUMMARY", "LOCATION", "URL", "STATUS"):
        assert name in entry, name
    assert entry.decoded("DTSTART").tzinfo is not None
    assert str(entry["STATUS"]) == "CONFIRMED"
    assert str(entry["URL"]).endswith("/web/events/c1")
    assert "Vertex Arena" in str(entry["LOCATION"])
    again = await api.client.get("/feeds/search.ics?q=electric", headers=user)
    assert set(events_of(again.content)) == set(found)
    # Validators: the same body is a 304.
    etag = response.headers["etag"]
    cached = await api.client.get(
        "/feeds/search.ics?q=electric", headers={**user, "If-None-Match": etag}
    )
    assert cached.status_code == 304
    everything = events_of((await api.client.get("/feeds/search.ics", headers=user)).content)
    assert str(everything["c7@marquee.events"]["STATUS"]) == "CANCELLED"
    past = await api.client.get("/feeds/search.ics?include_past=true", headers=user)
    assert "c9@marquee.events" in events_of(past.content)


async def test_feeds_take_the_token_in_the_url(api: Api) -> None:
    missing = await api.client.get("/feeds/search.ics")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/json"
    bad = await api.client.get("/feeds/search.ics?token=not-a-jwt")
    assert bad.status_code == 401
    ok = await api.client.get(f"/feeds/search.ics?token={token('user')}")
    assert ok.status_code == 200
    refused = await api.client.get(f"/feeds/local-events.ics?token={token('user')}")
    assert refused.status_code == 403
    invalid = await api.client.get("/feeds/search.ics?status=nope", headers=auth("user"))
    assert invalid.status_code == 400


async def test_venue_and_artist_calendars(api: Api) -> None:
    user = auth("user")
    venue = await api.client.get("/feeds/venues/vertex%20arena.ics", headers=user)
    assert venue.status_code == 200, venue.text
    assert set(events_of(venue.content)) == {"c1@marquee.events", "c7@marquee.events"}
    nowhere = await api.client.get("/feeds/venues/Vertex.ics", headers=user)
    assert events_of(nowhere.content) == {}
    artist = await api.client.get("/feeds/artists/the%20electric%20giants.ics", headers=user)
    assert set(events_of(artist.content)) == {"c1@marquee.events"}
    no_word = await api.client.get("/feeds/artists/%2D%2D.ics", headers=user)
    assert no_word.status_code == 422


async def test_local_events_feed_is_private_to_its_organizer(api: Api) -> None:
    alice = await api.client.get("/feeds/local-events.ics", headers=auth("organizer", "alice"))
    assert alice.status_code == 200, alice.text
    assert set(events_of(alice.content)) == {"le_a@marquee.events"}
    bob = await api.client.get(f"/feeds/local-events.ics?token={token('organizer', 'bob')}")
    assert set(events_of(bob.content)) == {"le_b@marquee.events"}
    plan = (
        await api.db[LOCAL_EVENTS]
        .find({"created_by": "alice"})
        .sort([("created_by", 1), ("start", 1)])
        .explain()
    )
    assert "COLLSCAN" not in orjson.dumps(plan, default=str).decode()


async def test_atom_and_rss_newest_first(api: Api) -> None:
    user = auth("user")
    atom = await api.client.get("/feeds/search.atom?include_past=true", headers=user)
    assert atom.status_code == 200, atom.text
    assert atom.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(atom.content)
    ids = [e.findtext(f"{ATOM}id") for e in root.findall(f"{ATOM}entry")]
    # c7 was modified last, then c1, then c9.
    assert [i.rsplit(":", 1)[1] for i in ids if i] == ["c7", "c1", "c9"]
    links = [e.find(f"{ATOM}link") for e in root.findall(f"{ATOM}entry")]
    assert all(link is not None and "/web/events/" in link.get("href", "") for link in links)
    rss = await api.client.get("/feeds/search.rss?q=python", headers=user)
    assert rss.status_code == 200
    channel = ET.fromstring(rss.content).find("channel")
    assert channel is not None
    assert [i.findtext("title") for i in channel.findall("item")] == ["Python Meetup"]


async def test_event_jsonld(api: Api) -> None:
    response = await api.client.get("/events/c1/jsonld", headers=auth("user"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/ld+json"
    body = response.json()
    assert body["@type"] == "Event"
    assert body["@context"] == "https://schema.org"
    assert body["url"].endswith("/web/events/c1")
    assert body["location"]["name"] == "Vertex Arena"
    missing = await api.client.get("/events/nope/jsonld", headers=auth("user"))
    assert missing.status_code == 404
    assert missing.json()["error"] == "Event not found"


async def test_widgets_are_self_contained(api: Api) -> None:
    response = await api.client.get(f"/widgets/venues/Vertex%20Arena?token={token('user')}")
    assert response.status_code == 200, response.text
    assert response.headers["content-security-policy"] == WIDGET_CSP
    html = response.text
    assert "Electric Giants" in html
    assert "Python Meetup" in html
    assert "<script" not in html
    assert "src=" not in html
    assert "utm_source=widget" in html
    assert "utm_campaign=venue_widget" in html
    artist = await api.client.get("/widgets/artists/The%20Electric%20Giants", headers=auth("user"))
    assert "Electric Giants" in artist.text
    assert "Python Meetup" not in artist.text


async def test_feed_tokens_are_long_lived_and_revocable(api: Api) -> None:
    alice = auth("organizer", "alice")
    made = await api.client.post("/feeds/tokens", headers=alice, json={"label": "my calendar"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert set(body) == {"id", "label", "role", "created_at", "token"}
    assert (body["label"], body["role"]) == ("my calendar", "organizer")
    assert body["token"].startswith("mft_")
    assert made.headers["location"] == f"/feeds/tokens/{body['id']}"
    url = f"/feeds/local-events.ics?token={body['token']}"
    feed = await api.client.get(url)
    assert feed.status_code == 200, feed.text
    assert set(events_of(feed.content)) == {"le_a@marquee.events"}
    # Listed without the secret; not a Bearer token; a wrong secret is a 401.
    listed = (await api.client.get("/feeds/tokens", headers=alice)).json()["tokens"]
    assert [t["id"] for t in listed] == [body["id"]]
    assert "token" not in listed[0]
    stored = await api.db["feed_tokens"].find_one({"_id": body["id"]})
    assert stored is not None
    assert body["token"].split("_", 2)[2] not in orjson.dumps(stored, default=str).decode()
    bearer = await api.client.get(
        "/feeds/local-events.ics", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert bearer.status_code == 401
    forged = await api.client.get(url[:-4] + "AAAA")
    assert forged.status_code == 401
    assert forged.json()["error"] == "Invalid or revoked feed token"
    # Someone else cannot revoke it; its owner can, and it stops working at once.
    other = await api.client.delete(f"/feeds/tokens/{body['id']}", headers=auth("user", "bob"))
    assert other.status_code == 404
    gone = await api.client.delete(f"/feeds/tokens/{body['id']}", headers=alice)
    assert gone.status_code == 204
    assert (await api.client.get(url)).status_code == 401
    # A user's token carries the user role: not enough for the organizer's feed.
    user = (await api.client.post("/feeds/tokens", headers=auth("user", "carol"))).json()
    assert (await api.client.get(f"/feeds/search.ics?token={user['token']}")).status_code == 200
    refused = await api.client.get(f"/feeds/local-events.ics?token={user['token']}")
    assert refused.status_code == 403
    extra = await api.client.post("/feeds/tokens", headers=alice, json={"nope": 1})
    assert extra.status_code == 422
    plan = (
        await api.db["feed_tokens"]
        .find({"owner": "alice"})
        .sort([("owner", 1), ("created_at", -1)])
        .explain()
    )
    assert "COLLSCAN" not in orjson.dumps(plan, default=str).decode()


async def test_catalogue_feeds_are_cached_per_replica_private_ones_never(api: Api) -> None:
    api.services.cache = ResponseCache(60, 100)
    url = "/feeds/venues/Vertex%20Arena.ics"
    first = await api.client.get(url, headers=auth("user"))
    # Another caller (a token in the URL) is served the same body from the cache.
    second = await api.client.get(f"{url}?token={token('user', 'bob')}")
    assert second.content == first.content
    assert api.services.cache.hits == 1
    assert (await api.client.get("/feeds/search.atom", headers=auth("user"))).status_code == 200
    assert (await api.client.get("/feeds/search.atom", headers=auth("user"))).status_code == 200
    assert api.services.cache.hits == 2
    for _ in range(2):
        mine = await api.client.get("/feeds/local-events.ics", headers=auth("organizer"))
        assert mine.status_code == 200
    assert api.services.cache.hits == 2
