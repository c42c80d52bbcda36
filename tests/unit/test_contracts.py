"""Contract rules: aware UTC datetimes, payload hashes, reference and consistency checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from services.api.schemas import CanonicalEventOut
from shared.cloudevents import ce_headers, parse_ce_headers
from shared.contracts import (
    CanonicalChange,
    CanonicalEvent,
    ChangeOp,
    ExternalEvent,
    ImportRequest,
    ImportResult,
    ImportStatus,
    Notification,
    Provider,
    RawRecord,
    SourceRef,
    When,
)


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        When(utc=datetime(2026, 5, 1, 19, 30))  # noqa: DTZ001 - the point of the test


def test_aware_datetime_normalised_to_utc() -> None:
    est = timezone(timedelta(hours=-5))
    when = When(utc=datetime(2026, 1, 10, 20, 0, tzinfo=est), timezone="America/New_York")
    assert when.utc == datetime(2026, 1, 11, 1, 0, tzinfo=UTC)
    assert when.utc is not None
    assert when.utc.utcoffset() == timedelta(0)


def test_raw_record_hash_ignores_key_order() -> None:
    a = RawRecord(provider=Provider.TICKETMASTER, external_id="1", payload={"a": 1, "b": [1, 2]})
    b = RawRecord(provider=Provider.TICKETMASTER, external_id="1", payload={"b": [1, 2], "a": 1})
    c = RawRecord(provider=Provider.TICKETMASTER, external_id="1", payload={"a": 2, "b": [1, 2]})
    assert a.payload_hash == b.payload_hash != c.payload_hash
    assert a.key() == "ticketmaster:1"


def test_raw_record_payload_rules() -> None:
    tomb = RawRecord(provider=Provider.SEATGEEK, external_id="9", tombstone=True)
    assert tomb.payload is None
    with pytest.raises(ValidationError, match="needs a payload"):
        RawRecord(provider=Provider.SEATGEEK, external_id="9")


def test_raw_record_round_trip_and_unknown_fields() -> None:
    record = RawRecord(provider=Provider.MEETUP, external_id="tok", payload={"title": "x"})
    data = record.to_json_bytes().replace(b"{", b'{"added_later":true,', 1)
    again = RawRecord.model_validate_json(data)
    assert again == record


def test_import_request_reference() -> None:
    by_source = ImportRequest(provider=Provider.SEATGEEK, external_id="5", requested_by="u1")
    assert by_source.key() == "seatgeek:5"
    assert ImportRequest(canonical_id="c1", requested_by="u1").key() == "c1"
    with pytest.raises(ValidationError, match="not both"):
        ImportRequest(
            provider=Provider.SEATGEEK, external_id="5", canonical_id="c1", requested_by="u1"
        )
    with pytest.raises(ValidationError, match="go together"):
        ImportRequest(provider=Provider.SEATGEEK, requested_by="u1")
    with pytest.raises(ValidationError, match="not both"):
        ImportRequest(requested_by="u1")


def test_import_result_consistency() -> None:
    with pytest.raises(ValidationError, match="local_event_id"):
        ImportResult(request_id="r", status=ImportStatus.IMPORTED)
    with pytest.raises(ValidationError, match="says why"):
        ImportResult(request_id="r", status=ImportStatus.REJECTED)
    ok = ImportResult(request_id="r", status="rejected", message="Event already imported")
    assert ok.status is ImportStatus.REJECTED


def _canonical() -> CanonicalEvent:
    return CanonicalEvent(
        id="c1",
        title="Show",
        start=When(utc=datetime(2026, 5, 1, 18, 0, tzinfo=UTC), timezone="Europe/London"),
        sources=[SourceRef(source=Provider.TICKETMASTER, external_id="t1")],
    )


def test_canonical_change_merge_rule() -> None:
    event = _canonical()
    CanonicalChange(op=ChangeOp.MERGED, canonical_id="c1", version=2, event=event, merged_into="c0")
    with pytest.raises(ValidationError, match="merged_into"):
        CanonicalChange(op=ChangeOp.MERGED, canonical_id="c1", version=2, event=event)
    with pytest.raises(ValidationError, match="merged_into"):
        CanonicalChange(
            op=ChangeOp.UPDATED, canonical_id="c1", version=2, event=event, merged_into="c0"
        )


def test_canonical_event_document_uses_mongo_id() -> None:
    doc = _canonical().to_document()
    assert doc["_id"] == "c1"
    assert "id" not in doc
    assert CanonicalEvent.model_validate(doc).id == "c1"


def test_canonical_event_v2_reads_a_v1_document_and_the_api_serves_its_start_conflicts() -> None:
    doc = _canonical().to_document()
    assert doc["start_conflicts"] == []
    del doc["start_conflicts"]  # stored before v2
    assert CanonicalEvent.model_validate(doc).start_conflicts == []
    flagged = {
        "source": "eventbrite",
        "external_id": "e1",
        "utc": "2026-05-01T17:30:00Z",
        "timezone": "America/New_York",
        "hours": -2,
    }
    event = CanonicalEvent.model_validate({**doc, "start_conflicts": [flagged]})
    assert event.start_conflicts[0].utc == datetime(2026, 5, 1, 17, 30, tzinfo=UTC)
    assert "start_conflicts" in CanonicalEventOut.model_json_schema()["properties"]


def test_external_event_validates_coordinates_and_currency() -> None:
    base = {
        "source": "seatgeek",
        "external_id": "1",
        "title": "T",
        "start": {"utc": "2026-05-01T18:00:00Z"},
        "content_hash": "h",
    }
    event = ExternalEvent.model_validate({**base, "price_range": {"min": 10, "currency": "usd"}})
    assert event.price_range is not None
    assert event.price_range.currency == "USD"
    with pytest.raises(ValidationError, match="lat"):
        ExternalEvent.model_validate({**base, "venue": {"lat": 123.0}})


def test_notification_type_format() -> None:
    assert Notification(user_id="u", type="event.imported").type == "event.imported"
    with pytest.raises(ValidationError):
        Notification(user_id="u", type="Imported")


def test_cloudevents_headers_round_trip() -> None:
    moment = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    headers = ce_headers(RawRecord, "/ingestor", event_id="abc", time=moment, extra={"x-a": "1"})
    envelope = parse_ce_headers(headers)
    assert (envelope.id, envelope.type, envelope.source) == (
        "abc",
        "marquee.raw_record.v1",
        "/ingestor",
    )
    assert envelope.time == moment
    assert envelope.extra == {"x-a": "1"}
    with pytest.raises(ValueError, match="ce_id"):
        parse_ce_headers([h for h in headers if h[0] != "ce_id"])
