"""One hand-written payload per provider quirk (PROVIDERS.md) and per time rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingestor.providers.eventbrite import EXPAND as EVENTBRITE_EXPAND
from services.normalizer import mappers
from services.normalizer.mappers import MappingError, is_addon, map_artist, map_event
from services.normalizer.mappers._common import coordinates, parse_duration
from shared.contracts import EventStatus, ExternalEvent, PriceRange, Provider, RawRecord

FETCHED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def run(provider: Provider, payload: Any, external_id: str = "x1") -> ExternalEvent:
    record = RawRecord(
        provider=provider, external_id=external_id, payload=payload, fetched_at=FETCHED
    )
    return map_event(record)


def tm(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "vvG1abc",
        "name": "  Velvet Wolves  ",
        "url": "https://www.ticketmaster.com/event/vvG1abc",
        "dates": {
            "start": {
                "localDate": "2026-12-05",
                "localTime": "19:30:00",
                "dateTime": "2026-12-06T03:30:00Z",
            },
            "timezone": "America/Los_Angeles",
            "status": {"code": "onsale"},
        },
    }
    event.update(overrides)
    return event


def sg(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": 5100001,
        "title": "Boston Celtics at Los Angeles Lakers",
        "datetime_utc": "2026-12-06T03:30:00",
        "datetime_local": "2026-12-05T19:30:00",
        "time_tbd": False,
        "date_tbd": False,
        "datetime_tbd": False,
        "type": "nba",
        "taxonomies": [
            {"id": 1000000, "name": "sports", "parent_id": None},
            {"id": 1030100, "name": "nba", "parent_id": 1000000},
        ],
        "venue": {"name": "Crypto.com Arena", "timezone": "America/Los_Angeles", "city": "LA"},
        "stats": {"lowest_price": 45, "highest_price": 900, "listing_count": 12},
        "performers": [],
    }
    event.update(overrides)
    return event


def eb(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "123456789012",
        "name": {"text": "PyData Berlin", "html": "PyData Berlin"},
        "description": {"text": None, "html": "<P>Talks &amp; pizza<BR>and more</P>"},
        "start": {
            "timezone": "Europe/Berlin",
            "local": "2026-12-05T18:30:00",
            "utc": "2026-12-05T17:30:00Z",
        },
        "end": {
            "timezone": "Europe/Berlin",
            "local": "2026-12-05T21:30:00",
            "utc": "2026-12-05T20:30:00Z",
        },
        "status": "live",
        "changed": "2026-11-20T10:00:00Z",
        "category_id": "102",
        "subcategory_id": None,
        "format_id": "9",
        "is_free": False,
        "currency": "EUR",
    }
    event.update(overrides)
    return event


def mu(**overrides: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": "301234567",
        "token": "abcdefghijklm",
        "title": "Rust Berlin: Hack Night #12",
        "eventUrl": "https://www.meetup.com/rust-berlin/events/301234567/",
        "status": "ACTIVE",
        "dateTime": "2026-12-05T19:00:00+01:00",
        "duration": "PT2H30M",
        "eventType": "PHYSICAL",
        "venues": [
            {
                "name": "c-base",
                "address": "Rungestrasse 20",
                "city": "Berlin",
                "state": "",
                "postalCode": "10179",
                "country": "de",
                "lat": 52.5129,
                "lon": 13.4201,
                "venueType": "",
            }
        ],
        "feeSettings": None,
    }
    node.update(overrides)
    return node


# ---------------- status ----------------
@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("canceled", EventStatus.CANCELLED),
        ("cancelled", EventStatus.CANCELLED),
        ("postponed", EventStatus.POSTPONED),
        ("rescheduled", EventStatus.RESCHEDULED),
        ("offsale", EventStatus.SCHEDULED),
        ("onsale", EventStatus.SCHEDULED),
    ],
)
def test_ticketmaster_status_codes(code: str, status: EventStatus) -> None:
    payload = tm()
    payload["dates"]["status"] = {"code": code}
    assert run(Provider.TICKETMASTER, payload).status is status


def test_ticketmaster_empty_status_object_is_scheduled() -> None:
    payload = tm()
    payload["dates"]["status"] = {}
    assert run(Provider.TICKETMASTER, payload).status is EventStatus.SCHEDULED


@pytest.mark.parametrize("status", ["live", "completed", "started"])
def test_eventbrite_sales_status_cancellation_wins(status: str) -> None:
    payload = eb(status=status, event_sales_status={"message_code": "event_cancelled"})
    assert run(Provider.EVENTBRITE, payload).status is EventStatus.CANCELLED


def test_eventbrite_canceled_status() -> None:
    assert run(Provider.EVENTBRITE, eb(status="canceled")).status is EventStatus.CANCELLED
    assert run(Provider.EVENTBRITE, eb(status="live")).status is EventStatus.SCHEDULED


@pytest.mark.parametrize("status", ["CANCELLED", "CANCELLED_PERM"])
def test_meetup_cancelled(status: str) -> None:
    assert run(Provider.MEETUP, mu(status=status)).status is EventStatus.CANCELLED


def test_meetup_online_event() -> None:
    event = run(Provider.MEETUP, mu(eventType="ONLINE"))
    assert event.online
    assert event.venue is None


# ---------------- coordinates ----------------
@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        ("34.0430", "-118.2673", (34.043, -118.2673)),
        (34.043, -118.2673, (34.043, -118.2673)),
        ("0", "0", (None, None)),
        (0.0, 0.0, (None, None)),
        ("abc", "-118", (None, None)),
        ("", "", (None, None)),
        (None, None, (None, None)),
        ("91", "10", (None, None)),
        ("10", "-181", (None, None)),
        ("nan", "10", (None, None)),
        (-8.521147, 179.1962, (None, None)),  # Meetup's online placeholder
        (True, False, (None, None)),
    ],
)
def test_coordinates(lat: Any, lon: Any, expected: tuple[float | None, float | None]) -> None:
    assert coordinates(lat, lon) == expected


def test_ticketmaster_string_coordinates_become_floats() -> None:
    venue = {
        "name": "Crypto.com Arena",
        "city": {"name": "Los Angeles"},
        "country": {"countryCode": "us"},
        "location": {"latitude": "34.04300000", "longitude": "-118.26730000"},
    }
    event = run(Provider.TICKETMASTER, tm(_embedded={"venues": [venue]}))
    assert event.venue is not None
    assert (event.venue.lat, event.venue.lon) == (34.043, -118.2673)
    assert event.venue.country == "US"
    assert event.venue_city == "Los Angeles"


def test_junk_coordinates_are_dropped_not_fatal() -> None:
    payload = mu()
    payload["venues"][0].update(lat="junk", lon=500)
    event = run(Provider.MEETUP, payload)
    assert event.venue is not None
    assert event.venue.lat is None
    assert event.venue.lon is None


# ---------------- times ----------------
def test_seatgeek_utc_without_z_is_utc() -> None:
    event = run(Provider.SEATGEEK, sg())
    assert event.start.utc == datetime(2026, 12, 6, 3, 30, tzinfo=UTC)
    assert event.start.local == "2026-12-05T19:30:00"
    assert event.start.timezone == "America/Los_Angeles"


def test_seatgeek_utc_without_zone_still_utc() -> None:
    payload = sg(venue={"name": "Somewhere"})
    event = run(Provider.SEATGEEK, payload)
    assert event.start.utc == datetime(2026, 12, 6, 3, 30, tzinfo=UTC)
    assert event.start.timezone is None
    assert event.start.local == "2026-12-05T19:30:00"


def test_seatgeek_tbd_placeholder_time_is_dropped() -> None:
    payload = sg(
        time_tbd=True, datetime_local="2026-12-05T03:30:00", datetime_utc="2026-12-05T11:30:00"
    )
    event = run(Provider.SEATGEEK, payload)
    assert event.start.time_tbd
    assert not event.start.date_tbd
    assert event.start.utc is None
    assert event.start.local == "2026-12-05"
    # Start of the local day (PST, UTC-8) for range queries.
    assert event.start_utc == datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def test_seatgeek_datetime_tbd_marks_the_date_too() -> None:
    payload = sg(date_tbd=True, datetime_tbd=True, datetime_local="2026-12-05T03:30:00")
    event = run(Provider.SEATGEEK, payload)
    assert event.start.time_tbd
    assert event.start.date_tbd
    assert event.start.local == "2026-12-05"


def test_ticketmaster_only_local_and_zone_computes_utc() -> None:
    payload = tm()
    del payload["dates"]["start"]["dateTime"]
    event = run(Provider.TICKETMASTER, payload)
    assert event.start.utc == datetime(2026, 12, 6, 3, 30, tzinfo=UTC)
    assert event.start_utc == event.start.utc


def test_ticketmaster_only_utc_and_zone_computes_local() -> None:
    payload = tm()
    start = payload["dates"]["start"]
    del start["localDate"], start["localTime"]
    event = run(Provider.TICKETMASTER, payload)
    assert event.start.local == "2026-12-05T19:30:00"


def test_ticketmaster_zone_from_venue_when_dates_have_none() -> None:
    payload = tm(_embedded={"venues": [{"name": "Arena", "timezone": "Europe/London"}]})
    del payload["dates"]["timezone"], payload["dates"]["start"]["dateTime"]
    event = run(Provider.TICKETMASTER, payload)
    assert event.start.timezone == "Europe/London"
    assert event.start.utc == datetime(2026, 12, 5, 19, 30, tzinfo=UTC)


def test_ticketmaster_no_zone_no_utc_keeps_local_only() -> None:
    payload = tm()
    del payload["dates"]["timezone"], payload["dates"]["start"]["dateTime"]
    event = run(Provider.TICKETMASTER, payload)
    assert event.start.local == "2026-12-05T19:30:00"
    assert event.start.utc is None
    assert event.start_utc is None
    assert event.start.timezone is None


def test_ticketmaster_time_tba() -> None:
    payload = tm()
    payload["dates"]["start"] = {"localDate": "2026-07-04", "timeTBA": True, "noSpecificTime": True}
    event = run(Provider.TICKETMASTER, payload)
    assert event.start.time_tbd
    assert event.start.local == "2026-07-04"
    assert event.start.utc is None
    # PDT (UTC-7) in July.
    assert event.start_utc == datetime(2026, 7, 4, 7, 0, tzinfo=UTC)


def test_ticketmaster_date_tbd_flag() -> None:
    payload = tm()
    payload["dates"]["start"] = {"localDate": "2026-07-04", "dateTBD": True}
    event = run(Provider.TICKETMASTER, payload)
    assert event.start.date_tbd
    assert event.start.time_tbd


def test_ticketmaster_without_any_date_is_a_mapping_error() -> None:
    payload = tm()
    payload["dates"]["start"] = {"dateTBA": True}
    with pytest.raises(MappingError, match=r"dates\.start"):
        run(Provider.TICKETMASTER, payload)


def test_ticketmaster_missing_embedded() -> None:
    event = run(Provider.TICKETMASTER, tm())
    assert event.venue is None
    assert event.performers == []
    assert event.venue_city is None
    assert event.title == "Velvet Wolves"


def test_ticketmaster_attraction_spotify_id() -> None:
    attraction = {
        "id": "K8vZ9abc",
        "name": "Velvet Wolves",
        "externalLinks": {
            "spotify": [{"url": "https://open.spotify.com/artist/0OdUWJ0sBjDrqHygGUXeCF"}]
        },
        "classifications": [{"genre": {"name": "Rock"}, "subGenre": {"name": "Undefined"}}],
    }
    event = run(Provider.TICKETMASTER, tm(_embedded={"attractions": [attraction]}))
    assert event.performers[0].spotify_id == "0OdUWJ0sBjDrqHygGUXeCF"
    assert event.performers[0].genres == ["Rock"]


def test_meetup_duration_gives_the_end() -> None:
    event = run(Provider.MEETUP, mu())
    assert event.start.utc == datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
    assert event.start.local == "2026-12-05T19:00:00"
    assert event.start.timezone is None
    assert event.end is not None
    assert event.end.utc == datetime(2026, 12, 5, 20, 30, tzinfo=UTC)
    assert event.end.local == "2026-12-05T21:30:00"


def test_meetup_end_time_wins_over_duration() -> None:
    event = run(Provider.MEETUP, mu(endTime="2026-12-05T20:00:00+01:00"))
    assert event.end is not None
    assert event.end.utc == datetime(2026, 12, 5, 19, 0, tzinfo=UTC)


def test_meetup_zone_from_group() -> None:
    event = run(Provider.MEETUP, mu(group={"urlname": "rust-berlin", "timezone": "Europe/Berlin"}))
    assert event.start.timezone == "Europe/Berlin"
    assert event.start.local == "2026-12-05T19:00:00"


def test_meetup_without_offset_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="dateTime"):
        run(Provider.MEETUP, mu(dateTime="2026-12-05T19:00:00"))


@pytest.mark.parametrize(
    ("raw", "minutes"),
    [("PT2H", 120), ("PT2H30M", 150), ("PT30H", 1800), ("P1DT1H", 1500), ("PT45M", 45)],
)
def test_parse_duration(raw: str, minutes: int) -> None:
    duration = parse_duration(raw)
    assert duration is not None
    assert duration.total_seconds() == minutes * 60


@pytest.mark.parametrize("raw", ["", "P", "PT", "2 hours", None])
def test_parse_duration_junk(raw: str | None) -> None:
    assert parse_duration(raw) is None


def test_eventbrite_times_and_changed() -> None:
    event = run(Provider.EVENTBRITE, eb())
    assert event.start.utc == datetime(2026, 12, 5, 17, 30, tzinfo=UTC)
    assert event.start.local == "2026-12-05T18:30:00"
    assert event.start.timezone == "Europe/Berlin"
    assert event.source_updated_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert event.last_synced == FETCHED
    assert event.description == "Talks & pizza\nand more"


# ---------------- prices ----------------
def test_seatgeek_price_nulls_without_listings() -> None:
    stats = {"listing_count": 0, "lowest_price": None, "highest_price": None}
    assert run(Provider.SEATGEEK, sg(stats=stats)).price_range is None
    priced = run(Provider.SEATGEEK, sg()).price_range
    assert priced is not None
    assert (priced.min, priced.max, priced.currency) == (45, 900, "USD")


def test_ticketmaster_price_ranges() -> None:
    ranges = [
        {"type": "standard", "currency": "usd", "min": 30.5, "max": 80},
        {"type": "resale", "currency": "USD", "min": 25, "max": 120},
    ]
    price = run(Provider.TICKETMASTER, tm(priceRanges=ranges)).price_range
    assert price is not None
    assert (price.min, price.max, price.currency) == (25, 120, "USD")
    assert run(Provider.TICKETMASTER, tm()).price_range is None


def test_eventbrite_ticket_prices() -> None:
    tickets = {
        "minimum_ticket_price": {"currency": "EUR", "major_value": "10.00", "value": 1000},
        "maximum_ticket_price": {"currency": "EUR", "major_value": "25.50", "value": 2550},
    }
    price = run(Provider.EVENTBRITE, eb(ticket_availability=tickets)).price_range
    assert price is not None
    assert (price.min, price.max, price.currency) == (10, 25.5, "EUR")
    free = run(Provider.EVENTBRITE, eb(is_free=True)).price_range
    assert free is not None
    assert (free.min, free.max) == (0, 0)


def test_meetup_fee_settings() -> None:
    fee = {"amount": 5, "currency": "EUR", "accepts": "CARDS", "required": True}
    price = run(Provider.MEETUP, mu(feeSettings=fee)).price_range
    assert price is not None
    assert (price.min, price.max, price.currency) == (5, 5, "EUR")
    assert run(Provider.MEETUP, mu()).price_range is None


# ---------------- errors and dispatch ----------------
def test_blank_title_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="title: missing or blank"):
        run(Provider.SEATGEEK, sg(title="   ", short_title=None))


def test_tombstone_and_spotify_records_are_refused() -> None:
    tombstone = RawRecord(provider=Provider.SEATGEEK, external_id="1", tombstone=True)
    with pytest.raises(MappingError, match="tombstone"):
        map_event(tombstone)
    with pytest.raises(MappingError, match="not an event source"):
        run(Provider.SPOTIFY, {"id": "x", "name": "y"})
    with pytest.raises(MappingError, match="JSON object"):
        run(Provider.MEETUP, ["not", "an", "object"])


def test_mapping_error_is_a_value_error_with_field() -> None:
    error = MappingError("dates.start", "no localDate and no dateTime")
    assert isinstance(error, ValueError)
    assert error.field == "dates.start"
    assert str(error) == "dates.start: no localDate and no dateTime"


def test_content_hash_and_external_id_come_from_the_record() -> None:
    record = RawRecord(provider=Provider.TICKETMASTER, external_id="vvG1abc", payload=tm())
    event = map_event(record)
    assert event.content_hash == record.payload_hash
    assert event.external_id == "vvG1abc"


# ---------------- add-ons ----------------
@pytest.mark.parametrize(
    ("title", "addon"),
    [
        ("Parking: Los Angeles Lakers vs. Boston Celtics", True),
        ("Parking Passes Only - Boston Celtics at Los Angeles Lakers", True),
        ("Pre-game Pass: Los Angeles Lakers vs. Boston Celtics", True),
        ("Velvet Wolves - VIP Upgrade Package", True),
        ("VIP Package: Velvet Wolves", True),
        ("Los Angeles Lakers vs. Boston Celtics", False),
        ("Velvet Wolves - World Tour 2027", False),
        ("Park Jazz Festival", False),
    ],
)
def test_is_addon_by_title(title: str, addon: bool) -> None:
    assert is_addon(run(Provider.SEATGEEK, sg(title=title))) is addon


def test_is_addon_by_provider_hints() -> None:
    assert is_addon(run(Provider.SEATGEEK, sg(type="parking")))
    upsell = tm(
        classifications=[
            {"primary": True, "segment": {"name": "Sports"}, "type": {"name": "Upsell"}}
        ]
    )
    assert is_addon(run(Provider.TICKETMASTER, upsell))


# ---------------- spotify ----------------
def test_map_artist_minimal_and_errors() -> None:
    artist = map_artist({"id": "abc", "name": " Muse ", "popularity": 80})
    assert artist.name == "Muse"
    assert artist.genres == []
    assert artist.popularity == 80
    with pytest.raises(MappingError, match="id"):
        map_artist({"name": "Muse"})
    with pytest.raises(MappingError, match="name"):
        map_artist({"id": "abc", "name": ""})


def test_contract_violations_become_mapping_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(record: RawRecord) -> ExternalEvent:
        PriceRange(min=-1)  # a value that slipped past a mapper's own checks
        raise AssertionError("unreachable")

    monkeypatch.setitem(mappers._EVENT_MAPPERS, Provider.SEATGEEK, broken)
    with pytest.raises(MappingError, match=r"^min: does not fit the contract"):
        run(Provider.SEATGEEK, sg())


def test_eventbrite_subcategory_named_from_the_expansion() -> None:
    """Outside music there is no table of subcategory names: the ingestor expands the
    subcategory, and its name is stored instead of a placeholder."""
    expanded = eb(
        category_id="101",
        subcategory_id="1001",
        subcategory={
            "id": "1001",
            "name": "Startups & Small Business",
            "parent_category_id": "101",
        },
    )
    names = {pc.level: pc.name for pc in run(Provider.EVENTBRITE, expanded).provider_categories}
    assert names["subcategory"] == "Startups & Small Business"
    bare = eb(category_id="101", subcategory_id="1001")
    names = {pc.level: pc.name for pc in run(Provider.EVENTBRITE, bare).provider_categories}
    assert names["subcategory"] == "subcategory 1001"
    assert "subcategory" in EVENTBRITE_EXPAND.split(",")
