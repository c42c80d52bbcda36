"""MongoDB-wire smoke tests through PyMongo's async API: upserts, unique index, bulk, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.contracts import Category, Checkpoint, Provider
from shared.mongo import (
    CATEGORIES,
    CHECKPOINTS,
    EVENTS,
    EXTERNAL_EVENTS,
    INDEXES,
    Document,
    duplicates_only,
    ensure_indexes,
    probe_capabilities,
    uses_index,
)


async def test_indexes_bootstrap_idempotent(mongo_db: AsyncDatabase[Document]) -> None:
    first = await ensure_indexes(mongo_db)
    second = await ensure_indexes(mongo_db)
    assert first == second
    info = await mongo_db[EXTERNAL_EVENTS].index_information()
    assert info["source_external_id_unique"]["unique"] is True
    for name in ("terms_day", "when_id", "updated_id", "geo"):
        assert name in info
    for collection, models in INDEXES.items():
        names = set(await mongo_db[collection].index_information())
        assert {m.document["name"] for m in models} <= names


async def test_bootstrap_drops_retired_indexes(mongo_db: AsyncDatabase[Document]) -> None:
    # A store from an earlier version still has its word-and-instant index.
    await mongo_db[EVENTS].create_index([("terms", 1), ("when", 1)], name="terms_when")
    await ensure_indexes(mongo_db)
    names = set(await mongo_db[EVENTS].index_information())
    assert "terms_when" not in names
    assert "terms_day" in names


async def test_upsert_and_unique_violation(mongo_db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(mongo_db)
    events = mongo_db[EXTERNAL_EVENTS]
    key = {"source": "ticketmaster", "external_id": "G5v0Z9"}
    result = await events.update_one(key, {"$set": {"title": "A", "version": 1}}, upsert=True)
    assert result.upserted_id is not None
    result = await events.update_one(key, {"$set": {"title": "B", "version": 2}}, upsert=True)
    assert result.upserted_id is None
    assert result.modified_count == 1
    assert await events.count_documents(key) == 1
    with pytest.raises(DuplicateKeyError):
        await events.insert_one({**key, "title": "dup"})


async def test_version_guard_keeps_newer(mongo_db: AsyncDatabase[Document]) -> None:
    events = mongo_db[EXTERNAL_EVENTS]
    await events.insert_one({"_id": "e1", "version": 5, "title": "new"})
    stale = await events.update_one(
        {"_id": "e1", "version": {"$lt": 3}}, {"$set": {"version": 3, "title": "old"}}
    )
    assert stale.matched_count == 0
    doc = await events.find_one({"_id": "e1"})
    assert doc is not None
    assert doc["title"] == "new"
    assert doc["version"] == 5


async def test_unordered_bulk_upserts_and_duplicate(mongo_db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(mongo_db)
    categories = mongo_db[CATEGORIES]
    upserts = [
        UpdateOne(
            {"name": f"cat{i}", "source": "marquee"},
            {"$set": Category(name=f"cat{i}", source="marquee").to_document()},
            upsert=True,
        )
        for i in range(50)
    ]
    result = await categories.bulk_write(upserts, ordered=False)
    assert result.upserted_count == 50
    result = await categories.bulk_write(upserts, ordered=False)
    assert result.upserted_count == 0
    assert result.matched_count == 50

    # An unordered bulk carries on past a duplicate and reports each one by its index.
    inserts = [InsertOne({"name": f"new{i}", "source": "marquee"}) for i in range(20)]
    inserts.insert(5, InsertOne({"name": "cat0", "source": "marquee"}))
    inserts.append(InsertOne({"name": "cat1", "source": "marquee"}))
    with pytest.raises(BulkWriteError) as caught:
        await categories.bulk_write(inserts, ordered=False)
    details = caught.value.details
    assert details["nInserted"] == 20
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(5, 11000), (21, 11000)]
    assert duplicates_only(caught.value) == [5, 21]
    assert await categories.count_documents({}) == 70


async def test_datetimes_round_trip_aware_utc(mongo_db: AsyncDatabase[Document]) -> None:
    cest = timezone(timedelta(hours=2))
    checkpoint = Checkpoint(
        provider=Provider.TICKETMASTER,
        stream="events",
        last_success_at=datetime(2026, 6, 1, 20, 0, tzinfo=cest),
    )
    await mongo_db[CHECKPOINTS].insert_one(checkpoint.to_document())
    stored = await mongo_db[CHECKPOINTS].find_one({"provider": "ticketmaster"})
    assert stored is not None
    loaded = Checkpoint.model_validate(stored)
    assert loaded.last_success_at == datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
    assert stored["last_success_at"].tzinfo is not None


async def test_capability_probe_passes_and_leaves_nothing(
    mongo_db: AsyncDatabase[Document],
) -> None:
    await mongo_db["kept"].insert_one({"_id": 1})
    found = await probe_capabilities(mongo_db)
    assert found.wire_version >= 9
    assert found.server.startswith(("SecantusDB", "MongoDB"))
    assert {"unique index", "compound index reads", "$facet, $group/$avg", "2dsphere $near"} <= set(
        found.checked
    )
    assert await mongo_db.list_collection_names() == ["kept"]


async def test_reads_on_the_declared_indexes_use_them(mongo_db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(mongo_db)
    await mongo_db[EXTERNAL_EVENTS].insert_many(
        [
            {"source": "seatgeek", "external_id": str(i), "category": f"c{i % 7}", "when": i}
            for i in range(500)
        ]
    )
    plans = [
        await mongo_db[EXTERNAL_EVENTS].find({"source": "seatgeek", "external_id": "42"}).explain(),
        await mongo_db[EXTERNAL_EVENTS]
        .find({"when": {"$gte": 100, "$lt": 200}, "category": "c3"})
        .sort([("when", 1), ("_id", 1)])
        .limit(20)
        .explain(),
        await mongo_db[EXTERNAL_EVENTS].find({"_id": {"$in": ["a", "b"]}}).explain(),
    ]
    assert all(uses_index(plan) for plan in plans), plans
    scan = await mongo_db[EXTERNAL_EVENTS].find({"title": "unindexed"}).explain()
    assert not uses_index(scan)  # the check itself can fail
