"""The normalizer's store access: candidates by an indexed query, blocks given to old events."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.normalizer.pipeline import (
    LEGACY_BLOCKS,
    CatalogueStore,
    Normalizer,
    blocks_of,
    candidates_query,
    profile_doc,
    profile_of,
)
from services.normalizer.resolve import Profile
from shared.mongo import EVENTS, Document, ensure_indexes, uses_index


def _member(key: str, day: str, city: str | None, category: str = "music") -> Profile:
    return Profile(
        key=key,
        source=key.split(":")[0],
        title=frozenset({"show"}),
        performers=frozenset(),
        venue=frozenset(),
        city=city,
        lat=None,
        lon=None,
        start=None,
        day=day,
        online=city is None,
        addon=False,
        category=category,
    )


async def test_candidates_are_one_indexed_query(mongo_db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(mongo_db)
    store = CatalogueStore(mongo_db)
    docs = []
    for i in range(300):
        member = _member(f"seatgeek:{i}", f"2027-01-{1 + i % 28:02d}", f"city{i % 5}")
        docs.append(
            {"_id": f"evt_{i}", "members": [profile_doc(member)], "blocks": blocks_of([member])}
        )
    docs.append({"_id": "evt_merged", "members": [], "blocks": [], "duplicate_of": "evt_7"})
    await mongo_db[EVENTS].insert_many(docs)
    wanted = ["2027-01-08|c:city2|music", "2027-01-09|c:city3|music"]
    found = await store.candidates(wanted, ["evt_merged"])
    expected = {d["_id"] for d in docs if set(d["blocks"]) & set(wanted)} | {"evt_merged"}
    assert set(found) == expected
    assert set(found["evt_merged"]) >= {"duplicate_of", "members"}
    query = candidates_query(wanted, ["evt_merged"])
    assert query is not None
    plan = await mongo_db[EVENTS].find(query).explain()
    assert uses_index(plan), plan
    assert candidates_query([], []) is None


async def test_events_stored_before_blocks_get_them_once(mongo_db: AsyncDatabase[Document]) -> None:
    online = _member("meetup:1", "2027-02-01", None, "community")
    placed = _member("eventbrite:2", "2027-02-01", "austin", "community")
    await mongo_db[EVENTS].insert_many(
        [
            {"_id": "evt_a", "members": [profile_doc(online), profile_doc(placed)]},
            {"_id": "evt_b", "members": [], "duplicate_of": "evt_a"},
        ]
    )
    await mongo_db[LEGACY_BLOCKS].insert_one({"_id": "2027-02-01|any", "ids": ["evt_a"]})

    async def emit(*_: object) -> None:
        return None

    normalizer = Normalizer(CatalogueStore(mongo_db), emit)
    await normalizer.start()
    stored = {d["_id"]: d async for d in mongo_db[EVENTS].find({})}
    assert stored["evt_a"]["blocks"] == [
        "2027-02-01|any|community",
        "2027-02-01|c:austin|community",
    ]
    assert stored["evt_a"]["blocks"] == blocks_of(
        [profile_of(m) for m in stored["evt_a"]["members"]]
    )
    assert stored["evt_b"]["blocks"] == []
    assert LEGACY_BLOCKS not in await mongo_db.list_collection_names()
    # Once: a second start finds the marker and reads nothing.
    await mongo_db[EVENTS].update_one({"_id": "evt_a"}, {"$unset": {"blocks": ""}})
    await normalizer.start()
    assert "blocks" not in (await mongo_db[EVENTS].find_one({"_id": "evt_a"}) or {})
