"""Kafka helpers: producer and consumer factories, topic bootstrap, commit-after-write batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.contracts.topics import TOPICS, Topic
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

Handler = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Every producer waits for all in-sync replicas and is idempotent (no duplicates on retry)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "request_timeout_ms": settings.request_timeout_ms,
        "compression_type": settings.compression_type,
    }
    config.update(overrides)
    if config["acks"] != "all" or not config["enable_idempotence"]:
        raise ValueError("Marquee producers use acks=all with idempotence (DESIGN.md)")
    return config


def make_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer[bytes, bytes]:
    return AIOKafkaProducer(**producer_config(settings, **overrides))


def consumer_config(settings: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Offsets are committed by the caller after its writes are durable, never automatically."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "request_timeout_ms": settings.request_timeout_ms,
    }
    config.update(overrides)
    if config["enable_auto_commit"]:
        raise ValueError("Marquee consumers commit manually after a durable write (DESIGN.md)")
    return config


def make_consumer(
    settings: KafkaSettings, *topics: str, group_id: str, **overrides: Any
) -> AIOKafkaConsumer[bytes, bytes]:
    return AIOKafkaConsumer(*topics, **consumer_config(settings, group_id, **overrides))


def new_topic(topic: Topic, settings: KafkaSettings) -> NewTopic:
    configs = {"cleanup.policy": "compact"} if topic.compacted else {}
    return NewTopic(
        name=topic.name,
        num_partitions=settings.topic_partitions,
        replication_factor=settings.replication_factor,
        topic_configs=configs,
    )


async def ensure_topics(settings: KafkaSettings, topics: Iterable[Topic] = TOPICS) -> list[str]:
    """Create the topics that do not exist yet; returns the names created (idempotent)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [new_topic(t, settings) for t in topics if t.name not in existing]
        if not wanted:
            return []
        try:
            await admin.create_topics(wanted)
        except TopicAlreadyExistsError:
            # Another replica created some of them between list and create: that is fine.
            log.info("topics created concurrently by another process")
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def consume_batches(
    consumer: AIOKafkaConsumer[bytes, bytes],
    handle: Handler,
    *,
    stop: asyncio.Event,
    max_records: int = 500,
    timeout_ms: int = 500,
) -> int:
    """Fetch batches, hand each partition's records to ``handle``, then commit them.

    The commit follows ``handle`` returning, so offsets only move past records whose writes
    are durable. If ``handle`` raises, nothing of that batch is committed and the error
    propagates: a restarted consumer gets the records again (at-least-once).
    Returns the number of records handled.
    """
    handled = 0
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        for tp, records in batches.items():
            if not records:
                continue
            await handle(records)
            await consumer.commit({tp: records[-1].offset + 1})
            handled += len(records)
    return handled


async def committed_offsets(
    consumer: AIOKafkaConsumer[bytes, bytes], partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int | None]:
    return {tp: await consumer.committed(tp) for tp in partitions}


class _EndsAtStart(ConsumerRebalanceListener):  # type: ignore[misc]
    """Where each assigned partition ended when the replay began: a record that fails again and
    lands back in the dead-letter topic waits for the next replay instead of cycling forever."""

    def __init__(self, consumer: AIOKafkaConsumer[bytes, bytes]) -> None:
        self.consumer = consumer
        self.ends: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        missing = [tp for tp in assigned if tp not in self.ends]
        if missing:
            self.ends.update(await self.consumer.end_offsets(missing))


async def replay_dead_letters(
    settings: KafkaSettings,
    *,
    dlq_topic: str,
    target_topic: str,
    group_id: str,
    limit: int | None = None,
    assign_timeout_s: float = 60.0,
) -> int:
    """Re-send ``dlq_topic``'s records (same key and value) to ``target_topic``; returns the count.

    The ``dlq_*`` headers of the failure are dropped and ``dlq_replayed_from``
    (``{partition}:{offset}`` in the DLQ) is added. Consumer group ``group_id`` remembers how
    far replay got, so running it twice re-sends nothing twice; offsets are committed only after
    the re-sent records are acknowledged. At most ``limit`` records are re-sent; only records
    that were in the DLQ when the replay began are.
    """
    consumer = make_consumer(settings, group_id=group_id)
    ends = _EndsAtStart(consumer)
    consumer.subscribe([dlq_topic], listener=ends)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    sent = 0
    deadline = asyncio.get_running_loop().time() + assign_timeout_s
    try:
        while limit is None or sent < limit:
            batches = await consumer.getmany(timeout_ms=2000, max_records=500)
            for tp, records in batches.items():
                todo = [r for r in records if r.offset < ends.ends.get(tp, 0)]
                if limit is not None:
                    todo = todo[: limit - sent]
                pending = []
                for record in todo:
                    headers = [(k, v) for k, v in record.headers if not k.startswith("dlq_")]
                    headers.append(
                        ("dlq_replayed_from", f"{tp.partition}:{record.offset}".encode())
                    )
                    pending.append(
                        await producer.send(
                            target_topic, record.value, key=record.key, headers=headers
                        )
                    )
                await asyncio.gather(*pending)
                if todo:
                    await consumer.commit({tp: todo[-1].offset + 1})
                sent += len(todo)
            assigned = consumer.assignment()
            # Positions are awaited one by one: all() over a generator cannot await.
            if assigned and all(
                [await consumer.position(tp) >= ends.ends.get(tp, 0) for tp in assigned]
            ):
                break
            if not assigned and asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"no partition of {dlq_topic} was assigned in {assign_timeout_s:.0f}s"
                )
    finally:
        await consumer.stop()
        await producer.stop()
    return sent
