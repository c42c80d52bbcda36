"""On-demand detail: ask the ingestor (``ingest.requests``, request/reply) for a record we lack."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from services.api.replies import Replies
from services.api.store import Store
from shared.contracts import Contract, IngestJob, IngestReply, JobKind, JobStatus, Provider
from shared.mongo import Document

log = logging.getLogger(__name__)

Send = Callable[[str, bytes, Contract], Awaitable[None]]  # topic, key, message
EVENT_PROVIDERS = frozenset(p.value for p in Provider if p is not Provider.SPOTIFY)


class DetailFetcher:
    """One job per missing record at a time; a miss is remembered for ``not_found_ttl_s``."""

    def __init__(
        self,
        store: Store,
        replies: Replies[IngestReply],
        send: Send,
        *,
        topic: str,
        reply_topic: str,
        fetch_wait_s: float,
        store_wait_s: float,
        not_found_ttl_s: float,
    ) -> None:
        self.store = store
        self.replies = replies
        self.send = send
        self.topic = topic
        self.reply_topic = reply_topic
        self.fetch_wait_s = fetch_wait_s
        self.store_wait_s = store_wait_s
        self.not_found_ttl_s = not_found_ttl_s
        self._missing: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[Document | None]] = {}
        self.jobs_sent = 0

    async def fetch(self, source: str, external_id: str) -> Document | None:
        if source not in EVENT_PROVIDERS or not external_id:
            return None
        key = f"{source}:{external_id}"
        until = self._missing.get(key)
        if until is not None:
            if until > time.monotonic():
                return None
            del self._missing[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(source, external_id))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        doc = await asyncio.shield(task)
        if doc is None:
            if len(self._missing) > 100_000:
                self._missing.clear()
            self._missing[key] = time.monotonic() + self.not_found_ttl_s
        return doc

    async def _fetch(self, source: str, external_id: str) -> Document | None:
        job = IngestJob(
            provider=Provider(source),
            kind=JobKind.DETAIL,
            params={"external_id": external_id},
            requested_by="api",
            reply_to=self.reply_topic,
        )

        async def send() -> None:
            await self.send(self.topic, job.job_id.encode(), job)
            self.jobs_sent += 1

        try:
            reply = await self.replies.ask(job.job_id, send, self.fetch_wait_s)
        except KafkaError as err:
            log.warning("detail job not sent: %s", err)
            return None
        if reply is None or reply.status is not JobStatus.DONE:
            return None
        if external_id not in reply.external_ids:
            return None
        # The record goes raw.events → normalizer → external_events: look for it by _id.
        key = f"{source}:{external_id}"
        deadline = time.monotonic() + self.store_wait_s
        while True:
            try:
                doc = await self.store.external(key)
            except PyMongoError as err:
                log.warning("reading %s failed: %s", key, err)
                doc = None
            if doc is not None:
                return doc
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.25)
