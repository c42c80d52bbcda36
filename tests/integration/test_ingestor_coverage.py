"""Default queries list the whole sandbox world; a throttling provider is followed, not fought."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo.asynchronous.database import AsyncDatabase

from services.ingestor.jobs import Resources, open_resources, run_sync
from services.ingestor.stats import PROVIDER_STATS
from services.ingestor.wiring import CallCounter, configured_queries
from shared.contracts import Provider
from shared.mongo import Document
from shared.settings import IngestorSettings, KafkaSettings, S3Settings
from tests.integration.test_ingestor import ingest_resources
from tests.kafka_read import read_topic
from tests.sandbox import environ, running_sandbox, sandbox_env

START = datetime(2026, 11, 23, tzinfo=UTC)  # the sandbox world's default start
# The world's performances start from 14 days before START over 194 days: this horizon
# covers all of it, so every listed record must be published.
WORLD_FROM = START - timedelta(days=15)
WORLD_DAYS = 200
PARTITIONS = 3
PROVIDERS = (Provider.TICKETMASTER, Provider.SEATGEEK)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with running_sandbox("--tm-per-second", "0", "--sg-per-second", "0", events=800) as url:
        yield url


@pytest.fixture
def settings(sandbox: str, stack: Any) -> Iterator[IngestorSettings]:
    with environ({**sandbox_env(sandbox), **stack.env(), "MARQUEE_ENV": "test"}):
        yield IngestorSettings()


@pytest.fixture
async def resources(
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
    mongo_db: AsyncDatabase[Document],
    unique: str,
) -> AsyncIterator[Resources]:
    topic, bucket = f"raw.events.cov-{unique}", f"cov-{unique}"
    async with ingest_resources(kafka_settings, s3_settings, mongo_db, topic, bucket) as res:
        yield res


def truth(sandbox: str) -> list[dict[str, Any]]:
    clusters: list[dict[str, Any]] = httpx.get(f"{sandbox}/_sandbox/truth", timeout=30).json()[
        "clusters"
    ]
    return clusters


def listed(
    sandbox: str, provider: Provider, lo: datetime | None = None, hi: datetime | None = None
) -> dict[str, str]:
    """external id -> category of what the provider lists (performances starting in [lo, hi))."""
    out = {}
    for cluster in truth(sandbox):
        start = datetime.fromisoformat(cluster["start_utc"])
        if (lo and start < lo) or (hi and start >= hi):
            continue
        for record in [*cluster["records"], *cluster["addons"]]:
            if record["provider"] == provider.value and record["listed"]:
                out[record["external_id"]] = cluster["category"]
    return out


async def published(kafka: KafkaSettings, topic: str) -> list[str]:
    return [r.key.decode() for r in await read_topic(kafka, topic, PARTITIONS)]


async def test_default_queries_publish_every_listed_record_once(
    settings: IngestorSettings, resources: Resources, kafka_settings: KafkaSettings, sandbox: str
) -> None:
    queries = [q for q in configured_queries(settings) if q.provider in PROVIDERS]
    reports = await run_sync(
        settings,
        resources,
        queries,
        job_id="coverage",
        horizon_days=WORLD_DAYS,
        start=WORLD_FROM,
        enrich=False,
    )
    assert all(r.stopped is None for r in reports), [r.stopped for r in reports]
    keys = await published(kafka_settings, resources.publisher.topic)
    # Non-overlapping queries: no record is listed (and published) by two of them.
    assert len(keys) == len(set(keys)), "a record was published by two queries"
    for provider in PROVIDERS:
        expected = listed(sandbox, provider)
        got = {k.split(":", 1)[1] for k in keys if k.startswith(f"{provider.value}:")}
        missing = {expected[i] for i in set(expected) - got}
        assert not missing, f"{provider.value}: categories never published: {sorted(missing)}"
        assert got == set(expected)
    # The categories the old queries missed are there (and so in the check above).
    tm, sg = listed(sandbox, Provider.TICKETMASTER), listed(sandbox, Provider.SEATGEEK)
    assert {"comedy", "community", "family"} <= set(tm.values())
    assert "family" in sg.values()


async def test_a_throttled_sync_with_the_client_rate_off_completes(
    settings: IngestorSettings, resources: Resources, kafka_settings: KafkaSettings, sandbox: str
) -> None:
    async with httpx.AsyncClient(base_url=sandbox, timeout=30) as http:
        await http.post("/_sandbox/reset")
        await http.post("/_sandbox/limits", json={"tm_per_second": 3, "sg_per_second": 3})
    assert settings.ticketmaster.rate_per_s == settings.seatgeek.rate_per_s == 0
    days = 42
    counter = CallCounter()
    started = datetime.now(UTC)
    try:
        reports = await run_sync(
            settings,
            resources,
            [q for q in configured_queries(settings) if q.provider in PROVIDERS],
            job_id="throttled",
            observers=[counter.observe],
            horizon_days=days,
            start=START,
            enrich=False,
        )
    finally:
        async with httpx.AsyncClient(base_url=sandbox, timeout=30) as http:
            stats = (await http.get("/_sandbox/stats")).json()
            await http.post("/_sandbox/reset")
    seconds = (datetime.now(UTC) - started).total_seconds()
    assert all(r.stopped is None for r in reports), [r.stopped for r in reports]
    keys = await published(kafka_settings, resources.publisher.topic)
    day = timedelta(days=1)
    for provider in PROVIDERS:
        sandbox_side = stats["providers"][provider.value]
        # The sandbox really throttled us, and we still got everything in the horizon.
        assert sandbox_side["throttled"] > 0, sandbox_side
        got = {k.split(":", 1)[1] for k in keys if k.startswith(f"{provider.value}:")}
        inner = set(listed(sandbox, provider, START + day, START + timedelta(days=days) - day))
        assert inner
        assert inner <= got, f"{provider.value}: {len(inner - got)} records missing"
        calls = counter.calls[provider]
        print(
            f"{provider.value}: {calls} calls, {sandbox_side['throttled']} throttled, "
            f"{len(got)} records in {seconds:.0f}s"
        )
    # Throttled answers are counted in the provider statistics, as every call is.
    docs = {d["_id"]: d async for d in resources.db[PROVIDER_STATS].find({})}
    for provider in PROVIDERS:
        assert docs[provider.value]["throttled"] == stats["providers"][provider.value]["throttled"]


async def test_records_go_to_the_configured_raw_topic(
    sandbox: str, stack: Any, kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"raw.events.setting-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    env = {
        **sandbox_env(sandbox),
        **stack.env(),
        "MARQUEE_ENV": "test",
        "INGESTOR_RAW_TOPIC": topic,
        "MONGO_DATABASE": f"rawtopic_{unique}",
        "S3_BUCKET": f"rawtopic-{unique}",
    }
    with environ(env):
        settings = IngestorSettings()
    query = [q for q in configured_queries(settings) if q.name == "concert"]
    async with open_resources(settings) as resources:
        assert resources.publisher.topic == topic
        reports = await run_sync(
            settings, resources, query, job_id="topic", horizon_days=7, start=START, enrich=False
        )
        await resources.db.client.drop_database(resources.db.name)
    keys = await published(kafka_settings, topic)
    assert reports[0].records > 0
    assert len(keys) == reports[0].records
    assert all(k.startswith("seatgeek:") for k in keys)
