"""MongoDB-wire smoke tests through PyMongo's async API: upserts, unique index, bulk, time zones."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.contracts import Category, Checkpoint, Provider
from shared.mongo import CATEGORIES, CHECKPOINTS, EXTERNAL_EVENTS, INDEXES, Document, ensure_indexes


async def test_indexes_bootstrap_idempotent(mongo_db: AsyncDatabase[Document]) -> None:
    first = await ensure_indexes(mongo_db)
    second = await ensure_indexes(mongo_db)
    assert first == second
    info = await mongo_db[EXTERNAL_EVENTS].index_information()
    assert info["source_external_id_unique"]["unique"] is True
    for name in ("source_start", "city_start", "category_start"):
        assert name in info
    for collection, models in INDEXES.items():
        names = set(await mongo_db[collection].index_information())
        assert {m.document["name"] for m in models} <= names


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

    inserts = [InsertOne({"name": f"new{i}", "source": "marquee"}) for i in range(20)]
    # The violating write goes last: FerretDB's SQLite backend stops an unordered bulk at the
    # first error where MongoDB carries on, so only this order means the same on both. (PyMongo
    # also regroups an unordered bulk by operation type, so mix no types here.)
    inserts.append(InsertOne({"name": "cat0", "source": "marquee"}))
    with pytest.raises(BulkWriteError) as caught:
        await categories.bulk_write(inserts, ordered=False)
    details = caught.value.details
    assert details["nInserted"] == 20
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(20, 11000)]
    assert await categories.count_documents({}) == 70


async def test_bulk_update_of_many_existing_documents(mongo_db: AsyncDatabase[Document]) -> None:
    # FerretDB 1.24.2 upstream holds one pooled connection per matched update until the
    # command ends and deadlocks at ~100; the local stack builds it with a fix (see
    # deploy/local/ferretdb/update-iterator-leak.patch). A hang fails here by timeout.
    docs = mongo_db["bulk_existing"]
    await docs.insert_many([{"_id": f"e{i}", "version": 1} for i in range(250)])
    ops = [UpdateOne({"_id": f"e{i}"}, {"$set": {"version": 2}}, upsert=True) for i in range(250)]
    result = await asyncio.wait_for(docs.bulk_write(ops, ordered=False), timeout=60)
    assert (result.matched_count, result.modified_count, result.upserted_count) == (250, 250, 0)
    assert await docs.count_documents({"version": 2}) == 250


async def test_version_guarded_lookup_uses_the_id_index(mongo_db: AsyncDatabase[Document]) -> None:
    # Upstream FerretDB 1.24.2 scans the whole table for any _id lookup (and any filter with
    # more than _id); the local build is patched (deploy/local/ferretdb/sqlite-id-*.patch).
    docs = mongo_db["guarded"]
    await docs.insert_many([{"_id": f"g{i}", "version": 1} for i in range(20)])
    plan = await mongo_db.command(
        "explain", {"find": "guarded", "filter": {"_id": "g7", "version": {"$lt": 2}}}
    )
    planner = str(plan["queryPlanner"])
    assert any(word in planner for word in ("USING INDEX", "IXSCAN", "IDHACK", "EXPRESS")), planner


async def test_batch_read_by_id_list(mongo_db: AsyncDatabase[Document]) -> None:
    # The local FerretDB pushes {_id: {$in: [...]}} down (04-sqlite-id-in-pushdown.patch);
    # whatever the server, the answer must be exact, including mixed and missing ids.
    docs = mongo_db["by_ids"]
    await docs.insert_many([{"_id": f"k{i}", "n": i} for i in range(300)])
    wanted = [f"k{i}" for i in range(0, 300, 7)] + ["missing"]
    found = await docs.find({"_id": {"$in": wanted}}).to_list()
    assert sorted(d["n"] for d in found) == list(range(0, 300, 7))
    mixed = await docs.find({"_id": {"$in": ["k1", 5, "k2"]}}).to_list()
    assert sorted(d["_id"] for d in mixed) == ["k1", "k2"]
    assert await docs.find({"_id": {"$in": []}}).to_list() == []


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


async def test_one_bulk_sees_its_own_earlier_writes(mongo_db: AsyncDatabase[Document]) -> None:
    # The local FerretDB writes a bulk's _id-keyed updates in one transaction
    # (05-update-one-transaction.patch); each statement must still see those before it,
    # as on MongoDB: same _id twice, an upsert then an update, a non-_id filter after them.
    docs = mongo_db["one_txn"]
    await docs.insert_many([{"_id": f"t{i}", "n": 0, "tag": "old"} for i in range(5)])
    ops: list[UpdateOne | ReplaceOne[Document]] = [
        UpdateOne({"_id": "t0"}, {"$inc": {"n": 1}}),
        UpdateOne({"_id": "t0"}, {"$inc": {"n": 1}}),
        ReplaceOne({"_id": "t1"}, {"n": 10, "tag": "new"}),
        UpdateOne({"_id": "fresh"}, {"$set": {"n": 1}}, upsert=True),
        UpdateOne({"_id": "fresh"}, {"$inc": {"n": 1}}, upsert=True),
        UpdateOne({"tag": "new"}, {"$set": {"seen": True}}),
        UpdateOne({"_id": "t2"}, {"$addToSet": {"ids": {"$each": ["a", "b"]}}}),
        UpdateOne({"_id": "t2"}, {"$addToSet": {"ids": {"$each": ["b", "c"]}}}),
    ]
    result = await docs.bulk_write(ops, ordered=False)
    assert result.upserted_count == 1
    stored = {d["_id"]: d async for d in docs.find({})}
    assert stored["t0"]["n"] == 2
    assert stored["t1"] == {"_id": "t1", "n": 10, "tag": "new", "seen": True}
    assert stored["fresh"]["n"] == 2
    assert stored["t2"]["ids"] == ["a", "b", "c"]
    assert stored["t3"] == {"_id": "t3", "n": 0, "tag": "old"}
