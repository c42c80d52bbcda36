"""Kafka smoke tests: produce with acks=all, consume with manual commit, topic bootstrap."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.cloudevents import ce_headers, parse_ce_headers
from shared.contracts import Provider, RawRecord
from shared.contracts.topics import EVENTS_CANONICAL, TOPICS
from shared.kafka import consume_batches, ensure_topics, make_consumer, make_producer
from shared.settings import KafkaSettings


async def _produce(settings: KafkaSettings, topic: str, records: list[RawRecord]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                topic,
                record.to_json_bytes(),
                key=record.key().encode(),
                headers=ce_headers(record, "/tests"),
            )
    finally:
        await producer.stop()


async def _consume_all(
    settings: KafkaSettings, topic: str, group: str, expected: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Consume with commit-after-handle until ``expected`` records arrived (or time out)."""
    seen: list[ConsumerRecord[bytes, bytes]] = []
    stop = asyncio.Event()
    consumer = make_consumer(settings, topic, group_id=group)
    await consumer.start()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        seen.extend(records)
        if len(seen) >= expected:
            stop.set()

    try:
        await asyncio.wait_for(consume_batches(consumer, handle, stop=stop), timeout=30)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return seen


def _records(n: int, start: int = 0) -> list[RawRecord]:
    return [
        RawRecord(provider=Provider.SEATGEEK, external_id=str(i), payload={"id": i, "title": "x"})
        for i in range(start, start + n)
    ]


async def test_produce_consume_commit_resume(kafka_settings: KafkaSettings, unique: str) -> None:
    topic, group = f"smoke.{unique}", f"smoke-{unique}"
    await _produce(kafka_settings, topic, _records(10))

    first = await _consume_all(kafka_settings, topic, group, expected=10)
    assert sorted(int(r.key.split(b":")[1]) for r in first if r.key) == list(range(10))
    decoded = RawRecord.model_validate_json(first[0].value or b"")
    assert decoded.provider is Provider.SEATGEEK
    envelope = parse_ce_headers(list(first[0].headers))
    assert envelope.type == "marquee.raw_record.v1"
    assert envelope.time.tzinfo is not None

    # Offsets were committed after handling: the same group resumes after them.
    await _produce(kafka_settings, topic, _records(5, start=10))
    second = await _consume_all(kafka_settings, topic, group, expected=5)
    assert sorted(int(r.key.split(b":")[1]) for r in second if r.key) == list(range(10, 15))


async def test_failed_handler_commits_nothing(kafka_settings: KafkaSettings, unique: str) -> None:
    topic, group = f"smoke.{unique}", f"smoke-{unique}"
    await _produce(kafka_settings, topic, _records(3))
    consumer = make_consumer(kafka_settings, topic, group_id=group)
    await consumer.start()

    async def fail(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise RuntimeError("store down")

    try:
        with pytest.raises(RuntimeError, match="store down"):
            await asyncio.wait_for(
                consume_batches(consumer, fail, stop=asyncio.Event()), timeout=30
            )
        assert await consumer.committed(TopicPartition(topic, 0)) is None
    finally:
        await consumer.stop()
    # Redelivered in full to the next consumer of the group.
    again = await _consume_all(kafka_settings, topic, group, expected=3)
    assert len(again) == 3


async def test_ensure_topics_idempotent_and_compacted(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    # The topic table under names of this test's own (the defaults are the demo's).
    table = [replace(t, name=f"{t.name}.{unique}") for t in TOPICS]
    canonical = f"{EVENTS_CANONICAL.name}.{unique}"
    assert sorted(await ensure_topics(kafka_settings, table)) == sorted(t.name for t in table)
    assert await ensure_topics(kafka_settings, table) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        names = set(await admin.list_topics())
        assert {t.name for t in table} <= names
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, canonical)]
        )
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
        assert configs["cleanup.policy"] == "compact"
        described = await admin.describe_topics([canonical])
        assert len(described[0]["partitions"]) == kafka_settings.topic_partitions
        await admin.delete_topics([t.name for t in table])
    finally:
        await admin.close()
