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

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from services.api.feed import partitions_of, reader
from shared.contracts import Contract
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Contract)


class Replies(Generic[T]):
    """Answers of type ``T`` on ``topic``, matched to waiters by ``id_of(answer)``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        model: type[T],
        id_of: Callable[[T], str],
        on_answer: Callable[[T], Awaitable[None]] | None = None,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.model = model
        self.id_of = id_of
        self.on_answer = on_answer
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
        if self.on_answer is not None:
            try:
                await self.on_answer(answer)
            except Exception:
                log.exception("handling an answer on %s failed", self.topic)
