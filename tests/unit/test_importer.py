"""Importer rules with fakes: parsing, resolution, validation, mapping, ids, waves, metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest
from pymongo.errors import ConnectionFailure

from services.importer.failpoints import failpoint, no_failpoint
from services.importer.ids import invalid_request_id, local_event_id, notification_id
from services.importer.main import apply_changes
from services.importer.metrics import ImporterMetrics, Window
from services.importer.pipeline import _waves
from services.importer.requests import Invalid, parse
from services.importer.rules import (
    START_IN_PAST,
    VALIDATION_ERROR,
    Target,
    Unusable,
    local_event,
    location,
    rejection_message,
    resolve,
    survivor,
    validate,
)
from services.importer.updates import UpdateOutcome, Updater, diff
from shared.contracts import (
    BulkImportRequest,
    CanonicalChange,
    CanonicalEvent,
    ChangeOp,
    EventStatus,
    ExternalEvent,
    ImportItem,
    ImportRequest,
    Provider,
    SourceRef,
    Venue,
    When,
)
from shared.contracts.messages import MAX_BULK_ITEMS
from shared.metrics import ServiceMetrics
from shared.search import ADDON, ADDON_REFUSED

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=10)


def ext(**update: Any) -> ExternalEvent:
    base = ExternalEvent(
        source=Provider.TICKETMASTER,
        external_id="G1",
        title="Show",
        description="A show",
        start=When(utc=LATER, local="2026-06-11T13:00:00", timezone="Europe/London"),
        end=When(utc=LATER + timedelta(hours=3)),
        venue=Venue(name="Hall", address="1 Road", city="London", country="GB"),
        content_hash="h",
        canonical_id="ev_1",
    )
    return base.model_copy(update=update)


def doc(event: ExternalEvent) -> dict[str, Any]:
    out = event.to_document()
    out["_id"] = f"{event.source.value}:{event.external_id}"
    return out


def canon(cid: str = "ev_1", **update: Any) -> dict[str, Any]:
    event = CanonicalEvent(
        id=cid,
        sources=[
            SourceRef(source=Provider.SEATGEEK, external_id="9"),
            SourceRef(source=Provider.TICKETMASTER, external_id="G1"),
        ],
        title="Show (canonical)",
        start=When(utc=LATER),
        version=4,
    )
    return {**event.to_document(), **update}


def req(**fields: Any) -> ImportRequest:
    return ImportRequest(requested_by="org", **fields)


# Parsing -------------------------------------------------------------------------------------


def test_unreadable_bytes_get_a_stable_id_and_a_json_error() -> None:
    [a] = parse(b"\xff\xfe")
    [b] = parse(b"\xff\xfe")
    assert isinstance(a, Invalid)
    assert a.request_id == b.request_id == invalid_request_id(b"\xff\xfe")
    assert a.errors[0].code == "json"
    [c] = parse(b"[1, 2]")
    assert isinstance(c, Invalid)
    assert c.errors[0].message == "not a JSON object"


def test_invalid_single_request_keeps_its_id_and_names_the_field() -> None:
    [item] = parse(b'{"request_id": "r1", "provider": "ticketmaster", "external_id": "1"}')
    assert isinstance(item, Invalid)
    assert item.request_id == "r1"
    assert [e.field for e in item.errors] == ["requested_by"]
    [item] = parse(b'{"request_id": "r2", "requested_by": "u"}')
    assert isinstance(item, Invalid)
    assert "either (provider, external_id) or canonical_id" in item.errors[0].message


def test_valid_single_request_round_trips() -> None:
    sent = req(provider=Provider.SEATGEEK, external_id="5")
    [got] = parse(sent.to_json_bytes())
    assert got == sent


def test_bulk_items_are_judged_one_by_one() -> None:
    bulk = {
        "request_id": "b1",
        "requested_by": "org",
        "options": {"force": True},
        "items": [
            {"canonical_id": "ev_1"},
            {"request_id": "mine", "provider": "seatgeek", "external_id": "2"},
            {"provider": "seatgeek"},
            42,
        ],
    }
    items = parse(orjson.dumps(bulk))
    assert [i.request_id for i in items] == ["b1.0", "mine", "b1.2", "b1.3"]
    first, second, third, fourth = items
    assert isinstance(first, ImportRequest)
    assert first.options.force
    assert isinstance(second, ImportRequest)
    assert second.key() == "seatgeek:2"
    assert isinstance(third, Invalid)
    assert isinstance(fourth, Invalid)
    assert fourth.errors[0].field == "items.3"


def test_correlation_id_is_carried_by_single_bulk_and_unreadable_requests() -> None:
    single = req(provider=Provider.SEATGEEK, external_id="5", correlation_id="trace-1")
    assert [i.correlation_id for i in parse(single.to_json_bytes())] == ["trace-1"]
    bulk = {"request_id": "b", "requested_by": "o", "correlation_id": "trace-2"}
    items = parse(orjson.dumps({**bulk, "items": [{"canonical_id": "a"}, {"provider": "x"}, 7]}))
    assert [i.correlation_id for i in items] == ["trace-2"] * 3
    broken = parse(orjson.dumps({"request_id": "r", "correlation_id": "trace-3"}))
    assert [i.correlation_id for i in broken] == ["trace-3"]
    # One too long to carry is refused by the contract, and dropped from the rejection.
    [too_long] = parse(
        orjson.dumps({**single.model_dump(mode="json"), "correlation_id": "x" * 129})
    )
    assert isinstance(too_long, Invalid)
    assert too_long.correlation_id is None
    assert too_long.errors[0].field == "correlation_id"


def test_bulk_contract_expands_to_the_same_ids_the_parser_gives() -> None:
    bulk = BulkImportRequest(
        requested_by="org", items=[ImportItem(canonical_id="a"), ImportItem(canonical_id="b")]
    )
    assert [r.request_id for r in bulk.expand()] == [
        i.request_id for i in parse(bulk.to_json_bytes())
    ]


@pytest.mark.parametrize("items", [[], "x", [{"canonical_id": "a"}] * (MAX_BULK_ITEMS + 1)])
def test_bulk_without_a_usable_item_list_is_one_rejection(items: Any) -> None:
    [item] = parse(orjson.dumps({"request_id": "b", "requested_by": "u", "items": items}))
    assert isinstance(item, Invalid)
    assert (item.request_id, item.errors[0].field) == ("b", "items")


# Resolution ----------------------------------------------------------------------------------


def test_resolve_by_source_claims_the_canonical_event_and_flags_all_its_sources() -> None:
    target = resolve(
        req(provider=Provider.TICKETMASTER, external_id="G1"),
        {"ticketmaster:G1": doc(ext(description=None))},
        {"ev_1": canon(description="Told by another provider")},
    )
    assert target is not None
    assert target.claim_id == "ev_1"
    assert (target.source, target.external_id) == (Provider.TICKETMASTER, "G1")
    assert target.canonical_version == 4
    # The organiser picked this provider's record; the local event gets the merged fields.
    assert (target.event.title, target.event.description) == (
        "Show (canonical)",
        "Told by another provider",
    )
    made = local_event(target, req(provider=Provider.TICKETMASTER, external_id="G1"), "le_1", NOW)
    assert made.description == "Told by another provider"
    assert set(target.external_keys) == {"ticketmaster:G1", "seatgeek:9"}
    assert target.canonical_keys == ("ev_1",)


def test_resolve_without_canonical_id_claims_the_provider_record() -> None:
    target = resolve(
        req(provider=Provider.TICKETMASTER, external_id="G1"),
        {"ticketmaster:G1": doc(ext(canonical_id=None))},
        {},
    )
    assert target is not None
    assert target.claim_id == "ticketmaster:G1"
    assert target.canonical_id is None


def test_resolve_by_canonical_follows_merges_to_the_survivor() -> None:
    canonicals = {"ev_old": canon("ev_old", duplicate_of="ev_1"), "ev_1": canon()}
    target = resolve(req(canonical_id="ev_old"), {}, canonicals)
    assert target is not None
    assert target.claim_id == "ev_1"
    assert (target.source, target.external_id) == (Provider.SEATGEEK, "9")  # first source
    assert target.canonical_keys == ("ev_old", "ev_1")
    assert (
        survivor("ev_x", {"ev_x": {"duplicate_of": "ev_y"}, "ev_y": {"duplicate_of": "ev_x"}})
        == "ev_y"
    )


def test_resolve_unknown_and_unreadable() -> None:
    assert resolve(req(canonical_id="nope"), {}, {}) is None
    assert resolve(req(provider=Provider.MEETUP, external_id="x"), {}, {}) is None
    broken = {"meetup:x": {"_id": "meetup:x", "source": "meetup", "external_id": "x"}}
    with pytest.raises(Unusable) as caught:
        resolve(req(provider=Provider.MEETUP, external_id="x"), broken, {})
    assert {e.field for e in caught.value.errors} >= {"title", "start", "content_hash"}


# Validation and mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({}, []),
        ({"start": When(utc=NOW - timedelta(minutes=1))}, [("start", "start_in_past")]),
        ({"start": When(utc=NOW)}, [("start", "start_in_past")]),
        ({"start": When(utc=None)}, [("start", "missing")]),
        ({"start": When(utc=LATER, date_tbd=True)}, [("start", "missing")]),
        ({"start": When(utc=LATER, time_tbd=True)}, [("start", "time_tbd")]),
        ({"status": EventStatus.CANCELLED}, [("status", "cancelled")]),
        ({"end": When(utc=LATER - timedelta(hours=1))}, [("end", "order")]),
        ({"title": "   "}, [("title", "missing")]),
    ],
)
def test_validate(update: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    errors = validate(ext(**update), NOW)
    assert [(e.field, e.code) for e in errors] == expected


def test_an_addon_is_never_imported_as_an_event() -> None:
    """The normalizer marks add-ons in the store; resolution reads the mark, validation
    refuses it, whichever way the request names the event."""
    stored = {**doc(ext(canonical_id=None)), ADDON: True}
    target = resolve(
        req(provider=Provider.TICKETMASTER, external_id="G1"), {"ticketmaster:G1": stored}, {}
    )
    assert target is not None
    assert target.addon
    by_canonical = resolve(req(canonical_id="ev_1"), {}, {"ev_1": {**canon(), ADDON: True}})
    assert by_canonical is not None
    assert by_canonical.addon
    errors = validate(target.event, NOW, addon=target.addon)
    assert [(e.code, e.message) for e in errors] == [("addon", ADDON_REFUSED)]
    assert validate(target.event, NOW) == []


def test_rejection_message_is_the_seeds() -> None:
    past = validate(ext(start=When(utc=NOW - timedelta(days=1))), NOW)
    assert rejection_message(past) == START_IN_PAST == "Start time must be in the future"
    both = validate(ext(start=When(utc=NOW - timedelta(days=1)), title=" "), NOW)
    assert rejection_message(both) == VALIDATION_ERROR


def test_location_line() -> None:
    assert location(Venue(city="Austin", state="TX", country="US"), False) == "Austin, TX, US"
    assert location(Venue(name="The Hall"), False) == "The Hall"
    assert location(None, True) == "Online"
    assert location(None, False) is None


def test_local_event_has_the_seeds_fields() -> None:
    event = ext()
    target = Target(
        "ev_1", Provider.TICKETMASTER, "G1", "ev_1", 4, event, ("ticketmaster:G1",), ("ev_1",)
    )
    local = local_event(target, req(canonical_id="ev_1"), "le_x", NOW)
    assert local.id == "le_x"
    assert (local.title, local.description, local.location) == ("Show", "A show", "London, GB")
    assert (local.start, local.end) == (LATER, LATER + timedelta(hours=3))
    assert (local.start_local, local.timezone) == ("2026-06-11T13:00:00", "Europe/London")
    assert (local.created_by, local.external_event_id, local.source) == (
        "org",
        "G1",
        Provider.TICKETMASTER,
    )
    assert (local.venue_name, local.venue_address, local.canonical_id) == ("Hall", "1 Road", "ev_1")
    assert local.to_document()["_id"] == "le_x"


# Ids, waves, failpoints, metrics -------------------------------------------------------------


def test_ids_are_deterministic_and_distinct() -> None:
    assert local_event_id("ev_1") == local_event_id("ev_1") != local_event_id("ev_2")
    assert local_event_id("ev_1").startswith("le_")
    assert notification_id("r", "event.imported") != notification_id("r", "event.updated")


def test_waves_keep_two_requests_for_one_event_apart() -> None:
    a, b, c, d = (req(canonical_id=x) for x in ("e1", "e1", "e2", "e1"))
    t = Target("e1", Provider.SEATGEEK, "1", "e1", 1, ext(), (), ())
    u = Target("e2", Provider.SEATGEEK, "2", "e2", 1, ext(), (), ())
    targets = {a.request_id: t, b.request_id: t, c.request_id: u, d.request_id: t}
    assert _waves([a, b, c, d], targets) == [[a, c], [b], [d]]


def test_failpoints() -> None:
    no_failpoint("after-claims")
    failpoint(None)("after-claims")
    failpoint("after-emit")("after-claims")  # another point: nothing happens
    with pytest.raises(ValueError, match="unknown failpoint"):
        failpoint("somewhere")


def test_window_rates() -> None:
    now = [100.0]
    window = Window(60.0, clock=lambda: now[0])
    assert window.rates() == (0.0, None)
    now[0] = 110.0
    window.add(imported=8, decided=10)
    assert window.rates() == (0.8, 0.8)  # 8 imports in the 10 s since start
    now[0] = 200.0
    window.add(0, 0)
    assert window.rates() == (0.0, None)  # the old batch fell out of the minute


def test_diff_only_time_zone_and_status() -> None:
    local = {
        "start": LATER,
        "end": None,
        "timezone": "Europe/London",
        "start_local": "x",
        "status": "EventScheduled",
        "title": "Mine",
    }
    event = CanonicalEvent.model_validate(canon(title="Other", status="EventPostponed"))
    changes = diff(local, event)
    assert set(changes) == {"status", "start_local"}
    assert changes["status"] == ("EventScheduled", "EventPostponed")


async def test_a_failing_canonical_change_is_skipped_and_the_rest_applied() -> None:
    seen: list[str] = []

    class Flaky:
        async def process(self, changes: list[CanonicalChange]) -> UpdateOutcome:
            if any(c.canonical_id == "bad" for c in changes):
                raise RuntimeError("a bug")
            if any(c.canonical_id == "down" for c in changes):
                raise ConnectionFailure("store away")
            seen.extend(c.canonical_id for c in changes)
            return UpdateOutcome()

    def change(cid: str) -> CanonicalChange:
        event = CanonicalEvent.model_validate(canon(cid))
        return CanonicalChange(op=ChangeOp.UPDATED, canonical_id=cid, version=2, event=event)

    metrics = ImporterMetrics(ServiceMetrics("importer_unit"))
    updater = cast(Updater, Flaky())
    await apply_changes(updater, [change("a"), change("bad"), change("b")], metrics)
    assert seen == ["a", "b"]
    assert metrics.updates.labels("failed")._value.get() == 1
    with pytest.raises(ConnectionFailure):  # transient: the loop waits it out and retries
        await apply_changes(updater, [change("down")], metrics)
