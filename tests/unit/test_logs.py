"""JSON log lines carry the service, correlation id and extras, never secrets."""

from __future__ import annotations

import logging

import orjson

from shared.logs import JsonFormatter, correlation_id, scrub


def _format(msg: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "t", "levelname": "INFO", "msg": msg, "args": args, **extra}
    )
    parsed: dict[str, object] = orjson.loads(JsonFormatter("ingestor").format(record))
    return parsed


def test_json_line_with_extras_and_correlation() -> None:
    token = correlation_id.set("req-42")
    try:
        line = _format("fetched %d events", 3, provider="seatgeek")
    finally:
        correlation_id.reset(token)
    assert line["msg"] == "fetched 3 events"
    assert line["service"] == "ingestor"
    assert line["provider"] == "seatgeek"
    assert line["correlation_id"] == "req-42"
    assert str(line["ts"]).endswith("+00:00")


def test_secrets_scrubbed() -> None:
    text = (
        "GET https://app.ticketmaster.com/discovery/v2/events.json?apikey=ABC123&size=5 "
        "Authorization: Bearer eyJhbGciOi.xyz client_secret=s3cr3t mongodb://u:pw@host/"
    )
    clean = scrub(text)
    for secret in ("ABC123", "eyJhbGciOi", "s3cr3t", ":pw@"):
        assert secret not in clean
    assert "size=5" in clean
    assert "apikey=***" in clean
    assert _format("url %s", "x?apikey=ABC123")["msg"] == "url x?apikey=***"
