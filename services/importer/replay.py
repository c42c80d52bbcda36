"""``notifier-replay-dlq``: feed dead-lettered notifications back once the webhook is fixed."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from shared.kafka import make_consumer, make_producer
from shared.settings import NotifierSettings


class _Ends(ConsumerRebalanceListener):  # type: ignore[misc]
    """Where the DLQ ended when the replay began: a notification that fails again and lands
    back in the DLQ waits for the next replay instead of cycling forever."""

    def __init__(self, consumer: AIOKafkaConsumer[bytes, bytes]) -> None:
        self.consumer = consumer
        self.ends: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        missing = [tp for tp in assigned if tp not in self.ends]
        if missing:
            self.ends.update(await self.consumer.end_offsets(missing))


async def replay_dlq(settings: NotifierSettings, *, limit: int | None = None) -> int:
    """Re-send the DLQ's notifications (same key and value) to the notifications topic.

    Its own consumer group remembers how far replay got; offsets are committed only after the
    re-sent records are acknowledged. Delivered ids are still dropped by the notifier, so a
    notification that made it after all is not sent twice.
    """
    consumer = make_consumer(settings.kafka, group_id=f"{settings.group_id}-dlq-replay")
    ends = _Ends(consumer)
    consumer.subscribe([settings.dlq_topic], listener=ends)
    producer = make_producer(settings.kafka)
    await consumer.start()
    await producer.start()
    sent = 0
    deadline = asyncio.get_running_loop().time() + 60
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
                            settings.notifications_topic, record.value, key=record.key,
                            headers=headers,
                        )
                    )  # fmt: skip
                await asyncio.gather(*pending)
                if todo:
                    await consumer.commit({tp: todo[-1].offset + 1})
                sent += len(todo)
            assigned = consumer.assignment()
            if assigned and all(
                [await consumer.position(tp) >= ends.ends.get(tp, 0) for tp in assigned]
            ):
                break
            if not assigned and asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"no partition of {settings.dlq_topic} was assigned in 60s")
    finally:
        await consumer.stop()
        await producer.stop()
    return sent
