"""CloudEvents binary-mode headers for Kafka records (``ce_*`` headers, JSON body)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.contracts.base import Contract, utc_now
from shared.contracts.messages import new_id

SPEC_VERSION = "1.0"
Headers = list[tuple[str, bytes]]


def ce_headers(
    contract: type[Contract] | Contract,
    source: str,
    *,
    event_id: str | None = None,
    time: datetime | None = None,
    extra: dict[str, str] | None = None,
) -> Headers:
    """Headers for one record; ``source`` names the producing service, e.g. ``/ingestor``."""
    model = contract if isinstance(contract, type) else type(contract)
    moment = (time or utc_now()).isoformat()
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", (event_id or new_id()).encode()),
        ("ce_type", model.type_name().encode()),
        ("ce_source", source.encode()),
        ("ce_time", moment.encode()),
        ("content-type", b"application/json"),
    ]
    headers += [(k, v.encode()) for k, v in (extra or {}).items()]
    return headers


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    type: str
    source: str
    time: datetime
    specversion: str
    extra: dict[str, str]


def parse_ce_headers(headers: Headers | tuple[tuple[str, bytes], ...]) -> Envelope:
    """Read the envelope back; raises ``ValueError`` naming a missing or bad header."""
    found = {k: v.decode() for k, v in headers}
    missing = [
        k for k in ("ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion") if k not in found
    ]
    if missing:
        raise ValueError(f"missing CloudEvents headers: {', '.join(missing)}")
    moment = datetime.fromisoformat(found["ce_time"])
    if moment.tzinfo is None:
        raise ValueError("ce_time has no offset")
    known = {"ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "content-type"}
    return Envelope(
        id=found["ce_id"],
        type=found["ce_type"],
        source=found["ce_source"],
        time=moment,
        specversion=found["ce_specversion"],
        extra={k: v for k, v in found.items() if k not in known},
    )
