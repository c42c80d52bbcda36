"""Fills the read model and keeps it fresh: canonical events from the compacted topic, per-source
records and import claims from MongoDB, then every change on ``events.canonical``.

Order at start, so that nothing is missed:

1. assign every partition of the canonical topic (no consumer group: each replica reads it all,
   commits nothing) and note the end offsets;
2. read the topic from the beginning to those offsets — it is compacted, so it holds the latest
   version of every canonical event — and apply them;
3. scan ``external_events`` and ``imports`` (one cursor each, progress logged);
4. re-read the sources of every change announced in the last ``replay_margin_s`` before the
   scan began (the normalizer announces a change *before* it writes the records);
5. mark ready and go on consuming: each change is applied at once from the message, and its
   sources are re-read by ``_id``. Where the message names the version of each source it was
   built from (header ``ce_sourceversions``), a source is re-read until the read model holds
   that version (after 0.5 s, backing off to 30 s, for up to 10 minutes); otherwise now,
   ``settle_s`` later and ten times that later.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from services.api.readmodel import Claim, ReadModel
from shared.contracts import CanonicalChange, ImportResult, ImportStatus
from shared.mongo import EXTERNAL_EVENTS, LOCAL_EVENTS, Document
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

IMPORTS = "imports"
REREAD_BATCH = 500
# The normalizer's header on events.canonical: {"source:external_id": version} of the members.
SOURCE_VERSIONS = "ce_sourceversions"
# A source announced at a version is re-read until held: the normalizer announces before it
# writes, so the first look waits a little; then the wait doubles up to a cap, and a record that
# never shows (its writer died for good) is given up on after a while.
WANT_FIRST_S = 0.5
WANT_MAX_DELAY_S = 30.0
WANT_GIVE_UP_S = 600.0


def reader(kafka: KafkaSettings) -> AIOKafkaConsumer[bytes, bytes]:
    """A group-less consumer: partitions are assigned by hand and nothing is committed."""
    return AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=f"{kafka.client_id}-api",
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=kafka.request_timeout_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


async def partitions_of(
    consumer: AIOKafkaConsumer[bytes, bytes], topic: str
) -> list[TopicPartition]:
    for _ in range(50):
        # aiokafka refreshes metadata only for topics its client tracks; there is no public
        # call for a manually assigned topic, so track it through the client.
        await consumer._client.add_topic(topic)
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await asyncio.sleep(0.2)
    raise RuntimeError(f"topic {topic} has no partitions (does it exist?)")


class Feed:
    """The loader and the live consumer of one read model."""

    def __init__(
        self,
        model: ReadModel,
        db: AsyncDatabase[Document],
        kafka: KafkaSettings,
        topic: str,
        *,
        settle_s: float = 3.0,
        replay_margin_s: float = 120.0,
        batch_size: int = 2000,
        imports_refresh_s: float = 60.0,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.db = db
        self.kafka = kafka
        self.topic = topic
        self.settle_s = settle_s
        self.margin_s = replay_margin_s
        self.batch_size = batch_size
        self.imports_refresh_s = imports_refresh_s
        self.on_change = on_change or (lambda _n: None)
        self._due: list[tuple[float, int, tuple[str, ...]]] = []  # (when, seq, keys) re-reads
        # Sources announced at a version (and under an event) the read model does not hold yet:
        # key -> (version, canonical id, give up at (monotonic), re-reads so far).
        self._wanted: dict[str, tuple[int, str, float, int]] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self.lag = 0

    # ------------------------------------------------------------------------------ start

    async def run(self, stop: asyncio.Event) -> None:
        """Load, then follow the topic until ``stop`` is set; errors are waited out."""
        model = self.model
        model.load.state = "loading"
        consumer = reader(self.kafka)
        try:
            await consumer.start()
            parts = await partitions_of(consumer, self.topic)
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            began = time.time()
            recent = await self._bootstrap(consumer, parts, ends, began - self.margin_s)
            await self._load_externals()
            await self.reload_claims()
            self._schedule(recent, 0.0)
            # The loaded catalogue lives as long as the process: keep the collector off it.
            gc.collect()
            gc.freeze()
            model.load.state = "ready"
            model.load.ready_at = time.time()
            log.info(
                "read model ready in %.1fs: %d per-source records, %d canonical events",
                model.load.ready_at - model.load.started_at,
                model.externals.live,
                model.canonicals.live,
            )
            tasks = [
                asyncio.create_task(self._follow(consumer, parts, stop)),
                asyncio.create_task(self._rereads(stop)),
                asyncio.create_task(self._refresh_claims(stop)),
            ]
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        except Exception as err:
            model.load.state = "failed"
            model.load.error = f"{type(err).__name__}: {err}"
            log.exception("read model failed")
            raise
        finally:
            await consumer.stop()

    async def _bootstrap(
        self,
        consumer: AIOKafkaConsumer[bytes, bytes],
        parts: list[TopicPartition],
        ends: dict[TopicPartition, int],
        recent_since: float,
    ) -> set[str]:
        """The compacted topic up to ``ends``; returns the sources of recent changes."""
        recent: set[str] = set()
        pending = {tp for tp in parts if ends[tp] > 0}
        last_log = time.monotonic()
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    change = self._apply_change(record)
                    if change is not None and change.changed_at.timestamp() >= recent_since:
                        recent.update(_source_keys(change))
                        for key, version in source_versions(record.headers).items():
                            self._want(key, version, change.canonical_id)
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                log.info("read model: %d canonical events read", self.model.load.canonicals_loaded)
        return recent

    async def _load_externals(self) -> None:
        """One cursor over the whole of ``external_events``."""
        model = self.model
        started = time.monotonic()
        last_log = started
        cursor = self.db[EXTERNAL_EVENTS].find({}, batch_size=self.batch_size)
        async for doc in cursor:
            model.apply_external(doc)
            model.load.externals_loaded += 1
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                rate = model.load.externals_loaded / (last_log - started)
                log.info(
                    "read model: %d per-source records loaded (%.0f/s)",
                    model.load.externals_loaded,
                    rate,
                )
        model.externals.seal()
        model.canonicals.seal()

    async def reload_claims(self) -> None:
        claims = [Claim.of(doc) async for doc in self.db[IMPORTS].find({})]
        self.model.set_claims(claims)

    # ------------------------------------------------------------------------------ live

    def _apply_change(self, record: ConsumerRecord[bytes, bytes]) -> CanonicalChange | None:
        try:
            change = CanonicalChange.model_validate_json(record.value or b"")
        except ValidationError as err:
            log.warning("unreadable canonical change at %s: %s", record.offset, err)
            return None
        self.model.apply_canonical(change.event.model_dump(mode="json"))
        self.model.load.canonicals_loaded += 1
        self.model.load.last_change_at = change.changed_at.timestamp()
        return change

    async def _follow(
        self,
        consumer: AIOKafkaConsumer[bytes, bytes],
        parts: list[TopicPartition],
        stop: asyncio.Event,
    ) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                applied = 0
                for records in batches.values():
                    for record in records:
                        change = self._apply_change(record)
                        if change is None:
                            continue
                        applied += 1
                        versions = source_versions(record.headers)
                        for key, version in versions.items():
                            self._want(key, version, change.canonical_id)
                        self._schedule([k for k in versions if k in self._wanted], WANT_FIRST_S)
                        keys = _source_keys(change) | self._current_sources(change.canonical_id)
                        keys -= set(versions)
                        # Versions unknown (a source that left, an older normalizer): now,
                        # after the settle time, and once more much later: a batch under load
                        # may take a while to write its per-source records.
                        for after in (0.0, self.settle_s, self.settle_s * 10):
                            self._schedule(keys, after)
                if applied:
                    self.on_change(applied)
                    self._compact()
                lag = 0
                for tp in parts:
                    lag += max((consumer.highwater(tp) or 0) - await consumer.position(tp), 0)
                self.lag = lag
                delay = 0.5
            except KafkaError as err:
                log.warning("canonical feed: broker error, retrying in %.1fs: %s", delay, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    def _compact(self) -> None:
        """Drop retired slots from the postings once they are a quarter of a table (rare: the
        pause is a pass over the postings, about a second for a million records)."""
        for table in (self.model.externals, self.model.canonicals):
            if table.dead > max(50_000, table.size // 4):
                dropped = table.compact()
                log.info("read model compacted: %d retired postings dropped", dropped)

    def _current_sources(self, canonical_id: str) -> set[str]:
        table = self.model.externals
        return set(table.keys_of(table.group_slots(canonical_id)))

    def _want(self, key: str, version: int, group: str) -> None:
        if self._held(key, version, group):
            return
        known = self._wanted.get(key)
        if known is not None and known[0] > version:
            return
        self._wanted[key] = (version, group, time.monotonic() + WANT_GIVE_UP_S, 0)

    def _held(self, key: str, version: int, group: str) -> bool:
        """Held at a newer version, or at this one under this event. A merge moves a member
        to the surviving event without a new version: the same version under another event is
        not held yet (the re-read takes the move, see ``ReadModel.apply_external``)."""
        held = self.model.external_version(key)
        if held is None or held < version:
            return False
        return held > version or self.model.external_group(key) == group

    def _holds(self, key: str) -> bool:
        """Whether a wanted source is held as announced (and so not wanted now)."""
        wanted = self._wanted.get(key)
        if wanted is None:
            return False
        if self._held(key, wanted[0], wanted[1]):
            del self._wanted[key]
            return True
        return False

    def _retry_wanted(self, keys: Iterable[str]) -> None:
        """Sources just re-read that are still older than announced: look again later."""
        now = time.monotonic()
        later: dict[float, list[str]] = {}
        for key in keys:
            wanted = self._wanted.get(key)
            if wanted is None or self._holds(key):
                continue
            version, group, give_up, tries = wanted
            if now >= give_up:
                del self._wanted[key]
                log.warning("%s never reached version %d in the store; gave up", key, version)
                continue
            self._wanted[key] = (version, group, give_up, tries + 1)
            delay = min(WANT_FIRST_S * 2 ** (tries + 1), WANT_MAX_DELAY_S)
            later.setdefault(delay, []).append(key)
        for delay, due in later.items():
            self._schedule(due, delay)

    def _schedule(self, keys: Iterable[str], after_s: float) -> None:
        keys = tuple(sorted(keys))
        for i in range(0, len(keys), REREAD_BATCH):
            self._seq += 1
            heapq.heappush(
                self._due, (time.monotonic() + after_s, self._seq, keys[i : i + REREAD_BATCH])
            )
        self._wake.set()

    async def reread(self, keys: Iterable[str]) -> int:
        """Read per-source records by ``_id`` and apply the newer ones."""
        wanted = sorted(set(keys))
        applied = 0
        for i in range(0, len(wanted), REREAD_BATCH):
            part = wanted[i : i + REREAD_BATCH]
            async for doc in self.db[EXTERNAL_EVENTS].find({"_id": {"$in": part}}):
                applied += self.model.apply_external(doc)
        return applied

    async def _rereads(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            keys: set[str] = set()
            popped = False
            while self._due and self._due[0][0] <= now and len(keys) < REREAD_BATCH:
                keys.update(heapq.heappop(self._due)[2])
                popped = True
            # A source already held at its announced version needs no read.
            keys = {k for k in keys if not self._holds(k)}
            if keys:
                try:
                    await self.reread(keys)
                except PyMongoError as err:
                    log.warning("re-reading %d records failed, retrying: %s", len(keys), err)
                    self._schedule(keys, 2.0)
                    await asyncio.sleep(1)
                    continue
                self._retry_wanted(keys)
                continue
            if popped:
                continue
            self._wake.clear()
            wait = self._due[0][0] - now if self._due else 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))

    async def _refresh_claims(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.imports_refresh_s)
            if stop.is_set():
                return
            try:
                await self.reload_claims()
            except PyMongoError as err:
                log.warning("reloading import claims failed: %s", err)

    async def on_import_result(self, result: ImportResult) -> None:
        """An import decided anywhere: mark its event imported without waiting for a reload."""
        if result.status is not ImportStatus.IMPORTED or not result.local_event_id:
            return
        try:
            local = await self.db[LOCAL_EVENTS].find_one({"_id": result.local_event_id})
        except PyMongoError as err:
            log.warning("could not read local event %s: %s", result.local_event_id, err)
            return
        if local is None:
            return
        self.model.add_claim(
            Claim(
                id=str(local.get("canonical_id") or local["_id"]),
                local_event_id=str(local["_id"]),
                source=local.get("source"),
                external_id=local.get("external_event_id"),
                canonical_id=local.get("canonical_id"),
                requested_by=local.get("created_by"),
                created_at=local.get("created_at"),
                active=True,
            )
        )


def source_versions(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, int]:
    """The ``ce_sourceversions`` header: {source key: version}; empty if absent or unreadable."""
    for name, value in headers or ():
        if name != SOURCE_VERSIONS:
            continue
        try:
            found = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.warning("unreadable %s header: %r", SOURCE_VERSIONS, value[:200])
            return {}
        if not isinstance(found, dict):
            return {}
        return {
            str(k): v
            for k, v in found.items()
            if isinstance(v, int) and not isinstance(v, bool) and v >= 1
        }
    return {}


def _source_keys(change: CanonicalChange) -> set[str]:
    return {f"{s.source.value}:{s.external_id}" for s in change.event.sources}
