"""One batch of raw records to per-source records, canonical events and change messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.normalizer.categories import CANONICAL, provider_category_docs
from services.normalizer.mappers import MappingError, is_addon, map_event
from services.normalizer.mappers.spotify import map_artist
from services.normalizer.merge import content_hash, merge
from services.normalizer.resolve import Profile, Resolver, canonical_id_for, wall_clock
from shared.contracts import (
    CanonicalChange,
    CanonicalEvent,
    Category,
    ChangeOp,
    EventStatus,
    ExternalEvent,
    Provider,
    RawRecord,
)
from shared.contracts.base import utc_now
from shared.contracts.messages import Entity
from shared.mongo import (
    CATEGORIES,
    EVENTS,
    EXTERNAL_EVENTS,
    Document,
    duplicates_only,
    ensure_indexes,
)
from shared.search import (
    ADDON,
    DAY,
    TERMS,
    WHEN,
    name_key,
    search_fields,
    with_search_fields,
)
from shared.series import (
    PRICE_SERIES,
    Point,
    append_op,
    bucket_doc,
    latest_per_key,
    point_of,
)

log = logging.getLogger(__name__)

# The old block index (a document per block) that canonical events' ``blocks`` replaced.
LEGACY_BLOCKS = "blocks"
MIGRATIONS = "migrations"
# Bumped whenever the shape of block keys changes: stored events then get them anew at start.
BLOCKS_MIGRATION = "events.blocks.v2"
# Bumped whenever shared/search.py changes what it stores: stored documents get it anew.
SEARCH_MIGRATION = "catalogue.search.v2"  # v2: the day beside the instant
# Documents stored before add-ons were marked get the mark (from their events' members).
ADDON_MIGRATION = "catalogue.addons.v1"
# Bumped on every write of a canonical event (its ``version`` moves only when what
# subscribers see changes): a rewrite names the revision it was built from, so two workers, or
# a worker and the zombie of a rebalance, never overwrite each other's members.
REV = "rev"
CANDIDATE_FIELDS = (
    *("members", "version", "content_hash", "status", "created_at", "duplicate_of"),
    *("is_imported", "imported_event", "sources", "blocks", REV),
)
# What deciding about a stored per-source record needs (a tombstone reads it whole).
STORED_FIELDS = (
    *("content_hash", "last_synced", "canonical_id", "is_imported", "imported_event"),
    *("created_at", "version"),
)
# Block keys per candidates query. The store's time per returned document grows with the
# size of the result (measured on SecantusDB: 7,700 candidates in one query 3.5 s, in queries
# of 100-250 keys 1.0-1.1 s in all), so a batch asks in several smaller queries.
CANDIDATE_CHUNK = 200
# How many merges a stale reference may be behind (each is one more read).
MAX_MERGE_HOPS = 4
ARTISTS = "artists"
# Kafka header on events.canonical: {"source:external_id": version} of the change's members.
SOURCE_VERSIONS = "ce_sourceversions"


def sources_header(versions: Mapping[str, int]) -> str:
    """The ``ce_sourceversions`` value: JSON, since external ids may hold any character."""
    return orjson.dumps(dict(sorted(versions.items()))).decode()


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record as the agent received it."""

    value: bytes
    key: bytes | None
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    message: Message
    error: str  # class name
    reason: str


@dataclass
class Outcome:
    written: int = 0
    unchanged: int = 0
    stale: int = 0
    skipped: int = 0  # entities the catalogue does not keep (venues, categories)
    joined: int = 0  # records matched into an existing canonical event of another provider
    merged: int = 0  # canonical events merged into another (duplicate_of)
    split: int = 0  # records that left their canonical event for a new one
    rejoined: int = 0  # canonical events updated because their performers' artists arrived
    artists: int = 0  # Spotify artists stored for performers
    changes: list[CanonicalChange] = field(default_factory=list)
    # Per announced change, (canonical id, version): the version of each per-source record it
    # was built from, sent as a header so that readers know which record versions to expect.
    sources: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)


class WriteConflict(Exception):
    """A guarded rewrite found a newer document than the one the batch was resolved over
    (another worker wrote it): the batch must be resolved again, not its records rejected."""

    def __init__(self, collection: str, ids: Sequence[str]) -> None:
        super().__init__(f"{len(ids)} {collection} changed under the batch, e.g. {ids[0]}")
        self.ids = list(ids)


@dataclass
class WriteStep:
    """What one resolution of a batch writes: canonical events (and new categories) first
    (``CatalogueStore.write_events``), then per-source records and the relinks of records a
    merge moved (``write_records``)."""

    externals: list[Document] = field(default_factory=list)
    canonicals: list[Document] = field(default_factory=list)
    existing: set[str] = field(default_factory=set)
    # Per stored canonical event rewritten: the revision it was read at (its write's guard).
    revs: dict[str, int | None] = field(default_factory=dict)
    relinks: dict[str, str] = field(default_factory=dict)
    categories: list[Category] = field(default_factory=list)
    # What readers see until the step is written: the relinked records, whole.
    relinked: list[Document] = field(default_factory=list)
    # Announced before the step is written.
    changes: list[CanonicalChange] = field(default_factory=list)
    # Price and listing points of the changed records (shared/series.py), written with them.
    series: list[Point] = field(default_factory=list)


@dataclass
class Plan:
    """A batch resolved but not yet announced or written (``Normalizer.commit`` does both)."""

    outcome: Outcome
    steps: list[WriteStep] = field(default_factory=list)
    # The changes being sent (started once the batch is resolved, so the broker's round trips
    # overlap the write of the batch before); the commit waits for them before writing.
    announcing: asyncio.Task[None] | None = None


class StageClock:
    """Seconds spent per stage of the batches (a stage's store waits included): where a
    worker's time goes, exported as ``stage_seconds_total`` and read by the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._last = time.perf_counter()

    def restart(self) -> None:
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now

    def add(self, stage: str, seconds: float) -> None:
        """Time measured apart (a commit runs beside the next batch's stages)."""
        self.seconds[stage] += seconds


def profile_doc(p: Profile, version: int | None = None) -> dict[str, Any]:
    """A member as its canonical event stores it, with the version of its per-source record."""
    return {
        "key": p.key,
        "version": version,
        "source": p.source,
        "title": sorted(p.title),
        "performers": sorted(p.performers),
        "venue": sorted(p.venue),
        "city": p.city,
        "lat": p.lat,
        "lon": p.lon,
        "start": p.start,
        "day": p.day,
        # Text: a naive datetime would read back as UTC. Older members lack it (None: the
        # time-zone-error rule is not applied to them until their record is seen again).
        "wall": p.wall.isoformat() if p.wall is not None else None,
        "online": p.online,
        "addon": p.addon,
        "category": p.category,
    }


def candidates_query(blocks: Sequence[str], ids: Iterable[str]) -> Document | None:
    """The filter for canonical events under ``blocks`` or with one of ``ids`` (None: none)."""
    wanted: list[Document] = [{"blocks": {"$in": list(blocks)}}] if blocks else []
    if named := sorted(set(ids)):
        wanted.append({"_id": {"$in": named}})
    return {"$or": wanted} if wanted else None


def blocks_of(members: Iterable[Profile]) -> list[str]:
    """The blocks a canonical event is found under: those of its members (multikey-indexed)."""
    return sorted({b for p in members if p.day for b in p.indexed_under()})


def profile_of(doc: dict[str, Any]) -> Profile:
    return Profile(
        key=doc["key"],
        source=doc["source"],
        title=frozenset(doc.get("title") or ()),
        performers=frozenset(doc.get("performers") or ()),
        venue=frozenset(doc.get("venue") or ()),
        city=doc.get("city"),
        lat=doc.get("lat"),
        lon=doc.get("lon"),
        start=doc.get("start"),
        day=doc.get("day"),
        online=bool(doc.get("online")),
        addon=bool(doc.get("addon")),
        category=doc.get("category"),
        wall=wall_clock(doc.get("wall")),
    )


class CatalogueStore:
    """MongoDB access: reads by ``_id``, unordered bulk writes, and the documents of batches
    resolved but not written yet (``staged``), which every read sees over the store's."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        # Documents written per (collection, "insert" or "rewrite"): the store's load. The two
        # kinds cost the store very differently (docs/BENCHMARKS.md), so they are told apart.
        self.writes: Counter[tuple[str, str]] = Counter()
        # A batch is resolved while the one before it is still being written (the worker's
        # CPU overlaps the store's): that batch's documents are read from here meanwhile.
        self.staged: dict[str, dict[str, Document]] = {EVENTS: {}, EXTERNAL_EVENTS: {}}
        # Seconds the series bulks took (they overlap the records' write: benchmarks/series.py).
        self.series_seconds = 0.0

    def stage(self, step: WriteStep) -> None:
        for collection, docs in (
            (EVENTS, step.canonicals),
            (EXTERNAL_EVENTS, [*step.externals, *step.relinked]),
        ):
            self.staged[collection].update((str(d["_id"]), d) for d in docs)

    def forget_staged(self) -> None:
        """Drop every staged document (their batches will be resolved again)."""
        for staged in self.staged.values():
            staged.clear()

    def unstage(
        self, step: WriteStep, collections: Sequence[str] = (EVENTS, EXTERNAL_EVENTS)
    ) -> None:
        """Forget a written step's documents, unless a later batch staged newer ones."""
        for collection, docs in (
            (EVENTS, step.canonicals),
            (EXTERNAL_EVENTS, [*step.externals, *step.relinked]),
        ):
            if collection not in collections:
                continue
            staged = self.staged[collection]
            for doc in docs:
                if staged.get(str(doc["_id"])) is doc:
                    del staged[str(doc["_id"])]

    async def by_ids(
        self, collection: str, ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> dict[str, Document]:
        if not ids:
            return {}
        staged = self.staged.get(collection, {})
        known = {i: staged[i] for i in ids if i in staged}
        wanted = [i for i in dict.fromkeys(ids) if i not in known]
        if not wanted:
            return known
        found = self.db[collection].find({"_id": {"$in": wanted}}, list(fields) if fields else None)
        return {str(doc["_id"]): doc async for doc in found} | known

    async def candidates(self, blocks: Sequence[str], ids: Iterable[str]) -> dict[str, Document]:
        """Canonical events indexed under any of ``blocks`` or named by ``ids``: indexed
        queries on the multikey ``blocks`` index and ``_id``, a few per batch, concurrent;
        staged versions win over stored ones."""
        blocks, ids = list(blocks), set(ids)
        chunks = [blocks[i : i + CANDIDATE_CHUNK] for i in range(0, len(blocks), CANDIDATE_CHUNK)]
        queries = [candidates_query(chunk, ()) for chunk in chunks]
        queries.append(candidates_query((), ids))
        found: dict[str, Document] = {}
        for part in await asyncio.gather(*(self._find(q) for q in queries if q is not None)):
            found |= part
        wanted = set(blocks)
        for cid, doc in self.staged[EVENTS].items():
            if cid in found or cid in ids or wanted.intersection(doc.get("blocks") or ()):
                found[cid] = doc
        return found

    async def _find(self, query: Document) -> dict[str, Document]:
        cursor = self.db[EVENTS].find(query, list(CANDIDATE_FIELDS))
        return {str(doc["_id"]): doc async for doc in cursor}

    async def migrate_blocks(self) -> int:
        """Give canonical events the blocks of this version of ``Profile.indexed_under`` (once
        per store and version: events stored earlier had none, or keys of another shape);
        returns how many changed. The old block collection is dropped afterwards."""
        if await self.db[MIGRATIONS].find_one({"_id": BLOCKS_MIGRATION}):
            return 0
        ops = []
        async for doc in self.db[EVENTS].find({}, ["members", "blocks"]):
            blocks = blocks_of([profile_of(m) for m in doc.get("members") or []])
            if doc.get("blocks") != blocks:
                ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": {"blocks": blocks}}))
        for start in range(0, len(ops), 1000):
            await self.db[EVENTS].bulk_write(ops[start : start + 1000], ordered=False)
        await self.db.drop_collection(LEGACY_BLOCKS)
        await self.db[MIGRATIONS].update_one(
            {"_id": BLOCKS_MIGRATION}, {"$set": {"at": utc_now(), "events": len(ops)}}, upsert=True
        )
        return len(ops)

    async def migrate_search(self) -> int:
        """Give documents stored before the API searched the store its fields (``terms``,
        ``when``, ``day``, ``geo``: see shared/search.py), once per store; returns how many
        changed."""
        if await self.db[MIGRATIONS].find_one({"_id": SEARCH_MIGRATION}):
            return 0
        changed = 0
        stale = {
            "$or": [
                {TERMS: {"$exists": False}},
                {WHEN: {"$exists": True}, DAY: {"$exists": False}},
            ]
        }
        for collection in (EVENTS, EXTERNAL_EVENTS):
            ops: list[UpdateOne] = []
            async for doc in self.db[collection].find(stale):
                ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": search_fields(doc)}))
                if len(ops) == 1000:
                    await self.db[collection].bulk_write(ops, ordered=False)
                    changed, ops = changed + len(ops), []
            if ops:
                await self.db[collection].bulk_write(ops, ordered=False)
                changed += len(ops)
        await self.db[MIGRATIONS].update_one(
            {"_id": SEARCH_MIGRATION},
            {"$set": {"at": utc_now(), "documents": changed}},
            upsert=True,
        )
        return changed

    async def migrate_addons(self) -> int:
        """Mark the add-ons stored before listings left them out, once per store: canonical
        events whose members are add-ons (their members say so), and those members' records;
        returns how many documents changed."""
        if await self.db[MIGRATIONS].find_one({"_id": ADDON_MIGRATION}):
            return 0
        changed, keys = 0, []
        async for doc in self.db[EVENTS].find({"members.addon": True}, ["members"]):
            members = doc.get("members") or []
            if members and all(m.get("addon") for m in members):
                done = await self.db[EVENTS].update_one(
                    {"_id": doc["_id"]}, {"$set": {ADDON: True}}
                )
                changed += done.modified_count
            keys += [m["key"] for m in members if m.get("addon") and m.get("key")]
        for start in range(0, len(keys), 1000):
            done = await self.db[EXTERNAL_EVENTS].update_many(
                {"_id": {"$in": keys[start : start + 1000]}}, {"$set": {ADDON: True}}
            )
            changed += done.modified_count
        await self.db[MIGRATIONS].update_one(
            {"_id": ADDON_MIGRATION}, {"$set": {"at": utc_now(), "documents": changed}}, upsert=True
        )
        return changed

    async def artists(self, docs: list[Document]) -> None:
        await self.db[ARTISTS].bulk_write([_replace(d) for d in docs], ordered=False)
        self.writes[ARTISTS, "rewrite"] += len(docs)

    async def categories(self, docs: Sequence[Category]) -> None:
        """Insert categories not stored yet (keyed ``source:name``; unique on name + source)."""
        if not docs:
            return
        await self.db[CATEGORIES].bulk_write(
            [
                UpdateOne(
                    {"_id": f"{c.source}:{c.name}"},
                    {"$setOnInsert": c.to_document()},
                    upsert=True,
                )
                for c in docs
            ],
            ordered=False,
        )

    async def write_events(
        self,
        canonicals: list[Document],
        *,
        existing: set[str],
        revs: Mapping[str, int | None] | None = None,
        categories: Sequence[Category] = (),
    ) -> None:
        """Canonical events, and the batch's new categories alongside; before the per-source
        records that name them (see Normalizer).

        Documents the batch saw stored are replaced; the others are inserted, because an
        insert is several times cheaper than a rewrite (see docs/BENCHMARKS.md). An insert
        that collides (a replay after a crash wrote it already) is redone as an idempotent
        replace.

        Every rewrite is guarded: a canonical event by the revision in ``revs`` it was read at
        (an insert that collided: by its content), a per-source record by its fetch time (an
        older fetch never overwrites a newer one). A guard that fails raises ``WriteConflict``.
        """
        with_search_fields(canonicals)
        await asyncio.gather(
            self._put(EVENTS, canonicals, existing, revs or {}), self.categories(categories)
        )

    async def write_records(
        self,
        externals: list[Document],
        *,
        existing: set[str],
        relinks: dict[str, str] | None = None,
    ) -> None:
        """Per-source records, as ``write_events``; ``relinks`` point records that a merge
        moved at their new canonical event."""
        with_search_fields(externals)
        await self._put(EXTERNAL_EVENTS, externals, existing, {})
        if relinks:
            await self.db[EXTERNAL_EVENTS].bulk_write(
                [UpdateOne({"_id": k}, {"$set": {"canonical_id": v}}) for k, v in relinks.items()],
                ordered=False,
            )
            self.writes[EXTERNAL_EVENTS, "rewrite"] += len(relinks)

    async def write_series(self, points: Sequence[Point], fresh: Iterable[str] = ()) -> int:
        """Append the points (shared/series.py); returns how many were appended.

        Points of records new to the catalogue (``fresh`` keys) start their bucket: inserted.
        The others are upserts that append unless the point repeats its bucket's last one. An
        upsert whose filter finds no bucket with another last point collides on ``_id``: that
        is the store saying "nothing new", not an error; an insert that collides (a replay)
        is redone as that upsert. One unordered bulk of each, together."""
        if not points:
            return 0
        began = time.perf_counter()
        new = set(fresh)
        latest = latest_per_key(points)
        collided, appended = await asyncio.gather(
            self._insert_series([p for p in latest if p.key in new]),
            self._append_series([p for p in latest if p.key not in new]),
        )
        inserted = sum(1 for p in latest if p.key in new) - len(collided)
        added = inserted + appended + await self._append_series(collided)
        self.writes[PRICE_SERIES, "append"] += added
        self.series_seconds += time.perf_counter() - began
        return added

    async def _insert_series(self, points: list[Point]) -> list[Point]:
        """Insert a bucket per point; returns the points whose bucket exists (a replay)."""
        if not points:
            return []
        try:
            await self.db[PRICE_SERIES].insert_many([bucket_doc(p) for p in points], ordered=False)
        except BulkWriteError as err:
            return [points[i] for i in duplicates_only(err)]
        return []

    async def _append_series(self, points: list[Point]) -> int:
        if not points:
            return 0
        ops = [append_op(p) for p in points]
        try:
            await self.db[PRICE_SERIES].bulk_write(ops, ordered=False)
        except BulkWriteError as err:
            return len(ops) - len(duplicates_only(err))
        return len(ops)

    async def _put(
        self,
        collection: str,
        docs: list[Document],
        existing: set[str],
        revs: Mapping[str, int | None],
    ) -> None:
        if not docs:
            return
        fresh = [d for d in docs if d["_id"] not in existing]
        known = [d for d in docs if d["_id"] in existing]
        # The inserts and the rewrites go out together: each is a durable commit the store
        # waits on (fsync), and they touch different documents.
        collided, _ = await asyncio.gather(
            self._insert(collection, fresh), self._rewrite(collection, known, revs)
        )
        await self._rewrite(collection, collided, {})

    @staticmethod
    def _guard(collection: str, doc: Document, revs: Mapping[str, int | None]) -> Document:
        if collection == EXTERNAL_EVENTS:
            return {"_id": doc["_id"], "last_synced": {"$lte": doc["last_synced"]}}
        if doc["_id"] in revs:
            return {"_id": doc["_id"], REV: revs[doc["_id"]]}
        # An insert that collided with an event the batch did not read: a replay rewrites its
        # own earlier write (the same content); anything else is another worker's.
        return {"_id": doc["_id"], "content_hash": doc["content_hash"]}

    async def _insert(self, collection: str, docs: list[Document]) -> list[Document]:
        """Insert ``docs``; returns those already stored (a replay wrote them)."""
        if not docs:
            return []
        try:
            await self.db[collection].insert_many(docs, ordered=False)
        except BulkWriteError as err:
            collided = [docs[i] for i in duplicates_only(err)]
            self.writes[collection, "insert"] += len(docs) - len(collided)
            return collided
        self.writes[collection, "insert"] += len(docs)
        return []

    async def _rewrite(
        self, collection: str, docs: list[Document], revs: Mapping[str, int | None]
    ) -> None:
        """Guarded upserts: a document whose guard fails is not found, so its upsert collides
        on ``_id``."""
        if not docs:
            return
        ops = [ReplaceOne(self._guard(collection, d, revs), d, upsert=True) for d in docs]
        try:
            await self.db[collection].bulk_write(ops, ordered=False)
        except BulkWriteError as err:
            failed = duplicates_only(err)
            self.writes[collection, "rewrite"] += len(ops) - len(failed)
            raise WriteConflict(collection, [str(docs[i]["_id"]) for i in failed]) from err
        self.writes[collection, "rewrite"] += len(ops)


# The changes to announce, and per (canonical id, version) the member versions behind it.
Emit = Callable[
    [list[CanonicalChange], Mapping[tuple[str, int], Mapping[str, int]]], Awaitable[None]
]


class Normalizer:
    """Maps, dedupes and resolves one batch; idempotent, so a redelivered batch is harmless.

    Order of effects, chosen so a crash at any point loses nothing and duplicates nothing:
    changes are sent to ``events.canonical`` first (a replay recomputes and may send the same
    version again — subscribers dedupe by version), then canonical events are
    written, and per-source records last: until that last write, a replay sees the record as
    new and redoes the work; after it, a replay sees it unchanged and does nothing.
    """

    def __init__(self, store: CatalogueStore, emit: Emit, resolver_threshold: float | None = None):
        self.store = store
        self.emit = emit
        self.threshold = resolver_threshold
        # Whether changed records append price and listing points (the benchmark turns it off).
        self.series = True
        # Categories this worker has stored: each is written once per process, not per record.
        self.categories_seen: set[tuple[str, str]] = set()
        self.clock = StageClock()

    async def start(self) -> None:
        """Once per process: indexes, the canonical taxonomy, blocks for events stored without.

        Indexes come from ``shared.bootstrap`` too; creating them here (idempotent) means a
        worker pointed at a fresh database never resolves over collection scans."""
        await ensure_indexes(self.store.db)
        await self._categories(CANONICAL)
        migrated = await self.store.migrate_blocks()
        if migrated:
            log.info("gave %d stored canonical events their blocks", migrated)
        searchable = await self.store.migrate_search()
        if searchable:
            log.info("gave %d stored documents their search fields", searchable)
        addons = await self.store.migrate_addons()
        if addons:
            log.info("marked %d stored documents as add-ons", addons)

    async def _categories(self, docs: Sequence[Category]) -> None:
        unique = self._unseen(docs)
        await self.store.categories(unique)
        self._seen(unique)

    def _unseen(self, docs: Sequence[Category]) -> list[Category]:
        fresh = [c for c in docs if (c.source, c.name) not in self.categories_seen]
        return list({(c.source, c.name): c for c in fresh}.values())

    def _seen(self, docs: Sequence[Category]) -> None:
        self.categories_seen.update((c.source, c.name) for c in docs)

    def _parse(self, message: Message, outcome: Outcome) -> RawRecord | None:
        try:
            return RawRecord.model_validate_json(message.value)
        except ValidationError as err:
            outcome.rejected.append(Rejected(message, type(err).__name__, _short(err)))
            return None

    async def process(self, messages: Sequence[Message]) -> Outcome:
        """Resolve, announce and write one batch."""
        plan = await self.prepare(messages)
        await self.commit(plan)
        return plan.outcome

    async def prepare(self, messages: Sequence[Message]) -> Plan:
        """Resolve one batch without announcing or writing anything; its documents are staged
        in the store, so the next batch is resolved over them while ``commit`` writes them."""
        plan = Plan(Outcome())
        try:
            await self._prepare(messages, plan)
        except BaseException:
            for step in plan.steps:
                self.store.unstage(step)
            raise
        if any(step.changes for step in plan.steps):
            plan.announcing = asyncio.create_task(self._announce(plan))
        return plan

    async def _announce(self, plan: Plan) -> None:
        began = time.perf_counter()
        changes = [change for step in plan.steps for change in step.changes]
        await self.emit(changes, plan.outcome.sources)
        self.clock.add("emit", time.perf_counter() - began)

    async def commit(self, plan: Plan) -> None:
        """Announce, write the canonical events, then the per-source records (the order the
        class docstring explains)."""
        await self.commit_events(plan)
        await self.commit_records(plan)

    async def commit_events(self, plan: Plan) -> None:
        """Announce the batch's changes, then write its canonical events; idempotent, so a
        commit retried after a store or broker failure is harmless."""
        announcing, plan.announcing = plan.announcing, None
        if announcing is not None:
            await announcing  # if it failed, the retried commit announces inline below
        elif any(step.changes for step in plan.steps):
            await self._announce(plan)
        began = time.perf_counter()
        for step in plan.steps:
            await self.store.write_events(
                step.canonicals,
                existing=step.existing,
                revs=step.revs,
                categories=step.categories,
            )
            self._seen(step.categories)
        for step in plan.steps:
            self.store.unstage(step, (EVENTS,))
        self.clock.add("write", time.perf_counter() - began)

    async def commit_records(self, plan: Plan) -> None:
        """Write the batch's per-source records, once its canonical events are written."""
        began = time.perf_counter()
        for step in plan.steps:
            # The series upserts are idempotent (a repeated point is not appended), so they go
            # out beside the records: a retried commit writes them again harmlessly.
            await asyncio.gather(
                self.store.write_records(
                    step.externals, existing=step.existing, relinks=step.relinks
                ),
                self.store.write_series(
                    step.series,
                    (str(d["_id"]) for d in step.externals if d["_id"] not in step.existing),
                ),
            )
        for step in plan.steps:
            self.store.unstage(step, (EXTERNAL_EVENTS,))
        self.clock.add("write_records", time.perf_counter() - began)

    async def abandon(self, plan: Plan) -> None:
        """Drop a prepared batch that will be redone (its announcement may have gone out:
        subscribers drop a repeated version)."""
        announcing, plan.announcing = plan.announcing, None
        if announcing is not None:
            with contextlib.suppress(Exception):
                await announcing
        for step in plan.steps:
            self.store.unstage(step)

    async def _prepare(self, messages: Sequence[Message], plan: Plan) -> None:
        outcome = plan.outcome
        clock = self.clock
        clock.restart()
        latest: dict[str, tuple[RawRecord, Message]] = {}
        artists: dict[str, Document] = {}
        for message in messages:
            raw = self._parse(message, outcome)
            if raw is None:
                continue
            if raw.provider is Provider.SPOTIFY and raw.entity is Entity.PERFORMER:
                artist = self._artist(raw, message, outcome)
                if artist is not None:
                    artists[artist["_id"]] = artist
                continue
            if raw.entity is not Entity.EVENT:
                outcome.skipped += 1
                continue
            key = raw.key()
            seen = latest.get(key)
            # Within a batch the newest fetch of a key wins; the older ones are stale.
            if seen is None or raw.fetched_at >= seen[0].fetched_at:
                if seen is not None:
                    outcome.stale += 1
                latest[key] = (raw, message)
            else:
                outcome.stale += 1
        tombstones = [k for k, (raw, _) in latest.items() if raw.tombstone]
        clock.lap("parse")
        stored = await self._stored(list(latest), tombstones, list(artists.values()))
        clock.lap("read")
        changed: dict[str, ExternalEvent] = {}
        for key, (raw, message) in latest.items():
            before = stored.get(key)
            # The stored record's content hash is its payload's: an unchanged payload is not
            # even mapped (a re-sync of an unchanged world costs a parse and one read).
            unchanged = before is not None and before.get("content_hash") == raw.payload_hash
            if unchanged and not raw.tombstone:
                outcome.unchanged += 1
                continue
            event = self._mapped(raw, message, before, outcome)
            if event is None:
                continue
            if before is not None:
                synced = before.get("last_synced")
                if isinstance(synced, datetime) and synced > raw.fetched_at:
                    outcome.stale += 1  # an older fetch never overwrites a newer one
                    continue
                event.canonical_id = before.get("canonical_id")
                event.is_imported = bool(before.get("is_imported"))
                event.imported_event = before.get("imported_event")
                event.created_at = before.get("created_at") or event.created_at
                event.version = int(before.get("version") or 0) + 1
            changed[key] = event
        clock.lap("map")
        if changed:
            step = await self._resolve(changed, outcome)
            step.series = self._points(changed, latest)
            plan.steps.append(self._staged(step))
        named = {k for a in artists.values() for k in a.get("events", [])} - set(changed)
        if named:
            plan.steps.append(self._staged(await self._rejoin(named, outcome)))
            clock.lap("rejoin")

    def _points(
        self, changed: Mapping[str, ExternalEvent], latest: Mapping[str, tuple[RawRecord, Message]]
    ) -> list[Point]:
        """What the changed records' payloads say of prices and listings."""
        if not self.series:
            return []
        points = []
        for key in changed:
            raw = latest[key][0]
            if raw.tombstone:
                continue
            point = point_of(raw.provider.value, raw.external_id, raw.payload, raw.fetched_at)
            if point is not None:
                points.append(point)
        return points

    def _staged(self, step: WriteStep) -> WriteStep:
        self.store.stage(step)
        return step

    async def _stored(
        self, keys: list[str], tombstones: list[str], artists: list[Document]
    ) -> dict[str, Document]:
        if artists:
            await self.store.artists(artists)
        found = await self.store.by_ids(EXTERNAL_EVENTS, keys, STORED_FIELDS)
        if tombstones:  # a tombstone rewrites the stored record: read it whole
            found |= await self.store.by_ids(EXTERNAL_EVENTS, tombstones)
        return found

    def _artist(self, raw: RawRecord, message: Message, outcome: Outcome) -> Document | None:
        """A Spotify artist matched to a provider's performer (ingestor enrichment)."""
        headers = {k: v.decode(errors="replace") for k, v in message.headers}
        provider, performer = headers.get("ce_matchprovider"), headers.get("ce_matchid")
        if not provider or not performer:
            outcome.skipped += 1  # an artist nobody was matched to: nothing to join
            return None
        try:
            artist = map_artist(raw.payload)
        except MappingError as err:
            outcome.rejected.append(Rejected(message, type(err).__name__, _short(err)))
            return None
        outcome.artists += 1
        return {
            "_id": f"{provider}:{performer}",
            **artist.model_dump(mode="python"),
            # The recommendations find a liked artist by name on this (shared/mongo.py index).
            "name_key": name_key(artist.name),
            "match_confidence": float(headers.get("ce_matchconfidence") or 0) or None,
            "match_method": headers.get("ce_matchmethod"),
            # Events that name this performer (ingestor header): re-merged below.
            "events": [k for k in (headers.get("ce_matchevents") or "").split(",") if k],
        }

    async def _with_artists(self, members: dict[str, ExternalEvent]) -> dict[str, ExternalEvent]:
        """Performers get the Spotify data matched to them (id, genres, popularity)."""
        keys = sorted(
            {
                f"{e.source.value}:{p.external_id}"
                for e in members.values()
                for p in e.performers
                if p.external_id
            }
        )
        found = await self.store.by_ids(ARTISTS, keys)
        if not found:
            return members
        out = {}
        for key, event in members.items():
            performers = []
            for p in event.performers:
                artist = found.get(f"{event.source.value}:{p.external_id}")
                if artist is not None:
                    p = p.model_copy(
                        update={
                            "spotify_id": p.spotify_id or artist.get("spotify_id"),
                            "genres": p.genres or list(artist.get("genres") or []),
                            "popularity": artist.get("popularity"),
                            "match_confidence": artist.get("match_confidence"),
                        }
                    )
                performers.append(p)
            out[key] = event.model_copy(update={"performers": performers})
        return out

    def _mapped(
        self, raw: RawRecord, message: Message, before: Document | None, outcome: Outcome
    ) -> ExternalEvent | None:
        if raw.tombstone:
            if before is None:
                outcome.skipped += 1  # never seen: nothing to cancel
                return None
            event = ExternalEvent.model_validate(before)
            if event.status is EventStatus.CANCELLED:
                outcome.unchanged += 1
                return None
            event.status = EventStatus.CANCELLED
            event.content_hash = f"tombstone:{event.content_hash}"
            event.last_synced = raw.fetched_at
            return event
        try:
            return map_event(raw)
        except (MappingError, ValidationError) as err:
            outcome.rejected.append(Rejected(message, type(err).__name__, _short(err)))
            return None

    async def _candidates(self, blocks: Sequence[str], ids: set[str]) -> dict[str, Document]:
        """Stored events in ``blocks`` or named by ``ids``, plus the events merged ones now
        point to (a further read only when a stale id names a merged event)."""
        canon = await self.store.candidates(blocks, ids)
        for _ in range(MAX_MERGE_HOPS):
            wanted = {str(d["duplicate_of"]) for d in canon.values() if d.get("duplicate_of")}
            if not wanted - set(canon):
                break
            canon |= await self.store.candidates((), wanted - set(canon))
        return canon

    async def _resolve(self, changed: dict[str, ExternalEvent], outcome: Outcome) -> WriteStep:
        clock = self.clock
        mark = len(outcome.changes)
        profiles = {k: Profile.of(e, addon=is_addon(e)) for k, e in changed.items()}
        block_keys = sorted({b for p in profiles.values() for b in p.blocks()})
        clock.lap("profile")
        # Candidates are read for resolution only: their members' profiles and bookkeeping.
        # The ids a record would found an event under are read too: another worker (or this
        # batch's crashed first run) may have stored it since, and it must not be written blind.
        linked = {e.canonical_id for e in changed.values() if e.canonical_id}
        canon = await self._candidates(block_keys, linked | {canonical_id_for(k) for k in changed})
        clock.lap("candidates")
        resolver = Resolver() if self.threshold is None else Resolver(self.threshold)
        for cid, doc in canon.items():
            if not doc.get("duplicate_of"):  # a merged event has no members left
                profiles_of = [profile_of(m) for m in doc.get("members", [])]
                resolver.load(cid, profiles_of, doc.get("created_at"))
        scores: dict[str, float] = {}
        for key in sorted(changed):
            home = _survivor(canon, changed[key].canonical_id)
            if home in resolver.clusters and key not in resolver.of_key:
                resolver.of_key[key] = home
            _cid, value = resolver.add(profiles[key])
            if value is not None:
                scores[key] = value
                outcome.joined += 1
        for key, event in changed.items():
            event.canonical_id = resolver.of_key[key]
        final = {old: _final(resolver, old) for old in resolver.split_from.values()}
        touched = {resolver.of_key[k] for k in changed} | set(final.values())
        touched |= {_final(resolver, s) for s in resolver.merged.values()}
        clock.lap("resolve")
        # Rebuild every touched canonical event from all its members.
        member_keys = {k for cid in touched for k in resolver.clusters[cid].members}
        others = await self.store.by_ids(EXTERNAL_EVENTS, sorted(member_keys - set(changed)))
        relinks = {
            k: resolver.of_key[k]
            for k, d in others.items()
            if d.get("canonical_id") != resolver.of_key[k]
        }
        members = {k: ExternalEvent.model_validate(d) for k, d in others.items()} | changed
        members = await self._with_artists(members)
        clock.lap("members")
        canonical_docs = await self._merged_away(resolver, canon, outcome)
        fresh = {k: e.version for k, e in changed.items()}
        canonical_docs += self._rebuild(
            resolver, touched, canon, members, scores, outcome, fresh=fresh
        )
        externals = []
        for key, event in changed.items():
            doc = event.to_document()
            doc["_id"] = key
            doc["start_utc"] = event.start_utc
            doc[ADDON] = profiles[key].addon
            externals.append(doc)
        # Categories are stored before the records that name them: a replay after a crash
        # finds a stored record unchanged and would not write its categories again.
        categories = self._unseen([c for e in changed.values() for c in provider_category_docs(e)])
        clock.lap("rebuild")
        outcome.written += len(externals)
        outcome.merged += len(resolver.merged)
        outcome.split += len(resolver.split_from)
        return WriteStep(
            externals=externals,
            canonicals=canonical_docs,
            existing={*canon, *(k for k, e in changed.items() if e.version > 1)},
            revs=_revs(canonical_docs, canon),
            relinks=relinks,
            categories=categories,
            relinked=[{**others[k], "canonical_id": cid} for k, cid in relinks.items()],
            changes=outcome.changes[mark:],
        )

    def _rebuild(
        self,
        resolver: Resolver,
        touched: Iterable[str],
        canon: dict[str, Document],
        members: dict[str, ExternalEvent],
        scores: dict[str, float],
        outcome: Outcome,
        *,
        fresh: Mapping[str, int] | None = None,
    ) -> list[Document]:
        """Each touched canonical event merged again from all its members.

        ``fresh`` holds the per-source records this batch rewrites (key: new version): an
        event with such a member is announced even when its own fields stay the same.
        """
        docs = []
        now = utc_now()
        for cid in sorted(touched):
            cluster = resolver.clusters[cid]
            present = [members[k] for k in sorted(cluster.members) if k in members]
            if not present:
                continue
            before = canon.get(cid)
            # Match scores of members not re-scored now stay as they were.
            known = {
                f"{s['source']}:{s['external_id']}": s["match_score"]
                for s in (before or {}).get("sources", [])
                if s.get("match_score") is not None
            }
            merged = merge(cid, present, known | scores)
            _keep_import(merged, [canon.get(x) for x in (cid, *_losers(resolver, cid))])
            versions = {f"{m.source.value}:{m.external_id}": m.version for m in present}
            rebuilt = self._rebuilt(
                merged, before, cluster.members.values(), versions, fresh or {}, now, outcome
            )
            if rebuilt is None:
                continue
            docs.append(rebuilt)
            split = resolver.split_from.get(cid)
            last = outcome.changes[-1] if outcome.changes else None
            if split is not None and last is not None and last.canonical_id == cid:
                last.split_from = _final(resolver, split)
        return docs

    async def _rejoin(self, keys: set[str], outcome: Outcome) -> WriteStep:
        """Merge again the events whose performers just got their Spotify artist."""
        stored = await self.store.by_ids(EXTERNAL_EVENTS, sorted(keys), ("canonical_id",))
        cids = {str(d["canonical_id"]) for d in stored.values() if d.get("canonical_id")}
        canon = await self._candidates((), cids)
        resolver = Resolver()
        for cid, doc in canon.items():
            if not doc.get("duplicate_of"):
                resolver.load(cid, [profile_of(m) for m in doc.get("members", [])])
        touched = {str(_survivor(canon, c)) for c in cids} & set(resolver.clusters)
        member_keys = sorted({k for cid in touched for k in resolver.clusters[cid].members})
        found = await self.store.by_ids(EXTERNAL_EVENTS, member_keys)
        members = {k: ExternalEvent.model_validate(d) for k, d in found.items()}
        members = await self._with_artists(members)
        mark = len(outcome.changes)
        docs = self._rebuild(resolver, touched, canon, members, {}, outcome)
        outcome.rejoined += len(outcome.changes) - mark
        return WriteStep(
            canonicals=docs,
            existing=set(canon),
            revs=_revs(docs, canon),
            changes=outcome.changes[mark:],
        )

    def _rebuilt(
        self,
        merged: CanonicalEvent,
        before: Document | None,
        cluster: Iterable[Profile],
        versions: Mapping[str, int],
        fresh: Mapping[str, int],
        now: datetime,
        outcome: Outcome,
    ) -> Document | None:
        """The document to store for a rebuilt event (None: unchanged), its change noted.

        A member rewritten with new content is news even when the event's own fields stay the
        same (a title edit of a source whose title does not lead): the event is announced as
        ``updated`` with its version bumped, so readers of that member learn of it. The stored
        members keep the version each was merged at; a replay after a crash between this
        write and the member's own finds that version already there, and announces nothing.
        """
        digest = content_hash(merged)
        profiles = list(cluster)
        members = [profile_doc(p, versions.get(p.key)) for p in profiles]
        blocks = blocks_of(profiles)
        if before is not None and before.get("content_hash") == digest:
            known = {m.get("key"): m.get("version") for m in before.get("members", [])}
            moved = any(known.get(k) != v for k, v in fresh.items() if k in versions)
            if not moved:
                # Same catalogue entry: keep the stored one, but record new members.
                if len(known) == len(members) and before.get("blocks") == blocks:
                    return None
                merged.version = int(before.get("version", 1))
                merged.created_at = before.get("created_at", now)
                return {
                    **merged.to_document(),
                    "content_hash": digest,
                    "members": members,
                    "blocks": blocks,
                    ADDON: _addon(profiles),
                    REV: _next_rev(before),
                }
        merged.version = int(before.get("version", 0)) + 1 if before else 1
        merged.created_at = before.get("created_at", now) if before else now
        merged.updated_at = now
        op = ChangeOp.CREATED if before is None else ChangeOp.UPDATED
        if merged.status is EventStatus.CANCELLED and (
            before is None or before.get("status") != EventStatus.CANCELLED.value
        ):
            op = ChangeOp.CANCELLED
        outcome.changes.append(
            CanonicalChange(op=op, canonical_id=merged.id, version=merged.version, event=merged)
        )
        outcome.sources[(merged.id, merged.version)] = dict(versions)
        doc = merged.to_document()
        doc["content_hash"] = digest
        doc["members"] = members
        doc["blocks"] = blocks
        doc[ADDON] = _addon(profiles)
        doc[REV] = _next_rev(before)
        return doc

    async def _merged_away(
        self, resolver: Resolver, canon: dict[str, Document], outcome: Outcome
    ) -> list[Document]:
        """Stored events merged into another: kept, emptied, pointing at the survivor."""
        stored = [loser for loser in resolver.merged if loser in canon]
        if not stored:
            return []
        full = await self.store.by_ids(EVENTS, stored)
        docs = []
        now = utc_now()
        for loser, doc in sorted(full.items()):
            survivor = _final(resolver, loser)
            event = CanonicalEvent.model_validate(doc)
            event.duplicate_of = survivor
            event.version = int(doc.get("version") or 1) + 1
            event.updated_at = now
            outcome.changes.append(
                CanonicalChange(
                    op=ChangeOp.MERGED,
                    canonical_id=loser,
                    version=event.version,
                    event=event,
                    merged_into=survivor,
                )
            )
            stored_doc = event.to_document()
            stored_doc["content_hash"] = content_hash(event)
            stored_doc["members"] = []
            stored_doc["blocks"] = []  # found through its survivor only
            stored_doc[REV] = _next_rev(canon[loser])
            docs.append(stored_doc)
        return docs


def _addon(members: Sequence[Profile]) -> bool:
    """An event is an add-on when its members are (the resolver never mixes the two)."""
    return bool(members) and all(p.addon for p in members)


def _next_rev(before: Document | None) -> int:
    return int((before or {}).get(REV) or 0) + 1


def _revs(docs: Iterable[Document], canon: Mapping[str, Document]) -> dict[str, int | None]:
    """The revision each stored event was read at: its rewrite's guard."""
    return {d["_id"]: canon[d["_id"]].get(REV) for d in docs if d["_id"] in canon}


def _survivor(canon: dict[str, Document], cid: str | None) -> str | None:
    """The event a stored id stands for now: itself, or where merges took it."""
    for _ in range(MAX_MERGE_HOPS):
        doc = canon.get(cid) if cid else None
        if doc is None or not doc.get("duplicate_of"):
            return cid
        cid = str(doc["duplicate_of"])
    return cid


def _final(resolver: Resolver, cid: str) -> str:
    return resolver.merged.get(cid, cid)


def _losers(resolver: Resolver, survivor: str) -> list[str]:
    return [loser for loser, into in resolver.merged.items() if into == survivor]


def _keep_import(merged: CanonicalEvent, stored: Sequence[Document | None]) -> None:
    """The importer's marks survive a rebuild (and a merge: any imported source counts)."""
    for doc in stored:
        if doc is not None and doc.get("is_imported"):
            merged.is_imported = True
            merged.imported_event = merged.imported_event or doc.get("imported_event")


def _replace(doc: Document) -> ReplaceOne[Document]:
    return ReplaceOne({"_id": doc["_id"]}, doc, upsert=True)


def _short(err: Exception) -> str:
    return str(err).replace("\n", " ")[:500]
