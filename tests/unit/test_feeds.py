"""The feed builders (services/api/feeds.py): iCalendar read back by ``icalendar``, Atom and RSS
by xml.etree, UTM links, the widget's HTML and the event page's share section."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from icalendar import Calendar

from services.api import feeds, feedtokens

BASE = "https://marquee.example.com"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"


def event(event_id: str, **extra: Any) -> dict[str, Any]:
    start = datetime(2026, 7, 1, 19, 30, tzinfo=UTC)
    return {
        "_id": event_id,
        "title": f"Show {event_id}",
        "status": "EventScheduled",
        "start": {"utc": start, "local": "2026-07-01T14:30:00", "timezone": "America/Chicago"},
        "venue": {"name": "Vertex Arena", "city": "Chicago", "country": "US"},
        "updated_at": datetime(2026, 5, 1, tzinfo=UTC),
        **extra,
    }


def parsed(body: bytes) -> dict[str, Any]:
    return {str(e["UID"]): e for e in Calendar.from_ical(body).walk("VEVENT")}


def test_calendar_entries_are_complete_and_stable() -> None:
    docs = [
        event("c1", description="x" * 300),
        event("c2", status="EventCancelled"),
        event("c3", start={"local": "2026-08-02", "time_tbd": True}),
        event("c4", start={"date_tbd": True}),  # no date: no calendar entry
    ]
    body = feeds.calendar(docs, "Marquee: test", BASE, now=NOW)
    assert body.startswith(b"BEGIN:VCALENDAR\r\n")
    # Lines are folded at 75 octets (the 300-character description spans several).
    assert all(len(line) <= 75 for line in body.split(b"\r\n"))
    found = parsed(body)
    assert set(found) == {"c1@marquee.events", "c2@marquee.events", "c3@marquee.events"}
    one = found["c1@marquee.events"]
    assert one.decoded("DTSTART") == datetime(2026, 7, 1, 19, 30, tzinfo=UTC)
    assert one.decoded("DTSTAMP") == datetime(2026, 5, 1, tzinfo=UTC)
    assert str(one["URL"]) == f"{BASE}/web/events/c1"
    assert str(one["LOCATION"]) == "Vertex Arena, Chicago, US"
    assert str(one["DESCRIPTION"]) == "x" * 300
    assert str(one["STATUS"]) == "CONFIRMED"
    assert str(found["c2@marquee.events"]["STATUS"]) == "CANCELLED"
    allday = found["c3@marquee.events"]
    assert allday.decoded("DTSTART") == date(2026, 8, 2)
    assert allday.decoded("DTEND") == date(2026, 8, 3)
    # The same events give the same entries.
    assert feeds.calendar(docs, "Marquee: test", BASE, now=NOW) == body


def test_local_event_start_is_an_instant() -> None:
    doc = {"_id": "le_1", "title": "Mine", "start": datetime(2026, 9, 1, 18, tzinfo=UTC)}
    found = parsed(feeds.calendar([doc], "mine", BASE, now=NOW))
    assert found["le_1@marquee.events"].decoded("DTSTART") == datetime(2026, 9, 1, 18, tzinfo=UTC)
    assert found["le_1@marquee.events"].decoded("DTSTAMP") == NOW


def test_atom_and_rss_keep_the_order_given() -> None:
    docs = [event("c2", status="EventCancelled"), event("c1")]
    root = ET.fromstring(feeds.atom(docs, "Marquee: rock", f"{BASE}/feeds/search.atom", BASE))
    assert root.tag == f"{ATOM}feed"
    entries = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == ["Show c2", "Show c1"]
    assert "cancelled" in (entries[0].findtext(f"{ATOM}summary") or "")
    channel = ET.fromstring(feeds.rss(docs, "Marquee: rock", f"{BASE}/x.rss", BASE)).find("channel")
    assert channel is not None
    items = channel.findall("item")
    assert [i.findtext("link") for i in items] == [f"{BASE}/web/events/c2", f"{BASE}/web/events/c1"]
    empty = ET.fromstring(feeds.atom([], "none", f"{BASE}/feeds/search.atom", BASE))
    assert empty.findall(f"{ATOM}entry") == []


def test_utm_links() -> None:
    url = feeds.with_utm(f"{BASE}/web/events/c1?x=1&utm_source=old", "marquee", "email")
    query = parse_qs(urlsplit(url).query)
    assert query == {
        "x": ["1"],
        "utm_source": ["marquee"],
        "utm_medium": ["email"],
        "utm_campaign": ["event_share"],
    }
    links = feeds.share_links(f"{BASE}/web/events/c1")
    assert [link["medium"] for link in links] == ["link", "email", "social"]
    assert all("utm_medium=" + link["medium"] in link["url"] for link in links)


def test_share_section_names_venue_and_performers() -> None:
    doc = event("a/b", performers=[{"name": "AC/DC"}, {"name": "--"}])
    share = feeds.share_section(doc, BASE + "/")
    assert share["links"][0]["url"].startswith(f"{BASE}/web/events/a%2Fb?")
    assert [c["url"] for c in share["calendars"]] == [
        f"{BASE}/feeds/venues/Vertex%20Arena.ics",
        f"{BASE}/feeds/artists/AC%2FDC.ics",
    ]
    assert share["widgets"][1]["snippet"].startswith('<iframe src="')
    assert "sandbox=" in share["widgets"][1]["snippet"]


def test_search_feeds_drop_paging() -> None:
    found = feeds.search_feeds(BASE, {"q": "rock & roll", "limit": "20", "cursor": "1~a"})
    assert [f["url"] for f in found] == [
        f"{BASE}/feeds/search.ics?q=rock+%26+roll",
        f"{BASE}/feeds/search.atom?q=rock+%26+roll",
        f"{BASE}/feeds/search.rss?q=rock+%26+roll",
    ]


def test_widget_is_escaped_and_self_contained() -> None:
    html = feeds.widget_html(
        [event("c1", title="<script>x</script>", status="EventCancelled")],
        "Next at <Vertex>",
        BASE,
        "venue_widget",
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;Vertex&gt;" in html
    assert "src=" not in html
    assert "http://" not in html
    assert "(cancelled)" in html
    assert "utm_campaign=venue_widget" in html
    assert feeds.widget_html([], "Nothing", BASE, "c").count("No upcoming events.") == 1


def test_text_is_escaped_and_folded_by_octets() -> None:
    title = "Rock, Roll; and \\ more\r\nnext line \x07" + "é" * 80
    body = feeds.calendar([event("c9", title=title)], "a, b", BASE, now=NOW)
    lines = body.split(b"\r\n")
    assert all(len(line) <= 75 for line in lines)
    assert b"\r\n\r\n" not in body[:-2]
    entry = parsed(body)["c9@marquee.events"]
    assert str(entry["SUMMARY"]) == "Rock, Roll; and \\ more\nnext line " + "é" * 80


def test_share_section_with_a_feed_token() -> None:
    share = feeds.share_section(event("c1"), BASE, token="mft_abc_def")
    assert (
        share["calendars"][0]["url"] == f"{BASE}/feeds/venues/Vertex%20Arena.ics?token=mft_abc_def"
    )
    assert "?token=mft_abc_def" in share["widgets"][0]["snippet"]
    assert feeds.share_section(event("c1"), BASE)["token"] is None


def test_feed_tokens_store_only_a_digest() -> None:
    token_id, token, hashed = feedtokens.new_token()
    assert feedtokens.is_feed_token(token)
    assert token.startswith(f"mft_{token_id}_")
    secret = token.split("_", 2)[2]
    assert hashed == feedtokens.digest(secret)
    assert secret not in hashed
    assert feedtokens._TOKEN.match(token)
    assert feedtokens.new_token()[1] != token


def test_feeds_drop_what_xml_cannot_hold() -> None:
    docs = [event("c1", title="Bad\x1a title\x00")]
    root = ET.fromstring(
        feeds.atom(docs, "q\x07", f"{BASE}/feeds/search.atom?category=Z\x1a", BASE)
    )
    assert root.findtext(f"{ATOM}title") == "q"
    assert [e.findtext(f"{ATOM}title") for e in root.findall(f"{ATOM}entry")] == ["Bad title"]
    assert ET.fromstring(feeds.rss(docs, "q", f"{BASE}/x.rss", BASE)).find("channel") is not None
