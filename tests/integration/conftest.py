"""The demo sentinel: a demo catalogue and pending demo jobs under the default names, checked
unchanged by the suite's last test (``test_demo_untouched.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import bson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from shared.contracts import IngestJob
from shared.contracts.messages import JobKind
from shared.contracts.topics import INGEST_REQUESTS
from shared.kafka import make_producer
from shared.mongo import EVENTS, EXTERNAL_EVENTS, Document
from shared.settings import KafkaSettings
from tests.namespace import DEFAULT_DATABASE, DEFAULT_GROUPS, DEFAULT_TOPICS
from tests.stack import Endpoints

PENDING_JOBS = 3


@dataclass
class Snapshot:
    """What the demo's names hold: per collection a digest, per topic partition its end offset,
    per default consumer group its committed offsets, and every database's name."""

    collections: dict[str, str]
    end_offsets: dict[str, int]
    committed: dict[str, dict[str, int]]
    databases: set[str] = field(default_factory=set)


@dataclass
class DemoSentinel:
    stack: Endpoints
    client: AsyncMongoClient[Document]
    seeded_database: bool = False
    created_topic: bool = False
    before: Snapshot | None = None

    async def seed(self) -> None:
        """A small demo catalogue and pending jobs, unless the default names hold some already
        (tests pointed at servers with real data only snapshot them)."""
        db = self.client[DEFAULT_DATABASE]
        if not await db[EVENTS].count_documents({}, limit=1):
            self.seeded_database = True
            await db[EVENTS].insert_many(
                [{"_id": f"demo-{i}", "title": f"Demo {i}", "version": 1} for i in range(5)]
            )
            await db[EXTERNAL_EVENTS].insert_many(
                [
                    {"source": "ticketmaster", "external_id": f"D{i}", "canonical_id": f"demo-{i}"}
                    for i in range(5)
                ]
            )
        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.kafka)
        await admin.start()
        try:
            if INGEST_REQUESTS.name not in await admin.list_topics():
                await admin.create_topics([NewTopic(INGEST_REQUESTS.name, 6, 1)])
                self.created_topic = True
        finally:
            await admin.close()
        if self.created_topic:
            producer = make_producer(KafkaSettings(bootstrap_servers=self.stack.kafka))
            await producer.start()
            try:
                for i in range(PENDING_JOBS):
                    job = IngestJob(
                        provider="ticketmaster",
                        kind=JobKind.DETAIL,
                        params={"external_id": f"DEMO{i}"},
                        requested_by="demo",
                    )
                    await producer.send_and_wait(
                        INGEST_REQUESTS.name, job.to_json_bytes(), key=job.job_id.encode()
                    )
            finally:
                await producer.stop()
        self.before = await self.snapshot()

    async def snapshot(self) -> Snapshot:
        db = self.client[DEFAULT_DATABASE]
        collections = {}
        for name in sorted(await db.list_collection_names()):
            digest = hashlib.sha256()
            async for doc in db[name].find({}).sort("_id", 1):
                digest.update(bson.encode(doc))
            collections[name] = digest.hexdigest()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.kafka)
        await admin.start()
        consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
            bootstrap_servers=self.stack.kafka
        )
        await consumer.start()
        try:
            topics = sorted(DEFAULT_TOPICS & set(await admin.list_topics()))
            described = await admin.describe_topics(topics) if topics else []
            parts = [
                TopicPartition(t["topic"], p["partition"])
                for t in described
                for p in t["partitions"]
            ]
            ends = await consumer.end_offsets(parts) if parts else {}
            groups = {g[0] for g in await admin.list_consumer_groups()} & DEFAULT_GROUPS
            committed = {}
            for group in sorted(groups):
                offsets = await admin.list_consumer_group_offsets(group)
                committed[group] = {
                    f"{tp.topic}/{tp.partition}": m.offset for tp, m in offsets.items()
                }
        finally:
            await consumer.stop()
            await admin.close()
        return Snapshot(
            collections,
            {f"{tp.topic}/{tp.partition}": offset for tp, offset in ends.items()},
            committed,
            set(await self.client.list_database_names()),
        )

    async def remove(self) -> None:
        if self.seeded_database:
            await self.client.drop_database(DEFAULT_DATABASE)
        if self.created_topic:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.kafka)
            await admin.start()
            try:
                await admin.delete_topics([INGEST_REQUESTS.name])
            finally:
                await admin.close()


@pytest.fixture(scope="session", autouse=True)
async def demo_sentinel(
    stack: Endpoints, mongo_client: AsyncMongoClient[Document]
) -> AsyncIterator[DemoSentinel]:
    """Set up before the first integration test; removed after the last."""
    sentinel = DemoSentinel(stack, mongo_client)
    await sentinel.seed()
    yield sentinel
    await sentinel.remove()
