"""Shared fixtures: real endpoints for integration tests, settings built from them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Document, get_database, make_client, probe_capabilities
from shared.settings import KafkaSettings, MongoSettings, S3Settings
from tests.namespace import isolated_env
from tests.stack import Endpoints, endpoints

# The test that checks the suite left the demo's names alone runs after every other test.
LAST = "test_demo_untouched.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.path.name == LAST)


@pytest.fixture(scope="session")
def stack() -> Iterator[Endpoints]:
    """Real Kafka, MongoDB-wire and S3 endpoints; failing to get them fails the tests.

    The MongoDB-wire server must pass the capability probe (wire version, index reads,
    ``$facet``, ``$avg``, 2dsphere): a server that lacks one fails here, naming it.
    """
    import asyncio

    with endpoints() as found:

        async def probe() -> None:
            client = make_client(MongoSettings(url=found.mongo_url), appname="marquee-probe")
            scratch = f"test_probe_{uuid.uuid4().hex[:8]}"
            try:
                await probe_capabilities(client[scratch])
                await client.drop_database(scratch)
            finally:
                await client.close()

        asyncio.run(probe())
        yield found


@pytest.fixture(scope="session")
def kafka_settings(stack: Endpoints) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=stack.kafka, request_timeout_ms=10_000)


@pytest.fixture(scope="session")
def mongo_settings(stack: Endpoints) -> MongoSettings:
    return MongoSettings(url=stack.mongo_url, server_selection_timeout_ms=5_000)


@pytest.fixture(scope="session")
def s3_settings(stack: Endpoints) -> S3Settings:
    return S3Settings(endpoint_url=stack.s3_url, bucket=f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def unique() -> str:
    """A short random suffix so tests never share topics, groups or databases."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
async def mongo_client(mongo_settings: MongoSettings) -> AsyncIterator[AsyncMongoClient[Document]]:
    client = make_client(mongo_settings, appname="marquee-tests")
    yield client
    await client.close()


@pytest.fixture
async def mongo_db(
    mongo_client: AsyncMongoClient[Document], mongo_settings: MongoSettings, unique: str
) -> AsyncIterator[AsyncDatabase[Document]]:
    db = get_database(mongo_client, mongo_settings, f"test_{unique}")
    yield db
    await mongo_client.drop_database(db.name)


@pytest.fixture
async def service_env(
    stack: Endpoints, unique: str, mongo_client: AsyncMongoClient[Document]
) -> AsyncIterator[dict[str, str]]:
    """The environment a service subprocess needs: the stack, and topics, groups, database and
    bucket of this test alone (removed afterwards), so nothing it runs meets another's data."""
    names = isolated_env(unique)
    # No scheduled sync: its default targets are the real providers, and tests stay on loopback.
    yield {
        **os.environ,
        **stack.env(),
        **names,
        "MARQUEE_ENV": "test",
        "ENABLE_AUTO_SYNC": "false",
    }
    await mongo_client.drop_database(names["MONGO_DATABASE"])
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if unique in t]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()
