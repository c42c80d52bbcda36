"""Request/reply over Kafka: wait a short while for the answer that names our request id.

Every replica reads every partition of the reply topic from its end at start (no group, no
commit): answers are few, and a replica only wakes the requests it is waiting on. The future is
registered *before* the request is sent, so a fast answer is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from shared.contracts import Contract
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)


def reader(kafka: KafkaSettings) -> AIOKafkaConsumer[bytes, bytes]:
    """A group-less consumer: partitions are assigned by hand and nothing is committed."""
    return AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=f"{kafka.client_id}-api",
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=kafka.request_timeout_ms,
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


T = TypeVar("T", bound=Contract)


class Replies(Generic[T]):
    """Answers of type ``T`` on ``topic``, matched to waiters by ``id_of(answer)``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        model: type[T],
        id_of: Callable[[T], str],
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.model = model
        self.id_of = id_of
        self._waiting: dict[str, asyncio.Future[T]] = {}
        self.started = asyncio.Event()

    def expect(self, request_id: str) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def ask(
        self, request_id: str, send: Callable[[], Awaitable[object]], timeout_s: float
    ) -> T | None:
        """Send a request and wait up to ``timeout_s`` for its answer (None: not yet).

        The waiter is registered before ``send`` runs; an error of ``send`` propagates."""
        future = self.expect(request_id)
        try:
            await send()
        except BaseException:
            self.forget(request_id)
            raise
        return await self.wait(future, request_id, timeout_s)

    async def wait(self, future: asyncio.Future[T], request_id: str, timeout_s: float) -> T | None:
        """The answer, or None after ``timeout_s``."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return None
        finally:
            self.forget(request_id)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            consumer = reader(self.kafka)
            try:
                await consumer.start()
                parts = await partitions_of(consumer, self.topic)
                consumer.assign(parts)
                await consumer.seek_to_end(*parts)
                for tp in parts:
                    await consumer.position(tp)  # resolve "end" now, before anyone waits
                self.started.set()
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    for records in batches.values():
                        for record in records:
                            await self._dispatch(record.value or b"")
                    delay = 0.5
            except (KafkaError, RuntimeError) as err:
                log.warning("%s replies: %s; retrying in %.1fs", self.topic, err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
            finally:
                with contextlib.suppress(KafkaError):
                    await consumer.stop()

    async def _dispatch(self, value: bytes) -> None:
        try:
            answer = self.model.model_validate_json(value)
        except ValidationError as err:
            log.warning("unreadable answer on %s: %s", self.topic, err)
            return
        future = self._waiting.get(self.id_of(answer))
        if future is not None and not future.done():
            future.set_result(answer)
