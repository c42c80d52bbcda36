"""Store outages and provider throttling: retried with backoff, bounded by time, never `failed`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from aiokafka.structs import TopicPartition
from pymongo.errors import AutoReconnect, OperationFailure, ServerSelectionTimeoutError

from services.ingestor import service
from services.ingestor.budget import Budget
from services.ingestor.errors import QuotaSpent
from services.ingestor.http import ApiClient, ApiKeyParam, BasicAuth, RetryPolicy
from services.ingestor.jobs import Resources, run_job
from services.ingestor.progress import ProgressManager
from services.ingestor.store import StoreRetry, StoreUnavailable
from services.ingestor.wiring import DEFAULT_QUERIES, IngestorMetrics
from shared.contracts import IngestJob, IngestReply, JobKind, JobStatus, Provider
from shared.metrics import ServiceMetrics
from shared.settings import IngestorSettings


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FlakyCollection:
    """A store double: raises ``error`` for the first ``failures`` calls, then answers."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or AutoReconnect("connection closed")
        self.calls = 0
        self.docs: dict[str, dict[str, Any]] = {}

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        self._maybe_fail()
        return self.docs.get(query["_id"])

    async def replace_one(self, query: dict[str, Any], doc: dict[str, Any], upsert: bool) -> None:
        self._maybe_fail()
        self.docs[query["_id"]] = doc


def _progress(collection: FlakyCollection, clock: FakeTime, budget_s: float) -> ProgressManager:
    retry = StoreRetry(budget_s=budget_s, sleep=clock.sleep, clock=clock, rand=lambda: 1.0)
    return ProgressManager(collection, retry=retry)  # type: ignore[arg-type]


async def test_store_calls_ride_out_a_short_outage(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeTime()
    store = FlakyCollection(failures=4)
    progress = _progress(store, clock, budget_s=60)
    with caplog.at_level(logging.WARNING):
        await progress.done(Provider.SEATGEEK, "events", "p", "hash", cursor={"ids": ["1"]})
    assert store.calls == 4 + 2  # four failures, then the read and the write
    # Exponential and capped: 0.5, 1, 2, 4 (jitter pinned to its ceiling here).
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert [f"attempt {n}" in caplog.text for n in (1, 2, 3, 4)] == [True] * 4
    saved = await progress.load(Provider.SEATGEEK, "events", "p")
    assert saved.last_call_hash == "hash"
    assert saved.cursor == {"ids": ["1"]}


async def test_store_retry_jitters_and_is_capped() -> None:
    retry = StoreRetry(base_s=0.5, cap_s=10, rand=lambda: 0.5)
    assert retry.backoff(1) == 0.25
    assert retry.backoff(10) == 5.0  # half of the 10 s cap
    assert StoreRetry(rand=lambda: 0.0).backoff(3) > 0  # never a busy loop


async def test_a_long_outage_gives_up_within_the_budget() -> None:
    clock = FakeTime()
    store = FlakyCollection(failures=10_000, error=ServerSelectionTimeoutError("no servers"))
    progress = _progress(store, clock, budget_s=30)
    with pytest.raises(StoreUnavailable, match="ServerSelectionTimeoutError"):
        await progress.load(Provider.TICKETMASTER, "events", "p")
    assert clock.now - 1000.0 <= 30
    assert store.calls > 3


async def test_non_transient_store_errors_are_not_retried() -> None:
    clock = FakeTime()
    store = FlakyCollection(failures=1, error=OperationFailure("bad query", code=2))
    with pytest.raises(OperationFailure):
        await _progress(store, clock, budget_s=30).load(Provider.SEATGEEK, "events", "p")
    assert store.calls == 1
    assert clock.sleeps == []


class NullPublisher:
    topic = "raw.events"

    async def publish(self, records: Any, **_: Any) -> int:
        return len(list(records))


class BrokenDb:
    """``db[name]`` for stats.save: the store is down for it too."""

    def __getitem__(self, name: str) -> Any:
        return self

    async def bulk_write(self, *args: Any, **kwargs: Any) -> None:
        raise AutoReconnect("down")


async def test_a_job_hit_by_a_store_outage_is_not_answered_failed() -> None:
    clock = FakeTime()
    store = FlakyCollection(failures=10_000)
    settings = IngestorSettings(MARQUEE_ENV="test")
    # Never reached (the checkpoint read fails first), but keep any call on loopback.
    settings.seatgeek.base_url = "http://127.0.0.1:9/seatgeek/2/"
    resources = Resources(
        NullPublisher(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        BrokenDb(),  # type: ignore[arg-type]
        _progress(store, clock, budget_s=20),
    )
    job = IngestJob(
        provider=Provider.SEATGEEK,
        kind=JobKind.SYNC,
        params={"queries": ["concert"], "days": 3},
        requested_by="test",
    )
    with pytest.raises(StoreUnavailable):
        await run_job(settings, resources, job)
    assert store.calls > 3  # retried with backoff before giving up
    assert 0 < clock.now - 1000.0 <= 20


class FakeRecord:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset = offset
        self.value = value


class FakeConsumer:
    """Serves one job until it is committed; records seeks and commits."""

    def __init__(self, job: IngestJob, stop: asyncio.Event) -> None:
        self.tp = TopicPartition("ingest.requests", 0)
        self.position = 5
        self.job = job
        self.stop_event = stop
        self.seeks: list[int] = []
        self.commits: list[int] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[FakeRecord]]:
        if self.commits:
            self.stop_event.set()
            return {}
        record = FakeRecord(self.position, self.job.to_json_bytes())
        self.position += 1
        return {self.tp: [record]}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets[self.tp])


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(self, topic: str, value: bytes, **_: Any) -> None:
        self.sent.append((topic, value))


async def test_the_consumer_leaves_a_job_uncommitted_and_runs_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = asyncio.Event()
    job = IngestJob(
        provider=Provider.SEATGEEK, kind=JobKind.SYNC, requested_by="t", reply_to="replies"
    )
    consumer = FakeConsumer(job, stop)
    producer = FakeProducer()
    runs: list[str] = []

    async def flaky_run_job(*args: Any, **kwargs: Any) -> IngestReply:
        runs.append(job.job_id)
        if len(runs) < 3:
            raise StoreUnavailable("store unavailable for 60s")
        return IngestReply(job_id=job.job_id, status=JobStatus.DONE, records=7)

    monkeypatch.setattr(service, "make_consumer", lambda *a, **k: consumer)
    monkeypatch.setattr(service, "make_producer", lambda *a, **k: producer)
    monkeypatch.setattr(service, "run_job", flaky_run_job)
    monkeypatch.setattr(service, "redelivery_backoff", lambda outages: 0.0)
    metrics = IngestorMetrics(ServiceMetrics("ingestor-test-resilience"))
    settings = IngestorSettings(MARQUEE_ENV="test")
    await asyncio.wait_for(
        service.job_consumer(settings, None, metrics, stop),  # type: ignore[arg-type]
        timeout=10,
    )
    assert len(runs) == 3
    assert consumer.seeks == [5, 5]  # rewound to the job twice: read again, not skipped
    assert consumer.commits == [6]  # committed once, after it was done
    assert len(producer.sent) == 1  # one answer, and not "failed"
    reply = IngestReply.model_validate_json(producer.sent[0][1])
    assert reply.status is JobStatus.DONE


def test_redelivery_backoff_grows_and_is_capped() -> None:
    waits = [service.redelivery_backoff(n, rand=lambda: 1.0) for n in (1, 2, 3, 10)]
    assert waits == [1.0, 2.0, 4.0, 30.0]
    assert service.redelivery_backoff(1, rand=lambda: 0.0) == 0.5  # jitter keeps half


# ------------------------------------------------------------------------- throttling


def _client(
    provider: Provider,
    handler: Any,
    budget: Budget,
    *,
    give_up_s: float = 600.0,
) -> ApiClient:
    auth = ApiKeyParam("k") if provider is Provider.TICKETMASTER else BasicAuth("id", "pw")
    return ApiClient(
        provider,
        "http://127.0.0.1:9/api/",
        auth,
        budget,
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(throttle_give_up_s=give_up_s),
    )


async def test_throttling_without_retry_after_is_waited_out_not_given_up() -> None:
    clock = FakeTime()
    budget = Budget(rate_per_s=0, clock=clock, sleep=clock.sleep)
    answers = [406] * 25 + [200]

    def handle(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0)
        return httpx.Response(status, json={"events": []} if status == 200 else {})

    async with _client(Provider.SEATGEEK, handle, budget) as api:
        page = await api.get("events")
    assert page.status == 200
    assert budget.throttled_total == 25
    # Exponential, jittered, capped at 30 s: each pause in [ceiling/2, ceiling].
    assert clock.sleeps, "throttled calls must be spaced, even with no configured rate"
    assert max(clock.sleeps) <= 30.0
    assert sum(clock.sleeps) > 100  # ~25 throttles in a row: backing off, not hammering
    assert budget.adaptive_rate is not None
    assert budget.adaptive_rate < 1.0


async def test_continuous_throttling_stops_by_time_with_a_resume_time() -> None:
    clock = FakeTime()
    budget = Budget(rate_per_s=0, clock=clock, sleep=clock.sleep)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(406, json={})

    async with _client(Provider.SEATGEEK, handle, budget, give_up_s=120) as api:
        with pytest.raises(QuotaSpent, match="every call throttled for") as caught:
            await api.get("events")
    assert caught.value.resume_at is not None
    assert 120 <= clock.now - 1000.0 <= 120 + 30 + 1


async def test_spike_arrest_does_not_wait_for_the_daily_quota_reset() -> None:
    clock = FakeTime()
    budget = Budget(rate_per_s=0, clock=clock, sleep=clock.sleep, quota=5000)
    spike = {"fault": {"detail": {"errorcode": "policies.ratelimit.SpikeArrestViolation"}}}
    # Ticketmaster sends the daily quota's reset on every answer, a day ahead.
    day_ahead = {"Rate-Limit-Available": "4000", "Rate-Limit-Reset": "9999999999000"}
    answers = [httpx.Response(429, json=spike, headers=day_ahead)] * 3 + [
        httpx.Response(200, json={}, headers=day_ahead)
    ]

    async with _client(Provider.TICKETMASTER, lambda r: answers.pop(0), budget) as api:
        page = await api.get("events.json")
    assert page.status == 200
    assert sum(clock.sleeps) < 10


async def test_retry_after_is_honoured_even_with_no_configured_rate() -> None:
    clock = FakeTime()
    budget = Budget(rate_per_s=0, clock=clock, sleep=clock.sleep)
    answers = [httpx.Response(429, json={}, headers={"Retry-After": "7"}), httpx.Response(200)]
    async with _client(Provider.SEATGEEK, lambda r: answers.pop(0), budget) as api:
        await api.get("events")
    assert clock.sleeps == [7.0]


async def test_aimd_halves_once_per_burst_and_recovers_to_the_configured_rate() -> None:
    clock = FakeTime()
    budget = Budget(rate_per_s=4.0, clock=clock, sleep=clock.sleep)
    budget.throttled()
    budget.throttled()  # the same burst: in flight together, counted once
    assert budget.effective_rate == 2.0
    clock.now += 1.5
    budget.throttled()
    assert budget.effective_rate == 1.0
    steps = 0
    while budget.adaptive_rate is not None:
        budget.not_throttled()
        steps += 1
    assert budget.effective_rate == 4.0
    assert 10 < steps < 100  # additive: gradual, not a jump back


async def test_with_no_configured_rate_the_first_decrease_starts_from_the_observed_rate() -> None:
    clock = FakeTime()
    budget = Budget(rate_per_s=0, clock=clock, sleep=clock.sleep)
    for _ in range(12):  # 12 calls within the last 2 s: 6 calls/s
        await budget.acquire()
        clock.now += 0.1
    budget.throttled()
    assert budget.effective_rate == pytest.approx(3.0)
    before = clock.now
    await budget.acquire()
    await budget.acquire()
    assert clock.now - before == pytest.approx(1 / 3.0)  # paced now


# ------------------------------------------------------------------------ queries, settings


def test_default_queries_partition_each_provider() -> None:
    by = {
        p: [q.params for q in DEFAULT_QUERIES if q.provider is p]
        for p in (Provider.TICKETMASTER, Provider.SEATGEEK)
    }
    assert [p["classificationName"] for p in by[Provider.TICKETMASTER]] == [
        "Music",
        "Sports",
        "Arts & Theatre",
        "Miscellaneous",
    ]
    # "comedy" is a child of "theater" on SeatGeek: listing both fetched comedy twice.
    assert [p["taxonomies.name"] for p in by[Provider.SEATGEEK]] == [
        "concert",
        "sports",
        "theater",
        "family",
    ]


def test_raw_topic_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IngestorSettings().raw_topic == "raw.events"
    monkeypatch.setenv("INGESTOR_RAW_TOPIC", "raw.events.elsewhere")
    monkeypatch.setenv("INGESTOR_STORE_RETRY_S", "15")
    monkeypatch.setenv("INGESTOR_THROTTLE_GIVE_UP_S", "90")
    settings = IngestorSettings()
    assert (settings.raw_topic, settings.store_retry_s, settings.throttle_give_up_s) == (
        "raw.events.elsewhere",
        15.0,
        90.0,
    )
