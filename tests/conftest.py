"""Shared fixtures: real endpoints for integration tests, settings built from them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Document, get_database, make_client
from shared.settings import KafkaSettings, MongoSettings, S3Settings
from tests.stack import Endpoints, endpoints


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[Endpoints]:
    """Real Kafka, MongoDB-wire and S3 endpoints; failing to get them fails the tests."""
    with endpoints() as found:
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
def service_env(stack: Endpoints) -> dict[str, str]:
    """The environment a service subprocess needs to reach the stack."""
    # No scheduled sync: its default targets are the real providers, and tests stay on loopback.
    return {**os.environ, **stack.env(), "MARQUEE_ENV": "test", "ENABLE_AUTO_SYNC": "false"}
