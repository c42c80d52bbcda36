"""MongoDB helpers: the async client (PyMongo's AsyncMongoClient), collections, index bootstrap."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.write_concern import WriteConcern

from shared.settings import MongoSettings

Document = dict[str, Any]

EXTERNAL_EVENTS = "external_events"
EVENTS = "events"
CATEGORIES = "categories"
LOCAL_EVENTS = "local_events"
CHECKPOINTS = "checkpoints"

# Only plain and compound ascending/unique indexes: both MongoDB 7 and FerretDB 1.24 have them.
INDEXES: dict[str, list[IndexModel]] = {
    EXTERNAL_EVENTS: [
        IndexModel(
            [("source", ASCENDING), ("external_id", ASCENDING)],
            unique=True,
            name="source_external_id_unique",
        ),
        IndexModel([("source", ASCENDING), ("start_utc", ASCENDING)], name="source_start"),
        IndexModel([("venue_city", ASCENDING), ("start_utc", ASCENDING)], name="city_start"),
        IndexModel([("category", ASCENDING), ("start_utc", ASCENDING)], name="category_start"),
        IndexModel([("canonical_id", ASCENDING)], name="canonical_id"),
    ],
    EVENTS: [
        IndexModel([("start.utc", ASCENDING)], name="start"),
        IndexModel([("updated_at", ASCENDING), ("_id", ASCENDING)], name="change_feed"),
    ],
    CATEGORIES: [
        IndexModel(
            [("name", ASCENDING), ("source", ASCENDING)], unique=True, name="name_source_unique"
        ),
    ],
    LOCAL_EVENTS: [
        IndexModel(
            [("source", ASCENDING), ("external_event_id", ASCENDING)], name="source_external_event"
        ),
    ],
    CHECKPOINTS: [
        IndexModel(
            [("provider", ASCENDING), ("stream", ASCENDING), ("partition", ASCENDING)],
            unique=True,
            name="provider_stream_partition_unique",
        ),
    ],
}


def make_client(settings: MongoSettings, *, appname: str = "marquee") -> AsyncMongoClient[Document]:
    """A client whose datetimes come back timezone-aware in UTC."""
    return AsyncMongoClient(
        settings.url.get_secret_value(),
        appname=appname,
        tz_aware=True,
        tzinfo=UTC,
        serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
        socketTimeoutMS=settings.socket_timeout_ms,
    )


def get_database(
    client: AsyncMongoClient[Document], settings: MongoSettings, name: str | None = None
) -> AsyncDatabase[Document]:
    """The database with journaled writes: an acknowledged write has reached the journal."""
    return client.get_database(
        name or settings.database,
        codec_options=CodecOptions(tz_aware=True, tzinfo=UTC),
        write_concern=WriteConcern(w=settings.write_concern_w, j=settings.journal),
    )


async def ensure_indexes(db: AsyncDatabase[Document]) -> dict[str, list[str]]:
    """Create every index Marquee relies on that is missing; returns the names per collection."""
    ensured: dict[str, list[str]] = {}
    for collection, indexes in INDEXES.items():
        existing = set(await db[collection].index_information())
        for index in indexes:
            # One at a time and only when missing: FerretDB 1.24 panics (drops the connection)
            # on a createIndexes that lists several indexes which all exist already.
            if index.document["name"] not in existing:
                await db[collection].create_indexes([index])
        ensured[collection] = [index.document["name"] for index in indexes]
    return ensured


async def ping(client: AsyncMongoClient[Document]) -> None:
    await client.admin.command("ping")
