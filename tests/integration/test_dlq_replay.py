"""``replay_dead_letters`` on the real broker: headers, limit, resume, records added later."""

from __future__ import annotations

from shared.contracts.topics import Topic
from shared.kafka import ensure_topics, make_producer, replay_dead_letters
from shared.settings import KafkaSettings
from tests.kafka_read import read_topic

PARTITIONS = 2


async def _dead_letters(settings: KafkaSettings, topic: str, keys: range) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in keys:
            await producer.send_and_wait(
                topic,
                f"value-{i}".encode(),
                key=f"key-{i}".encode(),
                partition=i % PARTITIONS,
                headers=[
                    ("ce_id", f"id-{i}".encode()),
                    ("dlq_error_class", b"ValidationError"),
                    ("dlq_attempt", b"3"),
                ],
            )
    finally:
        await producer.stop()


async def test_replay_resends_with_clean_headers_honours_limit_and_resumes(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    dlq, target, group = f"replay.dlq.{unique}", f"replay.target.{unique}", f"replay-{unique}"
    few = kafka_settings.model_copy(update={"topic_partitions": PARTITIONS})
    await ensure_topics(few, [Topic(dlq, None, "key-N"), Topic(target, None, "key-N")])
    await _dead_letters(kafka_settings, dlq, range(10))

    async def replay(limit: int | None = None) -> int:
        return await replay_dead_letters(
            kafka_settings, dlq_topic=dlq, target_topic=target, group_id=group, limit=limit
        )

    # A limit smaller than one fetched batch still stops exactly there.
    assert await replay(limit=3) == 3
    first = await read_topic(kafka_settings, target, PARTITIONS)
    assert len(first) == 3
    for record in first:
        headers = dict(record.headers)
        assert "dlq_error_class" not in headers
        assert "dlq_attempt" not in headers
        i = int(record.key.decode().removeprefix("key-"))
        assert record.value == f"value-{i}".encode()
        assert headers["ce_id"] == f"id-{i}".encode()  # the envelope rides along untouched
        partition, offset = headers["dlq_replayed_from"].decode().split(":")
        assert (int(partition), int(offset)) == (i % PARTITIONS, i // PARTITIONS)

    # The group remembers how far it got: the rest, each record once in all.
    assert await replay() == 7
    assert await replay() == 0
    await _dead_letters(kafka_settings, dlq, range(10, 12))
    assert await replay() == 2
    everything = await read_topic(kafka_settings, target, PARTITIONS)
    assert sorted(r.key for r in everything) == sorted(f"key-{i}".encode() for i in range(12))
