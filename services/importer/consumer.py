"""The consumer loop every importer process runs, and the Kafka sinks it writes to.

Batches come from ``getmany`` across partitions; a batch is handled whole, transient store and
broker errors are waited out *inside* the loop (with backoff), and offsets are committed only
after the handler returned, i.e. after its writes are durable and its messages acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from pymongo.errors import ConnectionFailure

from services.importer.notifier import DeadLetter, Stopping
from shared.cloudevents import ce_headers
from shared.contracts import ImportResult, Notification

log = logging.getLogger(__name__)


Handler = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]

# Worth waiting out: the store or the broker restarting, a failover, a network blip
# (ConnectionFailure covers AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError).
TRANSIENT: tuple[type[BaseException], ...] = (ConnectionFailure, KafkaError)


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep unless stopped; True when the service is stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def retrying(call: Callable[[], Awaitable[Any]], stop: asyncio.Event, what: str) -> bool:
    """Run ``call`` until it succeeds; False if the service stopped first (nothing committed)."""
    delay = 0.5
    while True:
        try:
            await call()
            return True
        except Stopping:
            return False
        except TRANSIENT as err:
            log.warning("%s: store or broker unavailable, retrying in %.1fs: %s", what, delay, err)
            if await pause(stop, delay):
                return False
            delay = min(delay * 2, 10.0)


async def run_loop(
    consumer: AIOKafkaConsumer[bytes, bytes],
    handle: Handler,
    *,
    stop: asyncio.Event,
    name: str,
    max_records: int,
    timeout_ms: int,
) -> None:
    while not stop.is_set():
        try:
            batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as err:
            log.warning("%s: fetch failed, retrying: %s", name, err)
            await pause(stop, 1.0)
            continue
        records = [r for part in batches.values() for r in part]
        if not records:
            continue
        if not await retrying(functools.partial(handle, records), stop, name):
            return  # stopping: the batch stays uncommitted and is redelivered
        offsets = {tp: part[-1].offset + 1 for tp, part in batches.items() if part}
        try:
            await consumer.commit(offsets)
        except KafkaError as err:
            # A rebalance took the partitions away: the new owner gets the batch again, and
            # every handler here is idempotent, so that costs time, not correctness.
            log.warning("%s: commit refused (%s); the batch will be redelivered", name, err)


class Sinks:
    """Results, notifications and dead letters to Kafka (acks=all, idempotent producer)."""

    def __init__(
        self,
        producer: AIOKafkaProducer[bytes, bytes],
        *,
        results_topic: str = "import.results",
        notifications_topic: str = "notifications",
        dlq_topic: str = "notifications.dlq",
        source_topic: str = "notifications",
    ) -> None:
        self.producer = producer
        self.results_topic = results_topic
        self.notifications_topic = notifications_topic
        self.dlq_topic = dlq_topic
        self.source_topic = source_topic

    async def emit(self, results: Sequence[ImportResult], notes: Sequence[Notification]) -> None:
        pending = []
        for result in results:
            pending.append(
                await self.producer.send(
                    self.results_topic,
                    result.to_json_bytes(),
                    key=result.request_id.encode(),
                    headers=ce_headers(result, "/importer", event_id=result.request_id),
                )
            )
        pending += await self._notes(notes)
        await asyncio.gather(*pending)

    async def notifications(self, notes: Sequence[Notification]) -> None:
        await asyncio.gather(*await self._notes(notes))

    async def _notes(self, notes: Sequence[Notification]) -> list[Any]:
        return [
            await self.producer.send(
                self.notifications_topic,
                note.to_json_bytes(),
                key=note.user_id.encode(),
                headers=ce_headers(note, "/importer", event_id=note.notification_id),
            )
            for note in notes
        ]

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        pending = []
        for letter in letters:
            record = letter.record
            headers = [
                ("dlq_error_class", letter.error.encode()),
                ("dlq_error_message", letter.reason.encode()[:1000]),
                ("dlq_attempt", str(letter.attempts).encode()),
                ("dlq_source_topic", self.source_topic.encode()),
                ("dlq_source_partition", str(record.partition).encode()),
                ("dlq_source_offset", str(record.offset).encode()),
            ]
            pending.append(
                await self.producer.send(
                    self.dlq_topic, record.value, key=record.key, headers=headers
                )
            )
        await asyncio.gather(*pending)
