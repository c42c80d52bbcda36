"""On-demand detail (API → ingest.requests → reply → store) and the reply waiter, with fakes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from services.api.ondemand import DetailFetcher
from services.api.replies import Replies
from shared.contracts import Contract, IngestJob, IngestReply, JobKind, JobStatus


def external(key: str, title: str) -> dict[str, Any]:
    """A per-source record as the normalizer stores it (the fields this test reads)."""
    source, external_id = key.split(":", 1)
    return {
        "_id": key,
        "source": source,
        "external_id": external_id,
        "title": title,
        "start": {"utc": datetime.now(UTC) + timedelta(days=3), "timezone": "UTC"},
        "version": 1,
    }


class Store:
    """The one Store read the fetcher makes (``external``), over a dict."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.reads = 0

    async def external(self, key: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.docs.get(key)


class Ingestor:
    """Answers detail jobs; ``known`` ids are 'fetched' and land in the store a bit later."""

    def __init__(self, replies: Replies[IngestReply], store: Store, known: set[str]) -> None:
        self.replies = replies
        self.store = store
        self.known = known
        self.jobs: list[IngestJob] = []
        self.stored: list[str] = []

    async def send(self, topic: str, key: bytes, message: Contract) -> None:
        assert isinstance(message, IngestJob)
        assert topic == "ingest.requests"
        assert key == message.job_id.encode()
        self.jobs.append(message)
        external_id = str(message.params["external_id"])
        found = external_id in self.known
        reply = IngestReply(
            job_id=message.job_id,
            status=JobStatus.DONE,
            records=int(found),
            external_ids=[external_id] if found else [],
        )

        async def later() -> None:
            await asyncio.sleep(0.05)
            await self.replies._dispatch(reply.to_json_bytes())
            if found:
                await asyncio.sleep(0.3)  # the normalizer's turn
                key = f"{message.provider.value}:{external_id}"
                self.store.docs[key] = external(key, "Fetched on demand")
                self.stored.append(key)

        asyncio.get_running_loop().create_task(later())


def fetcher(known: set[str]) -> tuple[DetailFetcher, Ingestor, Store]:
    store = Store()
    replies: Replies[IngestReply] = Replies(
        None,  # type: ignore[arg-type]  # never run: answers are dispatched by hand
        "api.replies",
        IngestReply,
        lambda r: r.job_id,
    )
    ingestor = Ingestor(replies, store, known)
    fetch = DetailFetcher(
        store,  # type: ignore[arg-type]
        replies,
        ingestor.send,
        topic="ingest.requests",
        reply_topic="api.replies",
        fetch_wait_s=2,
        store_wait_s=2,
        not_found_ttl_s=60,
    )
    return fetch, ingestor, store


async def test_a_fetched_record_is_waited_for_in_the_store() -> None:
    fetch, ingestor, store = fetcher({"G5v"})
    doc = await fetch.fetch("ticketmaster", "G5v")
    assert doc is not None
    assert doc["title"] == "Fetched on demand"
    job = ingestor.jobs[0]
    assert (job.kind, job.provider.value, job.params, job.reply_to) == (
        JobKind.DETAIL,
        "ticketmaster",
        {"external_id": "G5v"},
        "api.replies",
    )
    assert fetch.jobs_sent == 1
    # The reply came before the record was stored: the fetcher polled the store until it was
    # there, and what it returned is the stored document itself.
    assert ingestor.stored == ["ticketmaster:G5v"]
    assert store.reads > 1
    assert doc is store.docs["ticketmaster:G5v"]
    # Found, so not remembered as missing: the record is in the store for the next reader.
    assert await store.external("ticketmaster:G5v") is doc


async def test_a_record_that_never_reaches_the_store_is_a_miss() -> None:
    fetch, ingestor, store = fetcher({"G5v"})
    fetch.store_wait_s = 0.1  # the normalizer takes longer than the fetcher waits
    assert await fetch.fetch("ticketmaster", "G5v") is None
    assert len(ingestor.jobs) == 1
    assert store.reads >= 1
    assert await fetch.fetch("ticketmaster", "G5v") is None
    assert len(ingestor.jobs) == 1  # remembered for not_found_ttl_s


async def test_concurrent_asks_share_one_job_and_a_miss_is_remembered() -> None:
    fetch, ingestor, store = fetcher(set())
    found = await asyncio.gather(*(fetch.fetch("seatgeek", "404") for _ in range(5)))
    assert found == [None] * 5
    assert len(ingestor.jobs) == 1
    assert store.reads == 0  # the provider found nothing: the store is not searched
    assert await fetch.fetch("seatgeek", "404") is None
    assert len(ingestor.jobs) == 1  # remembered: the provider is not asked again
    assert await fetch.fetch("spotify", "artist") is None  # not an event provider
    assert await fetch.fetch("myspace", "1") is None
    assert len(ingestor.jobs) == 1


async def test_a_waiter_times_out_and_forgets() -> None:
    replies: Replies[IngestReply] = Replies(
        None,  # type: ignore[arg-type]
        "api.replies",
        IngestReply,
        lambda r: r.job_id,
    )
    future = replies.expect("j1")
    assert await replies.wait(future, "j1", 0.05) is None
    # A late answer for a forgotten request is dropped without error.
    await replies._dispatch(IngestReply(job_id="j1", status=JobStatus.DONE).to_json_bytes())
    await replies._dispatch(b"not json")
    future = replies.expect("j2")
    await replies._dispatch(IngestReply(job_id="j2", status=JobStatus.FAILED).to_json_bytes())
    answer = await replies.wait(future, "j2", 1)
    assert answer is not None
    assert answer.status is JobStatus.FAILED
