"""Responses rendered straight from stored documents with orjson (no model validation on reads)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi.responses import Response

from services.api.catalogue import Page
from services.api.imports import Links
from services.api.params import encode_cursor
from shared.contracts import EventStatus
from shared.mongo import Document

# One way to write an instant everywhere: UTC with ``Z`` (what pydantic writes too).
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=_OPTIONS)


def iso(value: Any) -> Any:
    """A datetime as the API writes it (``2026-05-01T19:30:00Z``); anything else unchanged."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def public(doc: Document, distance: float | None = None) -> dict[str, Any]:
    """A stored event as served: ``id`` first, the import flags always present."""
    out: dict[str, Any] = {"id": str(doc["_id"])}
    out.update((k, v) for k, v in doc.items() if k != "_id")
    out.setdefault("is_imported", False)
    out.setdefault("imported_event", None)
    if distance is not None:
        out["distance_km"] = distance
    return out


def _ref(doc: Document, links: Links) -> dict[str, Any]:
    local = str(doc["imported_event"])
    return {
        "id": str(doc["_id"]),
        "source": doc.get("source"),
        "external_id": doc.get("external_id"),
        "local_event_id": local,
        "local_event_url": links.local_event(local),
    }


def _cursor(page: Page) -> str | None:
    return encode_cursor(page.next_after) if page.next_after else None


def search_body(page: Page, links: Links) -> bytes:
    """``{events, imported_events, total_count, total_exact, next_cursor}``: per-source records
    (one per canonical event with ``dedupe``), in one shape either way."""
    events = [public(d, page.distances.get(str(d["_id"]))) for d in page.docs]
    imported = [
        _ref(d, links) for d in page.docs if d.get("is_imported") and d.get("imported_event")
    ]
    return dumps(
        {
            "events": events,
            "imported_events": imported,
            "total_count": page.total,
            "total_exact": page.total_exact,
            "next_cursor": _cursor(page),
        }
    )


def events_body(page: Page) -> bytes:
    events = [public(d, page.distances.get(str(d["_id"]))) for d in page.docs]
    return dumps(
        {
            "events": events,
            "total_count": page.total,
            "total_exact": page.total_exact,
            "next_cursor": _cursor(page),
        }
    )


def _op(event: Document) -> str:
    if event.get("duplicate_of"):
        return "merged"
    if event.get("status") == EventStatus.CANCELLED.value:
        return "cancelled"
    return "created" if int(event.get("version") or 1) == 1 else "updated"


def change_item(doc: Document) -> dict[str, Any]:
    """One change as the feed (and the stream, services/api/stream.py) serves it."""
    event = public(doc)
    return {
        "op": _op(doc),
        "canonical_id": event["id"],
        "version": event.get("version", 1),
        "modified": event.get("updated_at"),
        "merged_into": event.get("duplicate_of"),
        "event": event,
    }
