"""The importer's pipeline in-process against the real MongoDB-wire server (no Kafka).

Also the catalogue helpers the service tests and the benchmark use: per-source and canonical
documents built with the contract models and dumped as the normalizer dumps them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.importer.dismiss import LocalEventNotFound, delete_local_event
from services.importer.ids import local_event_id
from services.importer.pipeline import Importer
from services.importer.requests import parse
from services.importer.rules import (
    ALREADY_IMPORTED,
    DISMISSED,
    NOT_FOUND,
    START_IN_PAST,
    VALIDATION_ERROR,
)
from services.importer.store import (
    EVENTS,
    EXTERNAL_EVENTS,
    IMPORT_RESULTS,
    IMPORTS,
    LOCAL_EVENTS,
    ImportStore,
)
from services.importer.updates import Updater
from shared.contracts import (
    CanonicalChange,
    CanonicalEvent,
    ChangeOp,
    EventStatus,
    ExternalEvent,
    ImportOptions,
    ImportRequest,
    ImportResult,
    ImportStatus,
    LocalEvent,
    Notification,
    Provider,
    SourceRef,
    Venue,
    When,
    payload_hash,
)
from shared.mongo import Document

CITIES = (
    ("London", "GB", "Europe/London", "O2 Academy Brixton", "211 Stockwell Rd"),
    ("New York", "US", "America/New_York", "Madison Square Garden", "4 Pennsylvania Plaza"),
    ("Berlin", "DE", "Europe/Berlin", "Columbiahalle", "Columbiadamm 13-21"),
    ("Tokyo", "JP", "Asia/Tokyo", "Zepp Haneda", "1-1-4 Hanedakuko"),
)


def when(at: datetime | None, zone: str, *, date_tbd: bool = False, time_tbd: bool = False) -> When:
    local = at.astimezone(ZoneInfo(zone)).replace(tzinfo=None).isoformat() if at else None
    return When(utc=at, local=local, timezone=zone, date_tbd=date_tbd, time_tbd=time_tbd)


def external(
    provider: Provider,
    external_id: str,
    *,
    canonical_id: str | None,
    start: datetime | None,
    title: str = "The Lumineers",
    city: int = 0,
    end: datetime | None = None,
    status: EventStatus = EventStatus.SCHEDULED,
    date_tbd: bool = False,
    time_tbd: bool = False,
) -> ExternalEvent:
    name, country, zone, venue, address = CITIES[city % len(CITIES)]
    return ExternalEvent(
        source=provider,
        external_id=external_id,
        title=title,
        description=f"{title} live in {name}",
        status=status,
        start=when(start, zone, date_tbd=date_tbd, time_tbd=time_tbd),
        end=when(end, zone) if end else None,
        venue=Venue(name=venue, address=address, city=name, country=country, timezone=zone),
        content_hash=payload_hash({"id": external_id, "title": title}),
        canonical_id=canonical_id,
        start_utc=start,
        venue_city=name,
        url=f"https://example.invalid/{provider.value}/{external_id}",
    )


def canonical_of(cid: str, members: Sequence[ExternalEvent], version: int = 1) -> CanonicalEvent:
    lead = members[0]
    return CanonicalEvent(
        id=cid,
        sources=[SourceRef(source=m.source, external_id=m.external_id) for m in members],
        title=lead.title,
        description=lead.description,
        status=lead.status,
        start=lead.start,
        end=lead.end,
        venue=lead.venue,
        version=version,
    )


def external_doc(event: ExternalEvent) -> Document:
    """As services/normalizer/pipeline.py stores it."""
    doc = event.to_document()
    doc["_id"] = f"{event.source.value}:{event.external_id}"
    doc["start_utc"] = event.start_utc
    return doc


def canonical_doc(event: CanonicalEvent) -> Document:
    doc = event.to_document()
    doc["content_hash"] = payload_hash(doc["_id"])
    doc["members"] = []
    return doc


@dataclass
class Catalogue:
    externals: list[ExternalEvent] = field(default_factory=list)
    canonicals: list[CanonicalEvent] = field(default_factory=list)

    def add(self, canonical_id: str, members: Sequence[ExternalEvent], version: int = 1) -> None:
        self.externals += members
        self.canonicals.append(canonical_of(canonical_id, members, version))


def catalogue(count: int, prefix: str = "", start: datetime | None = None) -> Catalogue:
    """``count`` future performances; every other one listed by two providers."""
    base = start or datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    out = Catalogue()
    for i in range(count):
        cid = f"ev_{prefix}{i:06d}"
        at = base + timedelta(hours=i)
        members = [
            external(Provider.TICKETMASTER, f"{prefix}G{i}", canonical_id=cid, start=at, city=i)
        ]
        if i % 2 == 0:
            members.append(
                external(Provider.SEATGEEK, f"{prefix}{i}", canonical_id=cid, start=at, city=i)
            )
        out.add(cid, members)
    return out


async def seed(db: AsyncDatabase[Document], cat: Catalogue) -> None:
    externals = [external_doc(e) for e in cat.externals]
    canonicals = [canonical_doc(c) for c in cat.canonicals]
    for collection, docs in ((EXTERNAL_EVENTS, externals), (EVENTS, canonicals)):
        for i in range(0, len(docs), 1000):
            await db[collection].insert_many(docs[i : i + 1000])


class Captured:
    """What the pipeline emitted (stands in for the Kafka producer)."""

    def __init__(self) -> None:
        self.results: list[ImportResult] = []
        self.notifications: list[Notification] = []

    async def __call__(
        self, results: Sequence[ImportResult], notes: Sequence[Notification]
    ) -> None:
        self.results += results
        self.notifications += notes

    async def notify(self, notes: Sequence[Notification]) -> None:
        self.notifications += notes

    def by_request(self) -> dict[str, list[ImportResult]]:
        out: dict[str, list[ImportResult]] = {}
        for result in self.results:
            out.setdefault(result.request_id, []).append(result)
        return out


def request(
    event: ExternalEvent | None = None,
    *,
    canonical_id: str | None = None,
    user: str = "org-1",
    force: bool = False,
    notify: bool = True,
) -> ImportRequest:
    if event is not None:
        return ImportRequest(
            provider=event.source,
            external_id=event.external_id,
            requested_by=user,
            options=ImportOptions(force=force, notify=notify),
        )
    return ImportRequest(
        canonical_id=canonical_id, requested_by=user, options=ImportOptions(force=force)
    )


class Crash(Exception):
    """Stands in for the process dying at a failpoint."""


def crash_at(point: str) -> Any:
    def hit(name: str) -> None:
        if name == point:
            raise Crash(point)

    return hit


def importer(db: AsyncDatabase[Document], sink: Captured, **kwargs: Any) -> Importer:
    return Importer(ImportStore(db), sink, **kwargs)


async def test_import_creates_the_local_event_and_marks_the_catalogue(
    mongo_db: AsyncDatabase[Document],
) -> None:
    cat = catalogue(2)
    await seed(mongo_db, cat)
    sink = Captured()
    tm = cat.externals[0]  # ev_000000: listed by Ticketmaster and SeatGeek
    req = request(tm, user="org-7")
    outcome = await importer(mongo_db, sink).process([req])

    assert outcome.imported == 1
    [result] = sink.results
    assert result.status is ImportStatus.IMPORTED
    assert result.local_event_id == local_event_id("ev_000000")
    stored = await mongo_db[LOCAL_EVENTS].find_one({"_id": result.local_event_id})
    assert stored is not None
    local = LocalEvent.model_validate(stored)
    assert local.title == tm.title
    assert local.description == tm.description
    assert local.location == "London, GB"
    assert local.start == tm.start.utc
    assert local.start_local == tm.start.local
    assert local.timezone == "Europe/London"
    assert local.created_by == "org-7"
    assert (local.source, local.external_event_id) == (Provider.TICKETMASTER, tm.external_id)
    assert local.canonical_id == "ev_000000"
    assert local.venue_name == "O2 Academy Brixton"
    assert local.venue_address == "211 Stockwell Rd"
    assert local.start.tzinfo is not None
    # The claim, per the agreed layout.
    claim = await mongo_db[IMPORTS].find_one({"_id": "ev_000000"})
    assert claim is not None
    assert claim["local_event_id"] == local.id
    assert claim["request_id"] == req.request_id
    assert claim["state"] == "active"
    assert (claim["source"], claim["external_id"]) == ("ticketmaster", tm.external_id)
    # Both providers' records and the canonical event point at the local event.
    for key in (f"ticketmaster:{tm.external_id}", "seatgeek:0"):
        doc = await mongo_db[EXTERNAL_EVENTS].find_one({"_id": key})
        assert doc is not None
        assert (doc["is_imported"], doc["imported_event"]) == (True, local.id)
    canon = await mongo_db[EVENTS].find_one({"_id": "ev_000000"})
    assert canon is not None
    assert (canon["is_imported"], canon["imported_event"]) == (True, local.id)
    # The result is stored (for GET /imports/{id}) and marked emitted.
    doc = await mongo_db[IMPORT_RESULTS].find_one({"_id": req.request_id})
    assert doc is not None
    assert doc["emitted"] is True
    assert ImportResult.model_validate(doc) == result
    # The organiser is told.
    [note] = sink.notifications
    assert (note.type, note.user_id) == ("event.imported", "org-7")
    assert note.payload["local_event_id"] == local.id
    # The other record of the same performance is the same event: already imported.
    again = await importer(mongo_db, sink).process([request(cat.externals[1], user="org-7")])
    assert again.rejected == {"already_imported": 1}
    assert sink.results[-1].message == ALREADY_IMPORTED
    assert sink.results[-1].local_event_id == local.id  # the same organiser may know which
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 1


async def test_each_rejection_path(mongo_db: AsyncDatabase[Document]) -> None:
    now = datetime.now(UTC)
    cat = catalogue(1)
    past = external(
        Provider.TICKETMASTER, "PAST", canonical_id="ev_past", start=now - timedelta(days=1)
    )
    no_start = external(Provider.TICKETMASTER, "NOSTART", canonical_id="ev_nostart", start=None)
    tbd = external(
        Provider.SEATGEEK,
        "TBD",
        canonical_id="ev_tbd",
        start=now + timedelta(days=3),
        time_tbd=True,
    )
    off = external(
        Provider.MEETUP,
        "OFF",
        canonical_id="ev_off",
        start=now + timedelta(days=3),
        status=EventStatus.CANCELLED,
    )
    for event in (past, no_start, tbd, off):
        cat.add(str(event.canonical_id), [event])
    await seed(mongo_db, cat)
    sink = Captured()
    first = request(cat.externals[0], user="org-a")
    await importer(mongo_db, sink).process([first])
    reqs = {
        "unknown": ImportRequest(provider=Provider.SEATGEEK, external_id="nope", requested_by="u"),
        "unknown_canonical": request(canonical_id="ev_nope"),
        "taken": request(canonical_id="ev_000000", user="org-b"),
        "past": request(past),
        "no_start": request(no_start),
        "tbd": request(tbd),
        "cancelled": request(off),
    }
    garbage = parse(b"{not json")
    both = parse(b'{"request_id": "r-both", "requested_by": "u", "provider": "seatgeek", '
                 b'"external_id": "1", "canonical_id": "ev_1"}')  # fmt: skip
    outcome = await importer(mongo_db, sink).process([*reqs.values(), *garbage, *both])
    got = {r.request_id: r for r in sink.results}
    by = {name: got[r.request_id] for name, r in reqs.items()}
    assert all(r.status is ImportStatus.REJECTED for r in by.values())
    assert by["unknown"].message == NOT_FOUND
    assert by["unknown"].errors[0].field == "external_id"
    assert by["unknown_canonical"].errors[0].field == "canonical_id"
    assert by["taken"].message == ALREADY_IMPORTED
    assert by["taken"].local_event_id is None  # another organiser's event: not disclosed
    assert by["past"].message == START_IN_PAST
    assert [(e.field, e.code) for e in by["past"].errors] == [("start", "start_in_past")]
    assert by["no_start"].message == VALIDATION_ERROR
    assert [(e.field, e.code) for e in by["no_start"].errors] == [("start", "missing")]
    assert [(e.field, e.code) for e in by["tbd"].errors] == [("start", "time_tbd")]
    assert [(e.field, e.code) for e in by["cancelled"].errors] == [("status", "cancelled")]
    assert got["r-both"].message == VALIDATION_ERROR
    assert "either (provider, external_id) or canonical_id" in got["r-both"].errors[0].message
    assert got[garbage[0].request_id].errors[0].code == "json"
    assert outcome.rejected == {
        "not_found": 2, "already_imported": 1, "start_in_past": 1, "validation": 3,
        "invalid_request": 2,
    }  # fmt: skip
    # Nothing was claimed or created for a rejected request; every answer is stored.
    assert await mongo_db[IMPORTS].count_documents({}) == 1
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 1
    assert await mongo_db[IMPORT_RESULTS].count_documents({}) == 1 + len(reqs) + 2


async def test_redelivered_request_gets_the_same_result(mongo_db: AsyncDatabase[Document]) -> None:
    cat = catalogue(3)
    await seed(mongo_db, cat)
    sink = Captured()
    req = request(cat.externals[0])
    await importer(mongo_db, sink).process([req, req])  # twice in one batch
    outcome = await importer(mongo_db, sink).process([req])  # and again later
    assert outcome.replayed == 1
    assert outcome.imported == 0
    assert len(sink.results) == 2
    assert sink.results[0] == sink.results[1]  # the same answer, decided_at included
    assert len(sink.notifications) == 1  # emitted once; a replay does not notify again
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 1


async def test_concurrent_organisers_get_one_local_event(mongo_db: AsyncDatabase[Document]) -> None:
    """Two importers (as two consumers would) race for every event, by both reference kinds."""
    cat = catalogue(40)
    await seed(mongo_db, cat)
    tm = [e for e in cat.externals if e.source is Provider.TICKETMASTER]
    mine = [request(e, user="org-a") for e in tm]
    theirs = [request(canonical_id=str(e.canonical_id), user="org-b") for e in reversed(tm)]
    sink_a, sink_b = Captured(), Captured()
    a, b = importer(mongo_db, sink_a), importer(mongo_db, sink_b)

    async def run(imp: Importer, reqs: list[ImportRequest]) -> None:
        for i in range(0, len(reqs), 5):
            await imp.process(reqs[i : i + 5])

    await asyncio.gather(run(a, mine), run(b, theirs))
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 40
    assert await mongo_db[IMPORTS].count_documents({}) == 40
    results = {r.request_id: r for r in [*sink_a.results, *sink_b.results]}
    for ours, other in zip(mine, reversed(theirs), strict=True):
        pair = [results[ours.request_id], results[other.request_id]]
        assert sorted(r.status.value for r in pair) == ["imported", "rejected"]
        rejected = next(r for r in pair if r.status is ImportStatus.REJECTED)
        assert rejected.message == ALREADY_IMPORTED


@pytest.mark.parametrize(
    "point", ["after-claims", "after-local-events", "after-results", "after-emit"]
)
async def test_crash_at_any_point_resumes_without_loss_or_double(
    mongo_db: AsyncDatabase[Document], point: str
) -> None:
    cat = catalogue(4)
    await seed(mongo_db, cat)
    reqs = [request(e) for e in cat.externals if e.source is Provider.TICKETMASTER]
    dead = Captured()
    with pytest.raises(Crash):
        await importer(mongo_db, dead, failpoint=crash_at(point)).process(reqs)
    # Meanwhile another organiser asks for one of them: the claim stands, it is refused.
    sink = Captured()
    await importer(mongo_db, sink).process([request(canonical_id="ev_000000", user="org-x")])
    assert sink.results[-1].message == ALREADY_IMPORTED
    # The redelivered batch (offsets were not committed) finishes the work.
    await importer(mongo_db, sink).process(reqs)
    results = sink.by_request()
    assert all(results[r.request_id][-1].status is ImportStatus.IMPORTED for r in reqs)
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == len(reqs)
    if point == "after-emit":
        # The first attempt got its answers out: the replay repeats them, word for word.
        assert [r.request_id for r in dead.results] == [r.request_id for r in reqs]
        assert all(results[r.request_id][-1] == d for r, d in zip(reqs, dead.results, strict=True))
    emitted = {d["_id"] for d in await mongo_db[IMPORT_RESULTS].find({"emitted": True}).to_list()}
    assert {r.request_id for r in reqs} <= emitted


async def test_outbox_relay_emits_what_a_crash_left_unemitted(
    mongo_db: AsyncDatabase[Document],
) -> None:
    cat = catalogue(3)
    await seed(mongo_db, cat)
    reqs = [request(e) for e in cat.externals]
    with pytest.raises(Crash):
        await importer(mongo_db, Captured(), failpoint=crash_at("after-results")).process(reqs)
    sink = Captured()
    assert await importer(mongo_db, sink).relay() == len(reqs)
    assert {r.request_id for r in sink.results} == {r.request_id for r in reqs}
    assert {n.type for n in sink.notifications} == {"event.imported"}
    assert await importer(mongo_db, Captured()).relay() == 0


async def test_deleted_event_is_not_recreated_unless_forced(
    mongo_db: AsyncDatabase[Document],
) -> None:
    cat = catalogue(2)
    await seed(mongo_db, cat)
    sink = Captured()
    tm = cat.externals[0]
    await importer(mongo_db, sink).process([request(tm)])
    local_id = local_event_id("ev_000000")
    with pytest.raises(LocalEventNotFound):
        await delete_local_event(mongo_db, "le_nope", deleted_by="org-1")
    await delete_local_event(mongo_db, local_id, deleted_by="org-1")
    await delete_local_event(mongo_db, local_id, deleted_by="org-1")  # twice is harmless
    doc = await mongo_db[LOCAL_EVENTS].find_one({"_id": local_id})
    assert doc is not None
    assert doc["deleted"] is True
    assert LocalEvent.model_validate(doc).deleted_at is not None
    claim = await mongo_db[IMPORTS].find_one({"_id": "ev_000000"})
    assert claim is not None
    assert claim["state"] == "dismissed"
    ext = await mongo_db[EXTERNAL_EVENTS].find_one({"_id": f"ticketmaster:{tm.external_id}"})
    assert ext is not None
    assert (ext["is_imported"], ext["imported_event"]) == (False, None)

    await importer(mongo_db, sink).process([request(tm)])
    assert sink.results[-1].message == DISMISSED
    assert sink.results[-1].errors[0].code == "dismissed"
    # Two organisers force it at once: one re-creates it, the other is told it is imported.
    forced = [
        request(tm, user="org-1", force=True),
        request(canonical_id="ev_000000", user="org-2", force=True),
    ]
    sink_b = Captured()
    await asyncio.gather(
        importer(mongo_db, sink).process(forced[:1]), importer(mongo_db, sink_b).process(forced[1:])
    )
    answers = sorted(r.status.value for r in [sink.results[-1], sink_b.results[-1]])
    assert answers == ["imported", "rejected"]
    doc = await mongo_db[LOCAL_EVENTS].find_one({"_id": local_id})
    assert doc is not None
    assert doc["deleted"] is False
    assert doc.get("deleted_at") is None
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 1
    claim = await mongo_db[IMPORTS].find_one({"_id": "ev_000000"})
    assert claim is not None
    assert (claim["state"], claim["generation"]) == ("active", 1)


async def test_canonical_changes_reach_the_local_event(mongo_db: AsyncDatabase[Document]) -> None:
    cat = catalogue(3)
    await seed(mongo_db, cat)
    sink = Captured()
    await importer(mongo_db, sink).process([request(cat.externals[0], user="org-9")])
    local_id = local_event_id("ev_000000")
    updater = Updater(ImportStore(mongo_db), sink.notify)
    base = cat.canonicals[0]
    later = (base.start.utc or datetime.now(UTC)) + timedelta(hours=2)
    moved = base.model_copy(update={"start": when(later, "Europe/London"), "version": 2})
    change = CanonicalChange(op=ChangeOp.UPDATED, canonical_id=base.id, version=2, event=moved)
    other = CanonicalChange(
        op=ChangeOp.UPDATED, canonical_id="ev_000001", version=2, event=cat.canonicals[1]
    )
    out = await updater.process([change, other])
    assert out.applied == {"start": 1}
    assert out.ignored == 1  # ev_000001 was never imported
    doc = await mongo_db[LOCAL_EVENTS].find_one({"_id": local_id})
    assert doc is not None
    assert doc["start"] == later
    assert (doc["version"], doc["canonical_version"]) == (2, 2)
    [note] = [n for n in sink.notifications if n.type == "event.updated"]
    assert note.user_id == "org-9"
    assert note.payload["changes"]["start"]["new"] == later.isoformat()
    # The same change again, or an older one: nothing changes, nobody is told twice.
    again = await updater.process([change, change.model_copy(update={"version": 1})])
    assert again.stale == 1
    assert len([n for n in sink.notifications if n.type == "event.updated"]) == 1
    # Cancelled upstream: the local event says so, and the organiser hears of it.
    off = moved.model_copy(update={"status": EventStatus.CANCELLED, "version": 3})
    await updater.process(
        [CanonicalChange(op=ChangeOp.CANCELLED, canonical_id=base.id, version=3, event=off)]
    )
    doc = await mongo_db[LOCAL_EVENTS].find_one({"_id": local_id})
    assert doc is not None
    assert (doc["status"], doc["version"]) == ("EventCancelled", 3)
    assert [n.type for n in sink.notifications][-1] == "event.cancelled"
    # Merged into another canonical event: the local event follows the survivor.
    survivor = cat.canonicals[2].model_copy(update={"version": 5})
    await mongo_db[EVENTS].replace_one({"_id": survivor.id}, canonical_doc(survivor))
    merged = CanonicalChange(
        op=ChangeOp.MERGED, canonical_id=base.id, version=4, event=off, merged_into=survivor.id
    )
    await updater.process([merged])
    doc = await mongo_db[LOCAL_EVENTS].find_one({"_id": local_id})
    assert doc is not None
    assert (doc["canonical_id"], doc["canonical_version"]) == (survivor.id, 5)
    assert doc["start"] == survivor.start.utc
    alias = await mongo_db[IMPORTS].find_one({"_id": survivor.id})
    assert alias is not None
    assert (alias["local_event_id"], alias["alias_of"]) == (local_id, base.id)


async def test_bulk_items_each_get_their_own_result(mongo_db: AsyncDatabase[Document]) -> None:
    cat = catalogue(30)
    await seed(mongo_db, cat)
    items: list[Any] = [
        {"provider": e.source.value, "external_id": e.external_id}
        for e in cat.externals
        if e.source is Provider.TICKETMASTER
    ]
    items += [{"provider": "ticketmaster", "external_id": "missing"}, {"provider": "nowhere"}, "x"]
    raw = orjson.dumps(
        {"request_id": "bulk-1", "requested_by": "org-5", "items": items, "correlation_id": "c-9"}
    )
    parsed = parse(raw)
    assert [p.request_id for p in parsed] == [f"bulk-1.{i}" for i in range(len(items))]
    sink = Captured()
    outcome = await importer(mongo_db, sink).process(parsed)
    assert outcome.imported == 30
    assert outcome.rejected == {"not_found": 1, "invalid_request": 2}
    assert len({r.request_id for r in sink.results}) == 33
    # The bulk's correlation id reaches every answer and notification, rejections included.
    assert {r.correlation_id for r in sink.results} == {"c-9"}
    assert len(sink.notifications) == 30
    assert {n.correlation_id for n in sink.notifications} == {"c-9"}
    stored = await mongo_db[IMPORT_RESULTS].find_one({"_id": "bulk-1.0"})
    assert stored is not None
    assert stored["correlation_id"] == "c-9"
    assert await mongo_db[LOCAL_EVENTS].count_documents({"created_by": "org-5"}) == 30


async def test_notify_false_imports_without_telling_anyone(
    mongo_db: AsyncDatabase[Document],
) -> None:
    cat = catalogue(1)
    await seed(mongo_db, cat)
    sink = Captured()
    outcome = await importer(mongo_db, sink).process([request(cat.externals[0], notify=False)])
    assert outcome.imported == 1
    assert sink.results[0].status is ImportStatus.IMPORTED
    assert sink.notifications == []


async def test_merge_into_a_survivor_not_stored_yet_is_followed(
    mongo_db: AsyncDatabase[Document],
) -> None:
    """The normalizer emits a merge before it writes the survivor: follow it regardless."""
    cat = catalogue(1)
    await seed(mongo_db, cat)
    sink = Captured()
    await importer(mongo_db, sink).process([request(canonical_id="ev_000000", user="org-m")])
    local_id = local_event_id("ev_000000")
    updater = Updater(ImportStore(mongo_db), sink.notify)
    base = cat.canonicals[0].model_copy(update={"duplicate_of": "ev_new", "version": 2})
    merged = CanonicalChange(
        op=ChangeOp.MERGED, canonical_id=base.id, version=2, event=base, merged_into="ev_new"
    )
    assert (await updater.process([merged])).applied == {"merged": 1}
    doc = await mongo_db[LOCAL_EVENTS].find_one({"_id": local_id})
    assert doc is not None
    assert (doc["canonical_id"], doc["canonical_version"]) == ("ev_new", 0)
    # The survivor's own change, version 1 even, now reaches the local event through the alias.
    assert base.start.utc is not None
    later = base.start.utc + timedelta(days=1)
    survivor = canonical_of("ev_new", cat.externals).model_copy(
        update={"start": when(later, "Europe/London")}
    )
    created = CanonicalChange(op=ChangeOp.CREATED, canonical_id="ev_new", version=1, event=survivor)
    assert (await updater.process([created])).applied == {"start": 1}
    doc = await mongo_db[LOCAL_EVENTS].find_one({"_id": local_id})
    assert doc is not None
    assert (doc["start"], doc["canonical_version"]) == (later, 1)
    assert [n.type for n in sink.notifications] == ["event.imported", "event.updated"]
