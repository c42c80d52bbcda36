"""The faust-streaming app: raw.events in batches → catalogue writes, events.canonical, DLQ."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pymongo.errors import ConnectionFailure

from services.normalizer.pipeline import (
    SOURCE_VERSIONS,
    CatalogueStore,
    Message,
    Normalizer,
    Outcome,
    Plan,
    Rejected,
    WriteConflict,
    sources_header,
)
from shared.cloudevents import ce_headers
from shared.contracts import CanonicalChange
from shared.health import HealthServer
from shared.kafka import make_producer
from shared.logs import configure_logging
from shared.metrics import ServiceMetrics
from shared.mongo import get_database, make_client
from shared.service import kafka_check, mongo_check
from shared.settings import NormalizerSettings, load

log = logging.getLogger(__name__)

settings = load(NormalizerSettings)
configure_logging("normalizer", settings.log_level)

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{b}" for b in settings.kafka.bootstrap_servers.split(",")],
    store="memory://",
    datadir=settings.data_dir,
    web_enabled=False,
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
    topic_partitions=settings.kafka.topic_partitions,
    # Our topics come from shared.bootstrap; faust still declares its own internal ones.
    broker_commit_every=settings.batch_size,
    # faust's 60 s default keeps a killed worker's partitions unassigned for a minute; the
    # fault suite measured recovery after kill -9 falling from ~66 s to ~17 s at 15 s.
    broker_session_timeout=15.0,
    # Records are prefetched while a batch is resolved and written; with 4 batches' worth an
    # unchanged re-sync ran at ~2,200 records/s, with 16 and 4 MB fetches at ~2,900.
    stream_buffer_maxsize=settings.batch_size * 16,
    consumer_max_fetch_size=4 * 1024**2,
)
raw_events = app.topic(
    settings.input_topic,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)

metrics = ServiceMetrics("normalizer")
records_total = metrics.counter("records_total", "raw records handled", ("result",))
changes_total = metrics.counter("changes_total", "events.canonical messages", ("op",))
batch_seconds = metrics.histogram("batch_seconds", "time to handle one batch")
per_second = metrics.gauge("records_per_second", "raw records/s of the last batch")
joins_total = metrics.counter("joins_total", "records matched into another provider's event")
merges_total = metrics.counter("merges_total", "canonical events merged into another")
splits_total = metrics.counter("splits_total", "records split off into another event")
conflicts_total = metrics.counter(
    "write_conflicts_total", "batches resolved again: another worker wrote what they read"
)
store_writes = metrics.counter(
    "store_writes_total",
    "documents written to MongoDB (kind: insert, or rewrite = replace/update)",
    ("collection", "kind"),
)
stage_seconds = metrics.counter(
    "stage_seconds_total",
    "seconds spent per stage of the batches (parse, read, map, profile, candidates, resolve, "
    "members, rebuild, rejoin; beside the next batch: emit, write, write_records), store and "
    "broker waits included",
    ("stage",),
)
lag = metrics.gauge("consumer_lag", "records behind the end of the input partition", ("partition",))


class Sinks:
    """The producer for events.canonical and the DLQ (acks=all, idempotent)."""

    def __init__(self, producer: AIOKafkaProducer[bytes, bytes]) -> None:
        self.producer = producer

    async def changes(
        self,
        changes: list[CanonicalChange],
        sources: Mapping[tuple[str, int], Mapping[str, int]],
    ) -> None:
        pending = []
        for change in changes:
            versions = sources.get((change.canonical_id, change.version))
            # Which per-source record versions the change was built from: a reader (the API)
            # re-reads those records until it holds them, rather than guessing when to look.
            extra = {SOURCE_VERSIONS: sources_header(versions)} if versions else None
            pending.append(
                await self.producer.send(
                    settings.changes_topic,
                    change.to_json_bytes(),
                    key=change.canonical_id.encode(),
                    # One id per event version: a replay re-sends the same version under the
                    # same id, so subscribers can drop it by id or by version.
                    headers=ce_headers(
                        change,
                        "/normalizer",
                        event_id=f"{change.canonical_id}:{change.version}",
                        extra=extra,
                    ),
                )
            )
        await asyncio.gather(*pending)

    async def dead_letters(self, rejected: Sequence[Rejected], attempt: int = 1) -> None:
        pending = []
        for item in rejected:
            message = item.message
            # The original headers (CloudEvents, Spotify match) travel along, so a replay
            # re-sends the record as it first came.
            headers = [(k, v) for k, v in message.headers if not k.startswith("dlq_")]
            headers += [
                ("dlq_error_class", item.error.encode()),
                ("dlq_error_message", item.reason.encode()[:1000]),
                ("dlq_source_topic", settings.input_topic.encode()),
                ("dlq_source_partition", str(message.partition).encode()),
                ("dlq_source_offset", str(message.offset).encode()),
                ("dlq_attempt", str(attempt).encode()),
            ]
            pending.append(
                await self.producer.send(
                    settings.dlq_topic, message.value, key=message.key, headers=headers
                )
            )
        await asyncio.gather(*pending)


# Errors worth waiting out: the store or the broker restarting, a failover, a network blip
# (ConnectionFailure covers AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError).
# A broker error is never the record's fault: it must not send good records to the DLQ.
TRANSIENT = (ConnectionFailure, KafkaError)


class Outage:
    """Waits that double from 0.5 s to 10 s while something the batch needs is unavailable."""

    def __init__(self) -> None:
        self.delay = 0.5

    async def wait(self, what: str, err: BaseException) -> None:
        log.warning("%s, retrying in %.1fs: %s", what, self.delay, err)
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 10.0)


async def prepared(normalizer: Normalizer, batch: list[Message]) -> Plan | None:
    """The batch resolved, store outages waited out; None when it failed for a reason of its
    own (a poison record), so that ``handle`` takes its records one by one."""
    outage = Outage()
    while True:
        try:
            return await normalizer.prepare(batch)
        except TRANSIENT as err:
            await outage.wait("store unavailable", err)
        except Exception as err:  # noqa: BLE001 - isolate the poison message, keep the stream
            log.warning("batch failed (%s); retrying its records one by one", err)
            return None


async def committed(write: Callable[[], Awaitable[None]]) -> bool:
    """Run one write of a prepared batch, outages waited out; False when it failed for good
    (the batch is then redone one by one)."""
    outage = Outage()
    while True:
        try:
            await write()
            return True
        except TRANSIENT as err:
            await outage.wait("store unavailable", err)
        except WriteConflict as err:
            log.info("%s; resolving the batch again", err)
            conflicts_total.inc()
            return False
        except Exception as err:  # noqa: BLE001 - redone record by record by the caller
            log.warning("batch write failed (%s); redoing its records one by one", err)
            return False


async def dead_letters(sinks: Sinks, rejected: list[Rejected]) -> None:
    outage = Outage()
    while rejected:
        try:
            await sinks.dead_letters(rejected)
            break
        except KafkaError as err:
            # Not acknowledged by the DLQ yet: acking the batch now would lose them.
            await outage.wait("DLQ unavailable", err)


async def handle(normalizer: Normalizer, sinks: Sinks, batch: list[Message]) -> Outcome:
    """Process a batch; transient failures are retried here, because faust acks regardless."""
    outage = Outage()
    while True:
        try:
            outcome = await normalizer.process(batch)
            break
        except TRANSIENT as err:
            await outage.wait("store unavailable", err)
        except WriteConflict as err:
            # Another worker wrote what this batch read: resolving it again reads that.
            conflicts_total.inc()
            await outage.wait("resolving the batch again", err)
        except Exception as err:  # noqa: BLE001 - isolate the poison message, keep the stream
            if len(batch) == 1:
                outcome = Outcome(rejected=[Rejected(batch[0], type(err).__name__, str(err))])
                break
            log.warning("batch failed (%s); retrying its records one by one", err)
            outcome = Outcome()
            for message in batch:
                single = await handle(normalizer, sinks, [message])
                outcome.rejected += single.rejected
                outcome.changes += single.changes
                outcome.written += single.written
                outcome.unchanged += single.unchanged
                outcome.merged += single.merged
                outcome.split += single.split
            return outcome
    await dead_letters(sinks, outcome.rejected)
    return outcome


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    # faust hands headers over as a list of pairs or as a mapping, depending on the path.
    if isinstance(raw, Mapping):
        return tuple((str(k), bytes(v)) for k, v in raw.items())
    return tuple((str(k), bytes(v)) for k, v in raw or ())


def _messages(events: Sequence[Any]) -> list[Message]:
    return [
        Message(
            e.message.value,
            e.message.key,
            e.message.partition,
            e.message.offset,
            _headers(e.message.headers),
        )
        for e in events
    ]


def _record_lag(events: Sequence[Any]) -> None:
    """Lag per partition after this batch: the partition's end minus the next offset."""
    last: dict[Any, int] = {}
    for event in events:
        last[event.message.tp] = event.message.offset
    for tp, offset in last.items():
        try:
            end = app.consumer.highwater(tp)
        except Exception as err:  # noqa: BLE001 - a metric must never stop the stream
            log.debug("no highwater for %s yet: %s", tp, err)
            continue
        if end is not None:
            lag.labels(str(tp.partition)).set(max(end - offset - 1, 0))


def _settle(normalizer: Normalizer, events: Sequence[Any], outcome: Outcome) -> None:
    """A batch is written (and its rejects dead-lettered): its offsets may be committed."""
    for event in events:
        event.ack()
    records_total.labels("written").inc(outcome.written)
    records_total.labels("unchanged").inc(outcome.unchanged)
    records_total.labels("stale").inc(outcome.stale)
    records_total.labels("dlq").inc(len(outcome.rejected))
    joins_total.inc(outcome.joined)
    merges_total.inc(outcome.merged)
    splits_total.inc(outcome.split)
    for change in outcome.changes:
        changes_total.labels(change.op.value).inc()
    store = normalizer.store
    for (collection, kind), count in store.writes.items():
        store_writes.labels(collection, kind).inc(count)
    store.writes.clear()
    for stage, seconds in normalizer.clock.seconds.items():
        stage_seconds.labels(stage).inc(seconds)
    normalizer.clock.seconds.clear()
    _record_lag(events)


@dataclass
class Writing:
    """A prepared batch being written: canonical events, then per-source records."""

    events: Sequence[Any]
    events_written: asyncio.Future[bool]
    task: asyncio.Task[bool]


async def _write_behind(
    normalizer: Normalizer,
    sinks: Sinks,
    plan: Plan,
    events: Sequence[Any],
    before: Writing | None,
    events_written: asyncio.Future[bool],
) -> bool:
    """Two lanes, each in batch order: this batch's canonical events go out while the batch
    before it writes its per-source records (two collections: the store writes them side by
    side). Nothing is written after a batch whose write failed; the loop redoes both."""
    ok = before is None or await before.events_written
    ok = ok and await committed(lambda: normalizer.commit_events(plan))
    events_written.set_result(ok)
    ok = (before is None or await before.task) and ok
    ok = ok and await committed(lambda: normalizer.commit_records(plan))
    if not ok:
        await normalizer.abandon(plan)  # the loop redoes it
        return False
    await dead_letters(sinks, plan.outcome.rejected)
    _settle(normalizer, events, plan.outcome)
    return True


@app.agent(raw_events, concurrency=1)
async def normalize(stream: AsyncIterable[Any]) -> None:
    """concurrency=1: more could commit past an unfinished batch; scale by partitions.

    Batches are written while the next one is resolved (the store's time overlaps the
    worker's CPU; see ``_write_behind``). A batch's events are acked only once it is written:
    each message holds one more reference until then, so the ack ``take_events`` gives on the
    next turn commits nothing.
    """
    producer = make_producer(settings.kafka)
    await producer.start()
    mongo = make_client(settings.mongo, appname="marquee-normalizer")
    store = CatalogueStore(get_database(mongo, settings.mongo))
    sinks = Sinks(producer)
    normalizer = Normalizer(store, sinks.changes)
    await normalizer.start()
    # Long-lived worker: the batch objects die young; freeze what start-up allocated.
    gc.collect()
    gc.freeze()
    writing: deque[Writing] = deque()
    try:
        batches = stream.take_events(settings.batch_size, within=settings.batch_wait_s)  # type: ignore[attr-defined]
        async for events in batches:
            began = time.perf_counter()
            for event in events:
                event.message.incref()
            messages = _messages(events)
            plan = await prepared(normalizer, messages)
            # At most two batches in flight; a batch redone inline waits for all of them.
            failed: list[Writing] = []
            while writing and (len(writing) >= 2 or plan is None or failed):
                oldest = writing.popleft()
                if not await oldest.task:
                    failed.append(oldest)
            if failed:
                # A write failed for good, so what later batches were resolved over is void:
                # redo them all, record by record where needed (all of it is idempotent).
                if plan is not None:
                    await normalizer.abandon(plan)
                    plan = None
                store.forget_staged()
                for batch in failed:
                    redone = await handle(normalizer, sinks, _messages(batch.events))
                    _settle(normalizer, batch.events, redone)
            if plan is None:
                _settle(normalizer, events, await handle(normalizer, sinks, messages))
            else:
                done = asyncio.get_running_loop().create_future()
                before = writing[-1] if writing else None
                task = asyncio.create_task(
                    _write_behind(normalizer, sinks, plan, events, before, done)
                )
                writing.append(Writing(events, done, task))
            took = time.perf_counter() - began
            batch_seconds.observe(took)
            per_second.set(len(events) / took if took > 0 else 0.0)
    finally:
        if writing:
            # Let the last writes land; what cannot is not acked and comes back.
            await asyncio.wait([w.task for w in writing], timeout=30)
        await producer.stop()
        await mongo.close()


@app.task  # type: ignore[untyped-decorator]
async def health() -> None:
    server = HealthServer(
        metrics, {"kafka": kafka_check(settings.kafka), "mongo": mongo_check(settings.mongo)}
    )
    port = await server.start(settings.http_host, settings.http_port)
    metrics.up.set(1)
    log.info("normalizer health on http://%s:%d/healthz", settings.http_host, port)


__all__ = ["app"]
