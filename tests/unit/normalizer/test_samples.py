"""The mappers against responses other people recorded from the real provider APIs."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from services.normalizer.mappers import MappingError, is_addon, map_artist, map_event
from shared.contracts import EventStatus, ExternalEvent, Provider, RawRecord

SAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "provider-samples"

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/provider-samples is absent")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def tm_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((SAMPLES / "ticketmaster").glob("*.json")):
        for interaction in _load(path):  # nock recordings: [{scope, path, status, response}]
            body = interaction["response"]
            if "dates" in body:
                out.append(body)
            out.extend(body.get("_embedded", {}).get("events", []))
    return out


def sg_events() -> list[dict[str, Any]]:
    return [e for p in sorted((SAMPLES / "seatgeek").glob("*.json")) for e in _load(p)["events"]]


def eb_events() -> list[dict[str, Any]]:
    paths = sorted((SAMPLES / "eventbrite").glob("*.json"))
    return [e for p in paths for e in _load(p).get("events", [])]


def mu_nodes() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((SAMPLES / "meetup").glob("*.json")):
        group = (_load(path).get("data") or {}).get("groupByUrlname")
        if group:
            out.extend(edge["node"] for edge in group["events"]["edges"])
    return out


def _map(provider: Provider, payload: dict[str, Any]) -> ExternalEvent:
    external_id = str(payload.get("token") or payload["id"])
    return map_event(RawRecord(provider=provider, external_id=external_id, payload=payload))


def _check_common(event: ExternalEvent) -> None:
    assert event.title == event.title.strip()
    assert event.title
    start = event.start
    if start.utc is not None:
        assert start.utc.tzinfo is not None
        assert start.utc.utcoffset() == UTC.utcoffset(None)
    assert start.local is not None
    if start.time_tbd:
        assert start.utc is None
        assert len(start.local) == 10
    else:
        assert len(start.local) == 19
        assert "+" not in start.local
        assert not start.local.endswith("Z")
    if event.start_utc is not None:
        assert event.start_utc.tzinfo is not None
    if event.venue is not None:
        for value in (event.venue.lat, event.venue.lon):
            assert value is None or isinstance(value, float)
        assert event.venue_city == event.venue.city
    assert event.content_hash
    assert event.last_synced.tzinfo is not None


def test_ticketmaster_samples_map() -> None:
    events = tm_events()
    assert len(events) == 26
    mapped = [_map(Provider.TICKETMASTER, e) for e in events]
    for event in mapped:
        _check_common(event)
        assert event.start.timezone is not None
        assert event.start_utc is not None
    by_id = {e.external_id: e for e in mapped}
    # No _embedded at all: no venue, no performers, still a valid event.
    osea = by_id["LvZ184j83k1A5TPn6ZZgc"]
    assert osea.venue is None
    assert osea.performers == []
    assert osea.description
    # The venue coordinates are strings in the payload and floats here.
    cruise = by_id["1Ae7ZfdGkSp307Y"]
    assert cruise.venue is not None
    assert cruise.venue.lat == pytest.approx(41.8786394)
    assert cruise.venue.lon == pytest.approx(-87.624808)
    # timeTBA: date only; the flat start_utc is local midnight (Chicago, CDT) in UTC.
    assert cruise.start.time_tbd
    assert cruise.start.utc is None
    assert cruise.start.local == "2016-05-20"
    assert cruise.start_utc is not None
    assert cruise.start_utc.isoformat() == "2016-05-20T05:00:00+00:00"
    assert cruise.price_range is not None
    assert cruise.price_range.min == pytest.approx(23.66)
    # status {} -> scheduled, rescheduled -> rescheduled.
    assert by_id["Z1lMVSyiJynZ177_Cp"].status is EventStatus.SCHEDULED
    assert by_id["G5dIZfeoHM32h"].status is EventStatus.RESCHEDULED
    baseball = by_id["G5dIZfeoHM32h"]
    assert [p.name for p in baseball.performers] == [
        "University of Houston Cougars Baseball",
        "Tulane University Baseball",
    ]
    assert (baseball.category, baseball.subcategory) == ("sports", "baseball")
    levels = {(pc.level, pc.name) for pc in baseball.provider_categories}
    assert {("segment", "Sports"), ("genre", "Baseball"), ("subgenre", "College")} <= levels
    # Local time computed nowhere: Ticketmaster sent both, they are kept as sent.
    assert baseball.start.local == "2016-05-20T14:00:00"
    assert baseball.start.utc is not None
    assert baseball.start.utc.hour == 19
    # A location of null: no coordinates, the rest of the venue is kept.
    cancun = by_id["1Av8Zf6GkUNPP3p"]
    assert cancun.venue is not None
    assert cancun.venue.lat is None
    assert cancun.venue.country == "MX"
    # The parking listing is an add-on; the event it serves is not.
    assert is_addon(by_id["1AeFZf6GkMLNyFG"])
    assert not is_addon(by_id["1AeFZfdGkmQBbAd"])
    # The end's localTime has no date: the end comes from its UTC and the zone.
    assert osea.end is not None
    assert osea.end.local == "2016-08-01T00:00:00"


def test_ticketmaster_404_body_is_a_clear_mapping_error() -> None:
    body = _load(SAMPLES / "ticketmaster" / "tm_sdkjs_event_find-404.json")[0]["response"]
    record = RawRecord(provider=Provider.TICKETMASTER, external_id="unknown-id", payload=body)
    with pytest.raises(MappingError, match="title"):
        map_event(record)


def test_seatgeek_samples_map() -> None:
    events = sg_events()
    assert events
    for raw in events:
        event = _map(Provider.SEATGEEK, raw)
        _check_common(event)
        # datetime_utc has no "Z" but is UTC: local wall clock + zone must give the same instant.
        assert event.start.utc is not None
        assert event.start.utc.strftime("%Y-%m-%dT%H:%M:%S") == raw["datetime_utc"]
        assert event.start.local == raw["datetime_local"]
        assert event.start.timezone == raw["venue"]["timezone"]
        assert (event.category, event.subcategory) == ("sports", "baseball")
        assert event.price_range is not None
        assert event.price_range.currency == "USD"
        assert event.venue is not None
        assert isinstance(event.venue.lat, float)
        assert len(event.performers) == 2


def test_eventbrite_samples_map() -> None:
    events = {e["id"]: _map(Provider.EVENTBRITE, e) for e in eb_events()}
    for event in events.values():
        _check_common(event)
        assert event.source_updated_at is not None
        assert event.end is not None
    # Reads "completed", but the sales status says event_cancelled: it is cancelled.
    cancelled = events["478619482757"]
    assert cancelled.status is EventStatus.CANCELLED
    assert (cancelled.category, cancelled.subcategory) == ("community", "business")
    live = events["39146789100"]
    assert live.status is EventStatus.SCHEDULED
    assert live.start.timezone == "America/New_York"
    assert live.start.local == "2018-03-10T08:30:00"
    assert (live.category, live.subcategory) == ("community", "tech")


def test_meetup_samples_map() -> None:
    nodes = mu_nodes()
    assert nodes
    events = {n["id"]: _map(Provider.MEETUP, n) for n in nodes}
    for event in events.values():
        _check_common(event)
        assert event.start.timezone is None  # no zone in these selections; UTC from the offset
        assert event.end is not None  # from duration: no endTime was selected
        assert (event.category, event.subcategory) == ("community", "meetup")
    satrday = events["264156061"]
    # 09:00+01:00 lasting PT7H.
    assert satrday.start.utc is not None
    assert satrday.start.utc.hour == 8
    assert satrday.start.local == "2019-09-21T09:00:00"
    assert satrday.end is not None
    assert satrday.end.local == "2019-09-21T16:00:00"
    # Junk venue values: trailing comma, lower-cased state, "meetup1" postal code, "ng".
    assert satrday.venue is not None
    assert satrday.venue.name == "Civil Engineering Building"
    assert satrday.venue.postal_code is None
    assert satrday.venue.country == "NG"
    # Online-only: the Pacific placeholder venue is not a venue.
    online = events["284322273"]
    assert online.online
    assert online.venue is None
    # Physical + online venues: the physical one is kept.
    hybrid = events["300356000"]
    assert not hybrid.online
    assert hybrid.venue is not None
    assert hybrid.venue.city == "Lagos"
    assert events["306824029"].status is EventStatus.CANCELLED


def test_spotify_samples_map() -> None:
    artist = map_artist(_load(SAMPLES / "spotify" / "swaj_GetArtistRequest.json"))
    assert artist.name == "Band of Horses"
    assert artist.spotify_id == artist.external_id == "0OdUWJ0sBjDrqHygGUXeCF"
    assert artist.genres == ["indie folk", "indie pop"]
    assert artist.popularity == 59
    search = _load(SAMPLES / "spotify" / "swaj_SearchArtistsRequest.json")
    performers = [map_artist(item) for item in search["artists"]["items"]]
    assert performers
    assert all(p.spotify_id for p in performers)
