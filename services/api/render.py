"""Responses built from pre-rendered JSON (no model validation on the hot paths)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from services.api.imports import Links
from services.api.index import Page
from services.api.params import encode_cursor
from services.api.readmodel import ReadModel


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


def search_body(model: ReadModel, page: Page, links: Links, *, sort: str, dedupe: bool) -> bytes:
    """``{events, imported_events, total_count, next_cursor}`` (the seed's shape, plus a cursor)."""
    table = model.externals
    imported: list[dict[str, Any]] = []
    if dedupe:
        parts = []
        for slot in page.slots:
            key = table.keys[slot]
            group = model.external_group(key)
            canonical_slot = model.canonicals.slot(group) if group else None
            parts.append(
                model.canonical_body(canonical_slot)
                if canonical_slot is not None
                else model.external_body(slot)
            )
            local = model.local_event_of(key, group)
            if local:
                imported.append(_ref(group or key, None, None, local, links))
    else:
        parts = []
        for slot in page.slots:
            key = table.keys[slot]
            parts.append(model.external_body(slot))
            local = model.local_event_of(key, model.external_group(key))
            if local:
                source, _, external_id = key.partition(":")
                imported.append(_ref(key, source, external_id, local, links))
    cursor = encode_cursor(sort, page.next_after, dedupe) if page.next_after else None
    return b"".join(
        (
            b'{"events":[',
            b",".join(parts),
            b'],"imported_events":',
            dumps(imported),
            b',"total_count":',
            str(page.total).encode(),
            b',"next_cursor":',
            dumps(cursor),
            b"}",
        )
    )


def _ref(
    key: str, source: str | None, external_id: str | None, local: str, links: Links
) -> dict[str, Any]:
    return {
        "id": key,
        "source": source,
        "external_id": external_id,
        "local_event_id": local,
        "local_event_url": links.local_event(local),
    }


def events_body(model: ReadModel, page: Page, *, sort: str) -> bytes:
    parts = [model.canonical_body(slot) for slot in page.slots]
    cursor = encode_cursor(sort, page.next_after, False) if page.next_after else None
    return b"".join(
        (
            b'{"events":[',
            b",".join(parts),
            b'],"total_count":',
            str(page.total).encode(),
            b',"next_cursor":',
            dumps(cursor),
            b"}",
        )
    )
