"""The seed's import rules: which stored record a request names, what it must hold, the result."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from services.importer.requests import field_errors
from shared.contracts import (
    CanonicalEvent,
    EventStatus,
    ExternalEvent,
    FieldError,
    ImportRequest,
    LocalEvent,
    Provider,
    Venue,
)
from shared.contracts.documents import EventFields
from shared.search import ADDON, ADDON_REFUSED

Clock = Callable[[], datetime]
Document = dict[str, Any]

# The seed's messages, word for word: clients match on them.
NOT_FOUND = "Event not found"
ALREADY_IMPORTED = "Event already imported"
START_IN_PAST = "Start time must be in the future"
VALIDATION_ERROR = "Validation error"
IMPORTED = "Event imported successfully"
DISMISSED = "Event was deleted by its organiser; import it again with force to re-create it"

# Rejection reasons (ImportResult.errors[].code and the metric label).
R_NOT_FOUND = "not_found"
R_ALREADY_IMPORTED = "already_imported"
R_START_IN_PAST = "start_in_past"
R_DISMISSED = "dismissed"
R_INVALID_REQUEST = "invalid_request"
R_VALIDATION = "validation"
R_INTERNAL = "internal_error"
R_ADDON = ADDON


@dataclass(frozen=True, slots=True)
class Target:
    """The stored event a request names, and everything an import of it touches."""

    claim_id: str  # the canonical id, or "{provider}:{external_id}" without one
    source: Provider
    external_id: str
    canonical_id: str | None
    canonical_version: int | None
    event: EventFields  # the data the local event is made from
    external_keys: tuple[str, ...]  # external_events to mark imported
    canonical_keys: tuple[str, ...]  # events to mark imported
    addon: bool = False  # a parking pass, upgrade or pass: never imported as an event


class Unusable(Exception):
    """The stored record exists but cannot be read as an event."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def survivor(canonical_id: str, canonicals: Mapping[str, Document]) -> str:
    """Follow ``duplicate_of`` (merges) to the canonical event that lives on."""
    seen = {canonical_id}
    current = canonical_id
    while True:
        doc = canonicals.get(current)
        nxt = doc.get("duplicate_of") if doc else None
        if not nxt or nxt in seen:
            return current
        seen.add(nxt)
        current = str(nxt)


def resolve(
    request: ImportRequest, externals: Mapping[str, Document], canonicals: Mapping[str, Document]
) -> Target | None:
    """The target of a request, or None when the catalogue has no such event."""
    if request.canonical_id:
        return _by_canonical(request.canonical_id, canonicals)
    key = request.key()
    doc = externals.get(key)
    if doc is None:
        return None
    try:
        event = ExternalEvent.model_validate(doc)
    except ValidationError as err:
        raise Unusable(field_errors(err)) from err
    canonical_doc: Document | None = None
    canonical_keys: tuple[str, ...] = ()
    external_keys = [key]
    data: EventFields = event
    if event.canonical_id:
        alive = survivor(event.canonical_id, canonicals)
        canonical_doc = canonicals.get(alive)
        canonical_keys = tuple(dict.fromkeys([event.canonical_id, alive]))
        if canonical_doc is not None:
            external_keys += [f"{s['source']}:{s['external_id']}" for s in _sources(canonical_doc)]
            # The local event takes the catalogue's merged fields (one provider's record may
            # lack the description or the venue another has); it still names the record.
            try:
                data = CanonicalEvent.model_validate(canonical_doc)
            except ValidationError as err:
                raise Unusable(field_errors(err)) from err
    return Target(
        claim_id=canonical_keys[-1] if canonical_keys else key,
        source=event.source,
        external_id=event.external_id,
        canonical_id=canonical_keys[-1] if canonical_keys else None,
        canonical_version=_version(canonical_doc),
        event=data,
        external_keys=tuple(dict.fromkeys(external_keys)),
        canonical_keys=canonical_keys,
        addon=bool(doc.get(ADDON)),
    )


def _by_canonical(canonical_id: str, canonicals: Mapping[str, Document]) -> Target | None:
    alive = survivor(canonical_id, canonicals)
    doc = canonicals.get(alive)
    if doc is None:
        return None
    try:
        event = CanonicalEvent.model_validate(doc)
    except ValidationError as err:
        raise Unusable(field_errors(err)) from err
    # The local event names one provider's record: the first source, as the catalogue lists it.
    first = event.sources[0]
    return Target(
        claim_id=alive,
        source=first.source,
        external_id=first.external_id,
        canonical_id=alive,
        canonical_version=event.version,
        event=event,
        external_keys=tuple(f"{s.source.value}:{s.external_id}" for s in event.sources),
        canonical_keys=tuple(dict.fromkeys([canonical_id, alive])),
        addon=bool(doc.get(ADDON)),
    )


def _sources(doc: Document) -> list[Document]:
    return [s for s in doc.get("sources") or [] if isinstance(s, dict) and "source" in s]


def _version(doc: Document | None) -> int | None:
    value = doc.get("version") if doc else None
    return int(value) if isinstance(value, int) else None


def validate(event: EventFields, now: datetime, *, addon: bool = False) -> list[FieldError]:
    """What keeps this event from becoming a local event; empty when nothing does."""
    errors: list[FieldError] = []
    if addon:
        errors.append(FieldError(field=None, message=ADDON_REFUSED, code=R_ADDON))
    if not event.title.strip():
        errors.append(FieldError(field="title", message="Title is required", code="missing"))
    if event.status is EventStatus.CANCELLED:
        errors.append(
            FieldError(field="status", message="The event is cancelled", code="cancelled")
        )
    start = event.start.utc
    if start is None or event.start.date_tbd:
        errors.append(FieldError(field="start", message="Start time is required", code="missing"))
    elif event.start.time_tbd:
        errors.append(
            FieldError(field="start", message="Start time is not announced yet", code="time_tbd")
        )
    elif start <= now:
        errors.append(FieldError(field="start", message=START_IN_PAST, code=R_START_IN_PAST))
    end = event.end.utc if event.end else None
    if start is not None and end is not None and end < start:
        errors.append(
            FieldError(field="end", message="End time must be after the start time", code="order")
        )
    return errors


def rejection_message(errors: list[FieldError]) -> str:
    """The seed's wording: a past start says so; anything else is a validation error."""
    if len(errors) == 1 and errors[0].code == R_START_IN_PAST:
        return START_IN_PAST
    return VALIDATION_ERROR


def rejection_reason(errors: list[FieldError]) -> str:
    return R_START_IN_PAST if rejection_message(errors) == START_IN_PAST else R_VALIDATION


def location(venue: Venue | None, online: bool) -> str | None:
    """The seed's one-line location: city, state, country (or the venue name, or Online)."""
    if online and (venue is None or not venue.city):
        return "Online"
    if venue is None:
        return None
    parts = [p for p in (venue.city, venue.state, venue.country) if p]
    return ", ".join(parts) or venue.name


def local_event(target: Target, request: ImportRequest, local_id: str, now: datetime) -> LocalEvent:
    """The seed's LocalEvent fields from the target's data (validated before this is called)."""
    event = target.event
    start = event.start.utc
    if start is None:
        raise Unusable(
            [FieldError(field="start", message="Start time is required", code="missing")]
        )
    venue = event.venue
    return LocalEvent(
        id=local_id,
        title=event.title,
        description=event.description,
        location=location(venue, event.online),
        start=start,
        start_local=event.start.local,
        timezone=event.start.timezone or (venue.timezone if venue else None),
        end=event.end.utc if event.end else None,
        created_by=request.requested_by,
        external_event_id=target.external_id,
        source=target.source,
        canonical_id=target.canonical_id,
        venue_name=venue.name if venue else None,
        venue_address=venue.address if venue else None,
        status=event.status,
        created_at=now,
        updated_at=now,
    )
