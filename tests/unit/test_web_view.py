"""The web pages' pure helpers: form → listing parameters, prices, performers, links, JSON-LD."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from services.web import view


def test_form_becomes_listing_parameters() -> None:
    form = view.form_values(
        {"q": " jazz ", "source": "all", "lat": "36.1", "lon": "-86.7", "radius_km": "", "x": "1"}
    )
    assert form == {"q": "jazz", "source": "all", "lat": "36.1", "lon": "-86.7"}
    params, errors = view.listing_params(form, "123~c1")
    assert params == {"limit": "20", "near": "36.1,-86.7", "cursor": "123~c1"}
    assert errors == []
    assert view.listing_params({"lat": "1"}, None)[1] == ["lat"]
    assert view.listing_params({"radius_km": "5"}, None)[1] == ["lat"]
    assert view.page_link({"q": "a b"}, "9~x") == "/web/?q=a+b&cursor=9~x"


def test_prices_performers_and_links() -> None:
    docs: list[dict[str, Any]] = [
        {"price_range": {"min": 35, "max": 90, "currency": "USD"}},
        {"price_range": {"min": 29.5, "max": 120, "currency": "USD"}},
        {"price_range": {"min": 10, "max": None, "currency": "EUR"}},
        {"price_range": None},
    ]
    assert view.price_ranges(docs) == [
        {"currency": "EUR", "min": 10, "max": 10},
        {"currency": "USD", "min": 29.5, "max": 120},
    ]
    assert view.price_text({"min": 29.5, "max": 120, "currency": "USD"}) == "USD 29.50\u2013120.00"
    assert view.price_text({"min": 15, "max": 15, "currency": "USD"}) == "USD 15.00"
    event = {"performers": [{"name": "Band", "genres": ["rock"]}]}
    records = [{"performers": [{"name": "band", "genres": ["indie", "rock"], "spotify_id": "s"}]}]
    assert view.performers(event, records) == [
        {"name": "Band", "genres": ["rock", "indie"], "spotify_id": "s", "popularity": None}
    ]
    assert view.safe_url("javascript:alert(1)") is None
    assert view.safe_url("https://t.example/x") == "https://t.example/x"
    assert view.safe_next("//evil.example/") == "/web/"
    assert view.safe_next("https://evil.example/web/") == "/web/"
    assert view.safe_next("/web/imports") == "/web/imports"


def test_json_ld_is_a_schema_org_event_safe_in_a_script() -> None:
    start = datetime(2026, 5, 1, 23, 30, tzinfo=UTC)
    event = {
        "title": "</script><b>Giants & co",
        "status": "EventCancelled",
        "start": {"utc": start, "local": "2026-05-01T18:30:00", "timezone": "America/Chicago"},
        "venue": {"name": "Arena", "city": "Nashville", "country": "US", "lat": 36.1, "lon": -86.7},
        "performers": [{"name": "Giants", "genres": ["rock"]}],
    }
    records = [
        {
            "source": "ticketmaster",
            "ticket_url": "https://t.example/1",
            "price_range": {"min": 20, "max": 40, "currency": "USD"},
        }
    ]
    ld = view.json_ld(event, records, "http://h/web/events/c1")
    assert ld["@type"] == "Event"
    assert ld["startDate"] == "2026-05-01T23:30:00Z"
    assert ld["eventStatus"] == "https://schema.org/EventCancelled"
    assert ld["location"]["geo"] == {
        "@type": "GeoCoordinates",
        "latitude": 36.1,
        "longitude": -86.7,
    }
    assert ld["performer"] == [{"@type": "PerformingGroup", "name": "Giants", "genre": ["rock"]}]
    assert ld["offers"]["lowPrice"] == 20
    assert ld["offers"]["url"] == "https://t.example/1"
    text = view.script_json(ld)
    assert "<" not in text
    assert "&" not in text
    assert json.loads(text)["name"] == event["title"]
    assert view.when_text(event["start"]) == "Fri 01 May 2026, 18:30 (America/Chicago)"
    assert view.status_name("EventCancelled") == "cancelled"
