"""The catalogue as this replica holds it: per-source records, canonical events, import claims."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from services.api.index import PROVIDER_BIT, PROVIDERS, Interned, Page, Query, Row, Table
from services.api.text import LOCATION, token_set
from shared.mongo import Document

# Stored bookkeeping that is not part of the public representation.
_PRIVATE = ("_id", "content_hash", "members", "is_imported", "imported_event")


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return math.nan
    return math.nan


def _text_tokens(doc: Mapping[str, Any]) -> set[str]:
    venue = doc.get("venue") or {}
    performers = [p.get("name") for p in doc.get("performers") or () if isinstance(p, dict)]
    found = token_set(
        [
            doc.get("title"),
            doc.get("description"),
            doc.get("category"),
            doc.get("subcategory"),
            venue.get("name"),
            *performers,
        ]
    )
    found |= token_set(
        [
            venue.get("name"),
            venue.get("city"),
            venue.get("state"),
            venue.get("country"),
            venue.get("postal_code"),
        ],
        prefix=LOCATION,
    )
    return found


def _exact(raw: bytes) -> bytes:
    """A right-sized copy: orjson returns its bytes in a buffer of 16 KB or more, and the read
    model keeps a million of them (measured: 8 KB wasted per document without this)."""
    return memoryview(raw).tobytes()


def _row(key: str, doc: Mapping[str, Any], body: bytes, providers: int, **extra: Any) -> Row:
    venue = doc.get("venue") or {}
    start = doc.get("start") or {}
    lat, lon = venue.get("lat"), venue.get("lon")
    return Row(
        key=key,
        version=int(doc.get("version") or 1),
        body=body,
        tokens=_text_tokens(doc),
        start=_ts(start.get("utc")),
        updated=_ts(doc.get("updated_at")),
        lat=float(lat) if isinstance(lat, int | float) else math.nan,
        lon=float(lon) if isinstance(lon, int | float) else math.nan,
        providers=providers,
        category=doc.get("category"),
        subcategory=doc.get("subcategory"),
        status=doc.get("status"),
        country=venue.get("country"),
        city=venue.get("city"),
        **extra,
    )


def external_row(doc: Document) -> Row:
    """A stored per-source record (``external_events``) as the read model indexes it."""
    key = str(doc["_id"])
    public = {k: v for k, v in doc.items() if k not in _PRIVATE}
    public = {"id": key, **public}
    body = _exact(orjson.dumps(public))
    source = str(doc.get("source") or key.split(":", 1)[0])
    return _row(key, doc, body, PROVIDER_BIT.get(source, 0), group=doc.get("canonical_id") or None)


def canonical_row(event: Mapping[str, Any]) -> Row:
    """A canonical event (JSON form, as ``events.canonical`` carries it)."""
    key = str(event.get("id") or event.get("_id"))
    public = {k: v for k, v in event.items() if k not in _PRIVATE and k != "id"}
    body = _exact(orjson.dumps({"id": key, **public}))
    providers = 0
    for source in event.get("sources") or ():
        providers |= PROVIDER_BIT.get(str(source.get("source")), 0)
    return _row(key, event, body, providers, listed=not event.get("duplicate_of"))


@dataclass(slots=True)
class Claim:
    """An import claim (the importer's ``imports`` collection)."""

    id: str
    local_event_id: str | None
    source: str | None
    external_id: str | None
    canonical_id: str | None
    requested_by: str | None
    created_at: datetime | None
    active: bool

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Claim:
        return cls(
            id=str(doc["_id"]),
            local_event_id=doc.get("local_event_id"),
            source=doc.get("source"),
            external_id=doc.get("external_id"),
            canonical_id=doc.get("canonical_id"),
            requested_by=doc.get("requested_by"),
            created_at=doc.get("created_at")
            if isinstance(doc.get("created_at"), datetime)
            else None,
            active=doc.get("state", "active") == "active",
        )

    def references(self) -> list[str]:
        found = [self.id]
        if self.source and self.external_id:
            found.append(f"{self.source}:{self.external_id}")
        if self.canonical_id:
            found.append(self.canonical_id)
        return list(dict.fromkeys(found))


@dataclass
class LoadState:
    state: str = "starting"  # starting, loading, ready, failed
    externals_loaded: int = 0
    canonicals_loaded: int = 0
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    error: str | None = None
    last_change_at: float | None = None


class ReadModel:
    """Per-source records and canonical events in memory, plus who imported what."""

    def __init__(self) -> None:
        categories, groups, places = Interned(), Interned(), Interned()
        self.externals = Table(categories, groups, places)
        self.canonicals = Table(categories, groups, places)
        self.categories = categories
        self.places = places
        self.claims: dict[str, Claim] = {}
        self.local_of: dict[str, str] = {}  # external key or canonical id -> local event id
        self.load = LoadState()
        self.generation = 0  # bumped on every change: part of the response cache key

    @property
    def ready(self) -> bool:
        return self.load.state == "ready"

    # ----------------------------------------------------------------------------- writes

    def apply_external(self, doc: Document) -> bool:
        row = external_row(doc)
        if not self.externals.upsert(row, force=self._moved(row)):
            return False
        self._reflag(row.key, row.group)
        self.generation += 1
        return True

    def _moved(self, row: Row) -> bool:
        """A merge re-points a member at the surviving event without a new version: take the
        same version when it names another event that is live here. A stale read naming the
        merged-away event does not qualify (that one is listed no more), so nothing reverts."""
        slot = self.externals.slot(row.key)
        if slot is None or row.group is None:
            return False
        if int(self.externals.cols["version"][slot]) != row.version:
            return False
        if self.external_group(row.key) == row.group:
            return False
        target = self.canonicals.slot(row.group)
        return target is not None and bool(self.canonicals.cols["listed"][target])

    def apply_canonical(self, event: Mapping[str, Any]) -> bool:
        row = canonical_row(event)
        if not self.canonicals.upsert(row):
            return False
        if row.key in self.local_of:
            self.canonicals.set_imported(row.key, True)
        self.generation += 1
        return True

    def _reflag(self, key: str, group: str | None) -> None:
        if key in self.local_of or (group and group in self.local_of):
            self.externals.set_imported(key, True)

    def set_claims(self, claims: Iterable[Claim]) -> None:
        """Replace every claim (a full reload of the ``imports`` collection)."""
        for key in list(self.local_of):
            self._unmark(key)
        self.claims = {}
        self.local_of = {}
        for claim in claims:
            self.add_claim(claim)
        self.generation += 1

    def add_claim(self, claim: Claim) -> None:
        self.claims[claim.id] = claim
        if not claim.active or not claim.local_event_id:
            return
        for key in claim.references():
            self.local_of[key] = claim.local_event_id
            self._mark(key)
        self.generation += 1

    def _mark(self, key: str) -> None:
        self.externals.set_imported(key, True)
        self.canonicals.set_imported(key, True)
        for slot in self.externals.group_slots(key):
            self.externals.cols["imported"][slot] = True

    def _unmark(self, key: str) -> None:
        self.externals.set_imported(key, False)
        self.canonicals.set_imported(key, False)
        for slot in self.externals.group_slots(key):
            self.externals.cols["imported"][slot] = False

    # ----------------------------------------------------------------------------- reads

    def local_event_of(self, key: str, group: str | None = None) -> str | None:
        return self.local_of.get(key) or (self.local_of.get(group) if group else None)

    def external_body(self, slot: int) -> bytes:
        table = self.externals
        key = table.keys[slot]
        group = table.groups.names[int(table.cols["group"][slot])] or None
        return _with_flags(table.bodies[slot] or b"{}", self.local_event_of(key, group))

    def canonical_body(self, slot: int) -> bytes:
        key = self.canonicals.keys[slot]
        return _with_flags(self.canonicals.bodies[slot] or b"{}", self.local_of.get(key))

    def external(self, key: str) -> bytes | None:
        slot = self.externals.slot(key)
        return None if slot is None else self.external_body(slot)

    def external_version(self, key: str) -> int | None:
        """The version of a per-source record as held here (None: not held)."""
        slot = self.externals.slot(key)
        return None if slot is None else int(self.externals.cols["version"][slot])

    def external_group(self, key: str) -> str | None:
        slot = self.externals.slot(key)
        if slot is None:
            return None
        return self.externals.groups.names[int(self.externals.cols["group"][slot])] or None

    def canonical(self, key: str) -> bytes | None:
        slot = self.canonicals.slot(key)
        return None if slot is None else self.canonical_body(slot)

    def search(self, query: Query) -> Page:
        return self.externals.select(query)

    def listing(self, query: Query) -> Page:
        return self.canonicals.select(query)

    def changes(
        self, after: tuple[float, str] | None, limit: int, until: float
    ) -> tuple[list[int], bool]:
        """Canonical events (merged ones too) in (modified, id) order after the cursor."""
        table = self.canonicals
        updated = table.cols["updated"][: table.size]
        mask = table.cols["alive"][: table.size] & (updated <= until)
        if after is not None:
            mask &= updated >= after[0]
        slots = np.nonzero(mask)[0]
        values = updated[slots]
        if after is not None:
            tied = np.nonzero(values == after[0])[0]
            if len(tied):
                keep = np.ones(len(slots), dtype=bool)
                for i in tied:
                    keep[i] = table.keys[int(slots[i])] > after[1]
                slots, values = slots[keep], values[keep]
        more = len(slots) > limit
        if more and limit > 0:
            kth = np.partition(values, limit - 1)[limit - 1]
            near = values <= kth
            slots, values = slots[near], values[near]
        ordered = sorted(
            zip(values.tolist(), slots.tolist(), strict=True),
            key=lambda p: (p[0], table.keys[p[1]]),
        )
        return [s for _, s in ordered[:limit]], more

    def providers_of(self, mask: int) -> list[str]:
        return [name for name in PROVIDERS if PROVIDER_BIT[name] & mask]


def _with_flags(body: bytes, local_event_id: str | None) -> bytes:
    """The stored JSON object with ``is_imported`` / ``imported_event`` as of now."""
    if local_event_id is None:
        return body[:-1] + b',"is_imported":false,"imported_event":null}'
    return (
        body[:-1] + b',"is_imported":true,"imported_event":' + orjson.dumps(local_event_id) + b"}"
    )
