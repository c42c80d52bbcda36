"""``replay-dlq``: feed dead-lettered raw records back to the normalizer after a fix."""

from __future__ import annotations

import asyncio

from aiokafka import ConsumerRebalanceListener, TopicPartition

from shared.kafka import make_consumer, make_producer
from shared.settings import NormalizerSettings


class _Ends(ConsumerRebalanceListener):  # type: ignore[misc]
    """Remembers where the DLQ ended when replay began: a record that fails again and lands
    back in the DLQ is not replayed in the same run (else a poison record cycles forever)."""

    def __init__(self) -> None:
        self.ends: dict[TopicPartition, int] = {}
        self.consumer: object = None

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        missing = [tp for tp in assigned if tp not in self.ends]
        if missing:
            self.ends.update(await self.consumer.end_offsets(missing))  # type: ignore[attr-defined]


async def replay_dlq(settings: NormalizerSettings, *, limit: int | None = None) -> int:
    """Re-send the DLQ's records (same key and value) to the input topic; returns the count.

    A consumer group of its own remembers how far replay got, so running it twice re-sends
    nothing twice; offsets are committed only after the re-sent records are acknowledged.
    """
    consumer = make_consumer(settings.kafka, group_id=f"{settings.app_id}-dlq-replay")
    ends = _Ends()
    ends.consumer = consumer
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
                pending = []
                for record in todo:
                    headers = [(k, v) for k, v in record.headers if not k.startswith("dlq_")]
                    origin = f"{tp.partition}:{record.offset}".encode()
                    headers.append(("dlq_replayed_from", origin))
                    pending.append(
                        await producer.send(
                            settings.input_topic, record.value, key=record.key, headers=headers
                        )
                    )
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
