"""The long-running ingestor: a leader-only scheduler and a consumer of on-demand jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.ingestor.jobs import Resources, open_resources, run_job, run_sync
from services.ingestor.store import StoreUnavailable
from services.ingestor.wiring import IngestorMetrics, configured_queries
from shared.cloudevents import ce_headers
from shared.contracts import IngestJob, new_id
from shared.kafka import make_consumer, make_producer
from shared.metrics import ServiceMetrics
from shared.mongo import LEASES, Document
from shared.service import serve
from shared.settings import IngestorSettings, load

log = logging.getLogger(__name__)


class SlotLease:
    """Leadership by time slot: whoever inserts ``{name}:{slot}`` first leads for that slot.

    The lease is insert-only: an insert with a unique ``_id`` either wins or fails with a
    duplicate key, with no read-modify-write to race on. Old slots expire through a TTL index
    on ``expires_at`` (``shared.mongo.INDEXES``). The holder claims the next slot early
    (``renew_ahead``) and keeps it while it lives; if it dies, another replica wins the next
    slot. Replicas never both lead a slot.
    """

    def __init__(
        self,
        collection: AsyncCollection[Document],
        name: str,
        *,
        slot_s: float = 60.0,
        renew_ahead: float = 0.3,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.collection = collection
        self.name = name
        self.slot_s = slot_s
        self.renew_ahead = renew_ahead
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{new_id()[:6]}"
        self.clock = clock

    def slot(self, at: float | None = None) -> int:
        return int((self.clock() if at is None else at) // self.slot_s)

    async def _claim(self, slot: int) -> bool:
        key = f"{self.name}:{slot}"
        now = datetime.now(UTC)
        # Kept well past its slot (for who-led-when questions), then expired by the TTL index.
        expires = now + timedelta(seconds=max(self.slot_s * 10, 86_400))
        try:
            await self.collection.insert_one(
                {"_id": key, "holder": self.holder, "at": now, "expires_at": expires}
            )
            return True
        except DuplicateKeyError:
            found = await self.collection.find_one({"_id": key})
            return found is not None and found.get("holder") == self.holder

    async def is_leader(self) -> bool:
        """Whether this replica leads now; claims the next slot early while it does."""
        now = self.clock()
        current = self.slot(now)
        leading = await self._claim(current)
        into = (now % self.slot_s) / self.slot_s
        if leading and into >= 1 - self.renew_ahead:
            await self._claim(current + 1)
        if leading and current % 100 == 0:
            with contextlib.suppress(PyMongoError):
                stale = [f"{self.name}:{s}" for s in range(current - 200, current - 1)]
                await self.collection.delete_many({"_id": {"$in": stale}})
        return leading


async def last_sync(collection: AsyncCollection[Document]) -> datetime | None:
    found = await collection.find_one({"_id": "ingestor:last-scheduled-sync"})
    at = found.get("at") if found else None
    return at if isinstance(at, datetime) else None


async def mark_synced(collection: AsyncCollection[Document], at: datetime) -> None:
    await collection.replace_one(
        {"_id": "ingestor:last-scheduled-sync"},
        {"_id": "ingestor:last-scheduled-sync", "at": at},
        upsert=True,
    )


async def scheduler(
    settings: IngestorSettings,
    resources: Resources,
    metrics: IngestorMetrics,
    stop: asyncio.Event,
    *,
    tick_s: float = 30.0,
) -> None:
    """Every tick: if leader and the interval has passed, sync the default queries."""
    lease = SlotLease(resources.db[LEASES], "ingestor-scheduler", slot_s=max(tick_s * 2, 10.0))
    interval = timedelta(hours=settings.sync_interval_hours)
    queries = configured_queries(settings)
    while not stop.is_set():
        try:
            if await lease.is_leader():
                previous = await last_sync(resources.db[LEASES])
                now = datetime.now(UTC)
                if previous is None or now - previous >= interval:
                    log.info("scheduled sync starting (%d queries)", len(queries))
                    reports = await run_sync(
                        settings,
                        resources,
                        queries,
                        job_id=f"scheduled-{new_id()[:12]}",
                        observers=[metrics.observe],
                    )
                    for report in reports:
                        metrics.count(report)
                        log.info(report.line())
                    await mark_synced(resources.db[LEASES], now)
        except (PyMongoError, OSError) as err:
            # A store hiccup must not kill the scheduler: log it, try again next tick.
            log.warning("scheduler tick failed: %s", err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_s)


def redelivery_backoff(
    outages: int,
    *,
    base_s: float = 1.0,
    cap_s: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Wait before a job left by a store outage runs again: equal jitter, exponential, capped."""
    ceiling = min(cap_s, base_s * 2.0 ** (outages - 1))
    return ceiling / 2 + rand() * ceiling / 2


async def job_consumer(
    settings: IngestorSettings,
    resources: Resources,
    metrics: IngestorMetrics,
    stop: asyncio.Event,
) -> None:
    """On-demand jobs from ``ingest.requests``; replies go to the job's ``reply_to`` topic.

    A job is committed once its records and its reply are on the broker. A store outage that
    outlasts a store call's retries leaves the job uncommitted: the consumer rewinds to it and
    runs it again after a backoff (windows checkpointed before the outage are skipped as
    fresh; records published twice are idempotent downstream). It is never answered ``failed``.
    """
    consumer = make_consumer(settings.kafka, settings.requests_topic, group_id=settings.group_id)
    producer: AIOKafkaProducer[bytes, bytes] = make_producer(settings.kafka)
    await consumer.start()
    await producer.start()
    outages = 0  # store outages in a row that left a job for redelivery
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=1000, max_records=10)
            left: str | None = None  # the job left uncommitted, if the store went away
            for tp, records in batches.items():
                for record in records:
                    if left is not None:
                        # Fetched but not run: rewind so the next fetch returns it again.
                        consumer.seek(tp, record.offset)
                        break
                    try:
                        job = IngestJob.model_validate_json(record.value or b"")
                    except ValueError as err:
                        log.error("unreadable ingest job at offset %d: %s", record.offset, err)
                        continue
                    try:
                        reply = await run_job(settings, resources, job, observers=[metrics.observe])
                    except StoreUnavailable as err:
                        # Not the job's fault: leave it uncommitted and read it again, as a
                        # redelivery (a replica that takes the partition over does the same).
                        consumer.seek(tp, record.offset)
                        left = job.job_id
                        log.warning("job %s left uncommitted: %s", job.job_id, err)
                        break
                    outages = 0
                    log.info("job %s %s: %s records", job.job_id, reply.status, reply.records)
                    metrics.records.labels(job.provider.value).inc(reply.records)
                    if job.reply_to:
                        await producer.send_and_wait(
                            job.reply_to,
                            reply.to_json_bytes(),
                            key=job.job_id.encode(),
                            headers=ce_headers(reply, "/ingestor"),
                        )
                    # Commit after the records and the reply are on the broker.
                    await consumer.commit({tp: record.offset + 1})
            if left is not None:
                outages += 1
                delay = redelivery_backoff(outages)
                log.warning(
                    "store unavailable (outage %d in a row): job %s runs again in %.1fs",
                    outages,
                    left,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
    finally:
        await consumer.stop()
        await producer.stop()


def run(settings: IngestorSettings | None = None) -> int:
    """Serve health and metrics, run the scheduler (if enabled) and the job consumer."""
    from shared.logs import configure_logging

    settings = settings or load(IngestorSettings)
    configure_logging("ingestor", settings.log_level)
    base = ServiceMetrics("ingestor")
    metrics = IngestorMetrics(base)

    async def work(stop: asyncio.Event) -> None:
        async with open_resources(settings) as resources:
            tasks: list[asyncio.Task[object]] = [
                asyncio.create_task(job_consumer(settings, resources, metrics, stop))
            ]
            if settings.enable_auto_sync:
                tasks.append(asyncio.create_task(scheduler(settings, resources, metrics, stop)))
            base.up.set(1)
            waiter: asyncio.Task[object] = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error

    asyncio.run(serve("ingestor", settings, base, work))
    return 0
