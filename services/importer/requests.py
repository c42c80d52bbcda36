"""Kafka bytes to import requests: single or bulk, and a rejection for whatever is unreadable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from services.importer.ids import invalid_request_id
from shared.contracts import BulkImportRequest, FieldError, ImportRequest
from shared.contracts.messages import MAX_BULK_ITEMS


@dataclass(frozen=True, slots=True)
class Invalid:
    """A request that cannot be read: it still gets a rejected result, under this id."""

    request_id: str
    errors: list[FieldError]
    requested_by: str | None = None
    key: str | None = field(default=None)
    correlation_id: str | None = None


Parsed = ImportRequest | Invalid


def field_errors(err: ValidationError) -> list[FieldError]:
    """Pydantic's errors as the contract's field-level details."""
    return [
        FieldError(
            field=".".join(str(p) for p in e["loc"]) or None,
            message=e["msg"],
            code=e["type"],
        )
        for e in err.errors(include_url=False)
    ]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse(value: bytes | None) -> list[Parsed]:
    """One message to the requests it carries: one, or one per item of a bulk request."""
    raw = value or b""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        return [Invalid(invalid_request_id(raw), [_error(None, f"not JSON: {err}", "json")])]
    if not isinstance(data, dict):
        return [Invalid(invalid_request_id(raw), [_error(None, "not a JSON object", "json")])]
    if "items" in data:
        return _bulk(data, raw)
    try:
        return [ImportRequest.model_validate(data)]
    except ValidationError as err:
        return [
            Invalid(
                _text(data.get("request_id")) or invalid_request_id(raw),
                field_errors(err),
                _text(data.get("requested_by")),
                correlation_id=_correlation(data),
            )
        ]


def _bulk(data: dict[str, Any], raw: bytes) -> list[Parsed]:
    """Each item is judged on its own: one bad item does not sink the other 999."""
    bulk_id = _text(data.get("request_id")) or invalid_request_id(raw)
    requested_by = _text(data.get("requested_by"))
    correlation = _correlation(data)
    items = data.get("items")
    if not isinstance(items, list) or not items or len(items) > MAX_BULK_ITEMS:
        message = f"items must be a list of 1 to {MAX_BULK_ITEMS} events"
        return [
            Invalid(bulk_id, [_error("items", message, "bulk")], requested_by, None, correlation)
        ]
    shared = {
        k: data[k]
        for k in ("requested_by", "options", "requested_at", "correlation_id")
        if k in data
    }
    out: list[Parsed] = []
    for index, item in enumerate(items):
        given = _text(item.get("request_id")) if isinstance(item, dict) else None
        request_id = given or BulkImportRequest.item_request_id(bulk_id, index)
        if not isinstance(item, dict):
            error = _error(f"items.{index}", "not an object", "bulk")
            out.append(Invalid(request_id, [error], requested_by, None, correlation))
            continue
        fields = {k: item.get(k) for k in ("provider", "external_id", "canonical_id")}
        try:
            out.append(ImportRequest.model_validate({**shared, **fields, "request_id": request_id}))
        except ValidationError as err:
            out.append(Invalid(request_id, field_errors(err), requested_by, None, correlation))
    return out


def _correlation(data: dict[str, Any]) -> str | None:
    """The caller's correlation id, if it is one we can carry (an unreadable one is dropped)."""
    value = _text(data.get("correlation_id"))
    return value if value is not None and len(value) <= 128 else None


def _error(name: str | None, message: str, code: str) -> FieldError:
    return FieldError(field=name, message=message, code=code)
