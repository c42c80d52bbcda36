"""The ingestor against the provider sandbox, a real Kafka broker, MongoDB-wire server and S3."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo.asynchronous.database import AsyncDatabase

from services.ingestor.errors import AuthError
from services.ingestor.jobs import Resources, replay, run_job, run_sync
from services.ingestor.progress import ProgressManager
from services.ingestor.publish import PageArchive, RawPublisher
from services.ingestor.service import SlotLease
from services.ingestor.stats import PROVIDER_STATS
from services.ingestor.sync import SyncQuery, SyncReport
from services.ingestor.wiring import CallCounter, configured_queries
from shared.cloudevents import parse_ce_headers
from shared.contracts import IngestJob, IngestReply, JobKind, JobStatus, Provider, RawRecord
from shared.kafka import make_producer
from shared.mongo import CHECKPOINTS, Document
from shared.s3 import ensure_bucket, s3_client
from shared.settings import IngestorSettings, KafkaSettings, S3Settings
from tests.kafka_read import read_topic as read_all
from tests.sandbox import environ, running_sandbox, sandbox_env
from tests.stack import ROOT

START = datetime(2026, 11, 23, tzinfo=UTC)  # the sandbox world's default start
DAYS = 21
PARTITIONS = 3


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    # Provider rate limits off here (a dedicated test turns them on): tests stay quick.
    with running_sandbox("--tm-per-second", "0", "--sg-per-second", "0", events=3000) as url:
        yield url


@pytest.fixture
def settings(sandbox: str, stack: Any) -> Iterator[IngestorSettings]:
    with environ({**sandbox_env(sandbox), **stack.env(), "MARQUEE_ENV": "test"}):
        yield IngestorSettings()


@pytest.fixture
async def resources(
    settings: IngestorSettings,
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    mongo_db: AsyncDatabase[Document],
    unique: str,
) -> AsyncIterator[Resources]:
    topic, bucket = f"raw.events.test-{unique}", f"ingest-{unique}"
    async with ingest_resources(kafka_settings, s3_settings, mongo_db, topic, bucket) as res:
        yield res


@contextlib.asynccontextmanager
async def ingest_resources(
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    mongo_db: AsyncDatabase[Document],
    topic: str,
    bucket: str,
) -> AsyncIterator[Resources]:
    """What a sync writes to: a fresh raw topic, an S3 bucket, the test's database."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        async with s3_client(s3_settings) as s3:
            await ensure_bucket(s3, bucket)
            yield Resources(
                RawPublisher(producer, topic),
                PageArchive(s3, bucket),
                mongo_db,
                ProgressManager(mongo_db[CHECKPOINTS], freshness=timedelta(hours=1)),
            )
    finally:
        await producer.stop()


async def read_topic(kafka: KafkaSettings, topic: str) -> list[Any]:
    return await read_all(kafka, topic, PARTITIONS)


async def control(sandbox: str, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=sandbox, timeout=30) as http:
        response = await http.request(method, path, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def truth(sandbox: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{sandbox}/_sandbox/truth", timeout=30).json()
    clusters: list[dict[str, Any]] = body["clusters"]
    return clusters


def listed_ids(sandbox: str, provider: str, lo: datetime, hi: datetime) -> set[str]:
    """What the provider lists for performances starting in [lo, hi), by the ground truth."""
    ids = set()
    for cluster in truth(sandbox):
        if not lo <= datetime.fromisoformat(cluster["start_utc"]) < hi:
            continue
        for record in [*cluster["records"], *cluster["addons"]]:
            if record["provider"] == provider and record["listed"]:
                ids.add(record["external_id"])
    return ids


def assert_complete(got: set[str], sandbox: str, provider: str, days: int = DAYS) -> None:
    """Everything listed inside the horizon was fetched, nothing from far outside it.

    Add-ons (parking, passes) start a few hours off their performance, so the comparison
    leaves a day of slack at each end of the horizon.
    """
    end = START + timedelta(days=days)
    day = timedelta(days=1)
    inner = listed_ids(sandbox, provider, START + day, end - day)
    outer = listed_ids(sandbox, provider, START - day, end + day)
    assert inner, f"the sandbox lists no {provider} events in the horizon"
    assert inner <= got, f"{len(inner - got)} {provider} records missing"
    assert got <= outer, f"{len(got - outer)} {provider} records from outside the horizon"


async def sync(
    settings: IngestorSettings, resources: Resources, queries: list[SyncQuery], **kwargs: Any
) -> list[SyncReport]:
    """run_sync without Spotify enrichment (its own test covers it; it costs many calls)."""
    return await run_sync(settings, resources, queries, enrich=False, **kwargs)


ALL_SG = SyncQuery(Provider.SEATGEEK, "events", "all", {})
ALL_TM = SyncQuery(Provider.TICKETMASTER, "events", "all", {})


async def test_full_sync_publishes_every_listed_record_once_verbatim(
    settings: IngestorSettings, resources: Resources, kafka_settings: KafkaSettings, sandbox: str
) -> None:
    counter = CallCounter()
    reports = await sync(
        settings,
        resources,
        [ALL_TM, ALL_SG],
        job_id="job-1",
        observers=[counter.observe],
        horizon_days=DAYS,
        start=START,
    )
    assert all(r.stopped is None for r in reports), [r.stopped for r in reports]
    records = await read_topic(kafka_settings, resources.publisher.topic)
    keys = [r.key.decode() for r in records if not r.key.startswith(b"spotify:")]
    for provider in ("ticketmaster", "seatgeek"):
        got = {k.split(":", 1)[1] for k in keys if k.startswith(provider + ":")}
        assert_complete(got, sandbox, provider)
    assert len(keys) == len(set(keys)), "a record was published twice in one sync"
    first = records[0]
    envelope = parse_ce_headers(first.headers)
    assert envelope.type == RawRecord.type_name()
    raw = RawRecord.model_validate_json(first.value or b"")
    assert raw.key() == first.key.decode()
    assert raw.payload_hash
    assert isinstance(raw.payload, dict)
    # Every page is archived in S3, gzipped.
    assert resources.archive.archived == sum(r.pages for r in reports)
    # Each provider's calls and latency are kept for the API's analytics.
    stats = {d["_id"]: d async for d in resources.db[PROVIDER_STATS].find({})}
    assert set(stats) == {"ticketmaster", "seatgeek"}
    for provider in (Provider.TICKETMASTER, Provider.SEATGEEK):
        doc = stats[provider.value]
        assert doc["calls"] == counter.calls[provider]
        assert doc["success_rate"] == 1.0
        assert 0 < doc["latency_ms"]["p50"] <= doc["latency_ms"]["p95"]


async def test_second_sync_of_an_unchanged_world_makes_no_calls(
    settings: IngestorSettings, resources: Resources
) -> None:
    first = CallCounter()
    await sync(
        settings,
        resources,
        [ALL_SG],
        job_id="a",
        observers=[first.observe],
        horizon_days=7,
        start=START,
    )
    again = CallCounter()
    reports = await sync(
        settings,
        resources,
        [ALL_SG],
        job_id="b",
        observers=[again.observe],
        horizon_days=7,
        start=START,
    )
    assert first.calls[Provider.SEATGEEK] >= 1
    assert again.calls.get(Provider.SEATGEEK, 0) == 0
    assert reports[0].windows_skipped == reports[0].windows >= 1


async def test_cancelled_seatgeek_events_become_tombstones(
    settings: IngestorSettings,
    resources: Resources,
    kafka_settings: KafkaSettings,
    sandbox: str,
) -> None:
    resources.progress.freshness = timedelta(0)  # every sync re-polls
    await sync(settings, resources, [ALL_SG], job_id="before", horizon_days=DAYS, start=START)
    horizon = (START, START + timedelta(days=DAYS))
    before = listed_ids(sandbox, "seatgeek", *horizon)
    await control(sandbox, "POST", "/_sandbox/clock/advance", params={"hours": 72})
    reports = await sync(
        settings, resources, [ALL_SG], job_id="after", horizon_days=DAYS, start=START
    )
    after = listed_ids(sandbox, "seatgeek", *horizon)
    vanished = before - after
    records = await read_topic(kafka_settings, resources.publisher.topic)
    tombstones = {
        RawRecord.model_validate_json(r.value or b"").external_id
        for r in records
        if RawRecord.model_validate_json(r.value or b"").tombstone
    }
    assert vanished, "the sandbox clock should cancel some SeatGeek events in 72 hours"
    # Vanished = cancelled (404 on refetch → tombstone) or rescheduled under a new id.
    gone = {
        rec["external_id"]
        for c in truth(sandbox)
        for rec in c["records"]
        if rec["provider"] == "seatgeek" and c["status"] == "cancelled"
    }
    assert tombstones
    assert tombstones <= vanished
    assert (vanished & gone) <= tombstones
    assert reports[0].tombstones == len(tombstones)


async def test_faults_are_retried_without_loss(
    settings: IngestorSettings,
    resources: Resources,
    kafka_settings: KafkaSettings,
    sandbox: str,
) -> None:
    for kind in ("5xx_burst", "malformed_json", "truncated"):
        await control(
            sandbox,
            "POST",
            "/_sandbox/faults",
            json={"provider": "seatgeek", "kind": kind, "count": 1},
        )
    counter = CallCounter()
    reports = await sync(
        settings,
        resources,
        [ALL_SG],
        job_id="faulty",
        observers=[counter.observe],
        horizon_days=DAYS,
        start=START,
    )
    assert reports[0].stopped is None
    assert counter.failures[Provider.SEATGEEK] >= 3
    records = await read_topic(kafka_settings, resources.publisher.topic)
    got = {r.key.decode().split(":", 1)[1] for r in records if r.key.startswith(b"seatgeek:")}
    assert_complete(got, sandbox, "seatgeek")
    await control(sandbox, "DELETE", "/_sandbox/faults")


async def test_quota_spent_stops_cleanly_and_resume_completes(
    settings: IngestorSettings, resources: Resources, sandbox: str
) -> None:
    settings.ticketmaster.quota = 2  # three weekly windows need at least three calls
    reports = await sync(settings, resources, [ALL_TM], job_id="q1", horizon_days=DAYS, start=START)
    assert reports[0].stopped is not None
    assert "budget spent" in reports[0].stopped
    assert reports[0].resume_at is not None
    done_before = reports[0].windows
    settings.ticketmaster.quota = None
    again = await sync(settings, resources, [ALL_TM], job_id="q2", horizon_days=DAYS, start=START)
    assert again[0].stopped is None
    # The windows finished before the stop are fresh: not fetched again.
    assert again[0].windows_skipped >= done_before - 1


async def test_bad_credentials_fail_with_a_clear_error(
    settings: IngestorSettings, resources: Resources
) -> None:
    settings.seatgeek.client_id = settings.seatgeek.client_id.__class__("wrong")
    with pytest.raises(AuthError, match="check the seatgeek credentials"):
        await sync(settings, resources, [ALL_SG], job_id="x", horizon_days=1, start=START)


async def test_replay_republishes_archived_pages(
    settings: IngestorSettings, resources: Resources, kafka_settings: KafkaSettings
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    reports = await sync(settings, resources, [ALL_SG], job_id="r", horizon_days=5, start=START)
    published = sum(r.records for r in reports)
    pages, replayed = await replay(
        resources,
        Provider.SEATGEEK,
        "events",
        since,
        datetime.now(UTC) + timedelta(seconds=1),
        job_id="replay",
    )
    assert pages == sum(r.pages for r in reports)
    assert replayed == published
    records = await read_topic(kafka_settings, resources.publisher.topic)
    assert len(records) == 2 * published


async def test_detail_job_replies_and_tombstones_unknown_ids(
    settings: IngestorSettings, resources: Resources, sandbox: str
) -> None:
    some_id = sorted(listed_ids(sandbox, "ticketmaster", START, START + timedelta(days=30)))[0]
    found = await run_job(
        settings,
        resources,
        IngestJob(
            provider=Provider.TICKETMASTER,
            kind=JobKind.DETAIL,
            params={"external_id": some_id},
            requested_by="test",
        ),
    )
    assert (found.status, found.external_ids, found.calls) == (JobStatus.DONE, [some_id], 1)
    missing = await run_job(
        settings,
        resources,
        IngestJob(
            provider=Provider.SEATGEEK,
            kind=JobKind.DETAIL,
            params={"external_id": "999999999"},
            requested_by="test",
        ),
    )
    assert missing.status is JobStatus.DONE
    bad = await run_job(
        settings,
        resources,
        IngestJob(
            provider=Provider.SEATGEEK,
            kind=JobKind.SYNC,
            params={"queries": ["nope"]},
            requested_by="test",
        ),
    )
    assert bad.status is JobStatus.FAILED
    assert "nope" in (bad.message or "")


def test_cli_ingest_prints_a_summary(sandbox: str, service_env: dict[str, str]) -> None:
    # Topics, database and bucket of this test (service_env), created by bootstrap.
    env = {**service_env, **sandbox_env(sandbox)}
    boot = subprocess.run(
        [sys.executable, "-m", "shared.bootstrap"], cwd=ROOT, env=env, capture_output=True
    )
    assert boot.returncode == 0, boot.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.ingestor",
            "ingest",
            "--provider",
            "seatgeek",
            "--query",
            "concert",
            "--days",
            "3",
            "--start",
            "2026-11-23T00:00:00Z",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "seatgeek: 1 queries" in proc.stdout
    assert "records published" in proc.stdout
    assert "calls: seatgeek" in proc.stdout
    summary = orjson.dumps(proc.stdout)
    assert b"sandbox-sg-secret" not in summary


async def test_performers_enriched_from_spotify_by_link_and_by_name(
    settings: IngestorSettings,
    resources: Resources,
    kafka_settings: KafkaSettings,
) -> None:
    await run_sync(settings, resources, [ALL_TM], job_id="enrich", horizon_days=7, start=START)
    records = await read_topic(kafka_settings, resources.publisher.topic)
    artists = [r for r in records if r.key.decode().startswith("spotify:")]
    assert artists, "no performer was matched on Spotify"
    events = {r.key.decode(): r for r in records if r.key.startswith(b"ticketmaster:")}
    methods = set()
    for record in artists:
        headers = dict(record.headers)
        # The events naming the performer ride along, so the normalizer can re-merge them.
        named = headers["ce_matchevents"].decode().split(",")
        assert named
        assert named[0] in events
        attractions = RawRecord.model_validate_json(events[named[0]].value or b"").payload[
            "_embedded"
        ]["attractions"]
        assert headers["ce_matchid"].decode() in {str(a["id"]) for a in attractions}
        raw = RawRecord.model_validate_json(record.value or b"")
        assert raw.entity.value == "performer"
        assert headers["ce_matchprovider"] == b"ticketmaster"
        confidence = float(headers["ce_matchconfidence"])
        methods.add(headers["ce_matchmethod"].decode())
        if headers["ce_matchmethod"] == b"link":
            assert confidence == 1.0
        else:
            assert 0.6 <= confidence <= 1.0
    assert methods == {"link", "search"}
    # A second run within the freshness makes no Spotify call.
    counter = CallCounter()
    resources.progress.freshness = timedelta(0)  # re-poll the events, not the matches
    await run_sync(
        settings,
        resources,
        [ALL_TM],
        job_id="enrich-2",
        observers=[counter.observe],
        horizon_days=7,
        start=START,
    )
    assert counter.calls.get(Provider.SPOTIFY, 0) == 0


async def test_eventbrite_organizations_discovered_and_listed(
    settings: IngestorSettings,
    resources: Resources,
    kafka_settings: KafkaSettings,
    sandbox: str,
) -> None:
    queries = [q for q in configured_queries(settings) if q.provider is Provider.EVENTBRITE]
    assert [q.params["organization"] for q in queries] == ["*"]  # none configured: discover
    reports = await sync(settings, resources, queries, job_id="eb", horizon_days=DAYS, start=START)
    directory = await control(sandbox, "GET", "/_sandbox/directory")
    assert {r.query for r in reports} == {
        f"org-{org}" for org in directory["eventbrite_organizations"]
    }
    records = await read_topic(kafka_settings, resources.publisher.topic)
    payloads = [RawRecord.model_validate_json(r.value or b"").payload for r in records]
    assert payloads
    # Always expanded: the cancellation truth lives in event_sales_status.
    assert all("event_sales_status" in p for p in payloads)
    keys = [r.key.decode() for r in records]
    assert len(keys) == len(set(keys))


async def test_meetup_groups_paged_by_cursor(
    settings: IngestorSettings,
    resources: Resources,
    kafka_settings: KafkaSettings,
    sandbox: str,
) -> None:
    directory = await control(sandbox, "GET", "/_sandbox/directory")
    settings.meetup.groups = directory["meetup_groups"][:5]
    queries = [q for q in configured_queries(settings) if q.provider is Provider.MEETUP]
    reports = await sync(settings, resources, queries, job_id="mu", horizon_days=60, start=START)
    assert all(r.stopped is None for r in reports)
    records = await read_topic(kafka_settings, resources.publisher.topic)
    raws = [RawRecord.model_validate_json(r.value or b"") for r in records]
    assert raws
    assert all(r.external_id == r.payload["token"] for r in raws)  # the stable id
    assert sum(r.records for r in reports) == len({r.external_id for r in raws})


async def test_slot_lease_has_one_leader_and_fails_over(mongo_db: AsyncDatabase[Document]) -> None:
    now = [1_000_000.0]
    a = SlotLease(mongo_db["leases"], "sched", slot_s=60, holder="a", clock=lambda: now[0])
    b = SlotLease(mongo_db["leases"], "sched", slot_s=60, holder="b", clock=lambda: now[0])
    assert await a.is_leader()
    assert not await b.is_leader()
    now[0] += 50  # near the end of the slot: the leader claims the next one early
    assert await a.is_leader()
    now[0] += 20
    assert not await b.is_leader()
    assert await a.is_leader()
    now[0] += 120  # a stopped renewing (died): b takes the next free slot
    assert await b.is_leader()
    assert not await a.is_leader()


async def test_service_answers_jobs_from_kafka_and_counts_calls(
    sandbox: str, service_env: dict[str, str], unique: str, kafka_settings: KafkaSettings
) -> None:
    requests, replies = f"ingest.requests.test-{unique}", f"ingest.replies.test-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(requests, 1, 1), NewTopic(replies, 1, 1)])
    await admin.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **service_env,  # this test's raw topic, group, database and bucket (made by the service)
        **sandbox_env(sandbox),
        "INGESTOR_HTTP_PORT": str(port),
        "INGESTOR_REQUESTS_TOPIC": requests,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ingestor", cwd=ROOT, env=env
    )
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        job = IngestJob(
            provider=Provider.SEATGEEK,
            kind=JobKind.SYNC,
            params={"queries": ["concert"], "days": 3},
            requested_by="test",
            reply_to=replies,
        )
        await producer.send_and_wait(requests, job.to_json_bytes(), key=job.job_id.encode())
        consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
            replies,
            bootstrap_servers=kafka_settings.bootstrap_servers,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=120)
        finally:
            await consumer.stop()
        reply = IngestReply.model_validate_json(record.value or b"")
        assert reply.job_id == job.job_id
        assert reply.status is JobStatus.DONE, reply.message
        assert reply.calls >= 1
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'marquee_ingestor_provider_calls_total{provider="seatgeek",status="200"}' in metrics
        assert "marquee_ingestor_records_published_total" in metrics
    finally:
        await producer.stop()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def test_slow_and_hanging_answers_time_out_and_are_retried(
    settings: IngestorSettings, resources: Resources, sandbox: str
) -> None:
    settings.seatgeek.timeout_s = 1.0
    await control(
        sandbox,
        "POST",
        "/_sandbox/faults",
        json={"provider": "seatgeek", "kind": "timeout", "count": 1, "delay_ms": 5000},
    )
    await control(
        sandbox,
        "POST",
        "/_sandbox/faults",
        json={"provider": "seatgeek", "kind": "slow", "count": 1, "delay_ms": 300},
    )
    counter = CallCounter()
    reports = await sync(
        settings,
        resources,
        [ALL_SG],
        job_id="slow",
        observers=[counter.observe],
        horizon_days=7,
        start=START,
    )
    assert reports[0].stopped is None
    assert reports[0].records > 0
    assert counter.failures[Provider.SEATGEEK] == 1  # the hung call, retried once
