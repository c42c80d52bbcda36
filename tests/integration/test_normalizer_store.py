"""The normalizer's store access: candidates by an indexed query, blocks given to old events,
batches resolved over the staged documents of a batch still being written."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.normalizer.pipeline import (
    LEGACY_BLOCKS,
    CatalogueStore,
    Message,
    Normalizer,
    WriteConflict,
    blocks_of,
    candidates_query,
    profile_doc,
    profile_of,
)
from services.normalizer.resolve import Profile
from shared.contracts import CanonicalChange, Entity, Provider, RawRecord
from shared.contracts.messages import payload_hash
from shared.mongo import EVENTS, EXTERNAL_EVENTS, Document, ensure_indexes, uses_index
from tests.integration.test_normalizer import sandbox_records


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


async def test_a_batch_resolves_over_the_one_still_being_written(
    mongo_db: AsyncDatabase[Document],
) -> None:
    """The worker prepares batch N+1 while N is written: N+1 must see N's documents."""
    records, truth = sandbox_records(300)
    by_perf: dict[str, list[str]] = defaultdict(list)
    for raw in records:
        by_perf[truth[raw.key()]].append(raw.key())
    # A performance listed by two providers: one record in each batch.
    first_key, second_key = next(keys[:2] for keys in by_perf.values() if len(keys) >= 2)
    raws = {raw.key(): raw for raw in records}
    announced: list[CanonicalChange] = []

    async def emit(changes: list[CanonicalChange], _sources: object) -> None:
        announced.extend(changes)

    store = CatalogueStore(mongo_db)
    normalizer = Normalizer(store, emit)
    await normalizer.start()
    first = await normalizer.prepare(
        [Message(raws[first_key].model_dump_json().encode(), first_key.encode(), 0, 0)]
    )
    second = await normalizer.prepare(
        [Message(raws[second_key].model_dump_json().encode(), second_key.encode(), 1, 0)]
    )
    # Nothing is stored before a commit; the second batch joined the first's event.
    assert await mongo_db[EVENTS].count_documents({}) == 0
    assert [c.canonical_id for c in second.outcome.changes] == [
        c.canonical_id for c in first.outcome.changes
    ]
    assert second.outcome.joined == 1
    await normalizer.commit(first)
    await normalizer.commit(second)
    assert store.staged == {EVENTS: {}, EXTERNAL_EVENTS: {}}
    events = [d async for d in mongo_db[EVENTS].find({})]
    assert len(events) == 1
    assert {m["key"] for m in events[0]["members"]} == {first_key, second_key}
    assert [c.version for c in announced] == [1, 2]
    assert store.writes[EVENTS, "insert"] == 1
    assert store.writes[EVENTS, "rewrite"] == 1
    stored = {d["_id"]: d["canonical_id"] async for d in mongo_db[EXTERNAL_EVENTS].find({})}
    assert stored == {first_key: events[0]["_id"], second_key: events[0]["_id"]}


async def test_a_failed_prepare_leaves_nothing_staged(mongo_db: AsyncDatabase[Document]) -> None:
    records, _ = sandbox_records(50)

    async def emit(*_: object) -> None:
        raise AssertionError("nothing is announced by a prepare")

    store = CatalogueStore(mongo_db)
    normalizer = Normalizer(store, emit)
    await normalizer.start()

    calls = []

    async def broken(*_: object) -> None:
        calls.append(len(store.staged[EXTERNAL_EVENTS]))
        raise RuntimeError("artists unreadable")

    # The rejoin step fails after the batch's own step was staged.
    normalizer._rejoin = broken  # type: ignore[method-assign,assignment]
    raw = records[0]
    artist = raw.model_copy(
        update={
            "provider": Provider.SPOTIFY,
            "entity": Entity.PERFORMER,
            "payload": {"id": "a", "name": "A"},
        }
    )
    messages = [
        Message(raw.model_dump_json().encode(), raw.key().encode(), 0, 0),
        Message(
            artist.model_dump_json().encode(),
            b"spotify:a",
            0,
            1,
            (("ce_matchprovider", b"seatgeek"), ("ce_matchid", b"1"), ("ce_matchevents", b"x:y")),
        ),
    ]
    try:
        await normalizer.prepare(messages)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the prepare should have failed")
    assert calls == [1]  # the batch's own record was staged when the rejoin failed
    assert store.staged == {EVENTS: {}, EXTERNAL_EVENTS: {}}


def _message(raw: RawRecord, offset: int = 0) -> Message:
    return Message(raw.model_dump_json().encode(), raw.key().encode(), 0, offset)


def _refetched(raw: RawRecord, hours: int) -> RawRecord:
    """The record fetched again later, its payload changed in a field no mapper reads."""
    payload = {**raw.payload, "marqueeRefetch": hours}
    return raw.model_copy(
        update={
            "fetched_at": raw.fetched_at + timedelta(hours=hours),
            "payload": payload,
            "payload_hash": payload_hash(payload),
        }
    )


async def _workers(db: AsyncDatabase[Document]) -> tuple[Normalizer, Normalizer]:
    """Two workers on one store (announcements dropped), its indexes in place."""

    async def emit(*_: object) -> None:
        return None

    one, two = Normalizer(CatalogueStore(db), emit), Normalizer(CatalogueStore(db), emit)
    await one.start()
    return one, two


async def test_two_workers_never_overwrite_each_others_members(
    mongo_db: AsyncDatabase[Document],
) -> None:
    """Two workers rewrite one canonical event at once: the second write is refused and
    its batch resolved again, so both members stay."""
    records, truth = sandbox_records(300)
    by_perf: dict[str, list[RawRecord]] = defaultdict(list)
    for raw in records:
        by_perf[truth[raw.key()]].append(raw)
    first, second = next(raws[:2] for raws in by_perf.values() if len(raws) >= 2)

    one, two = await _workers(mongo_db)
    await one.process([_message(first)])
    changed = _refetched(first, 1)
    joined = await two.prepare([_message(second)])
    rewritten = await one.prepare([_message(changed)])
    await two.commit(joined)
    with pytest.raises(WriteConflict):
        await one.commit(rewritten)
    one.store.forget_staged()
    await one.process([_message(changed)])
    events = [d async for d in mongo_db[EVENTS].find({})]
    assert len(events) == 1
    members = {m["key"]: m["version"] for m in events[0]["members"]}
    assert members == {first.key(): 2, second.key(): 1}
    assert events[0]["rev"] == 3


async def test_an_older_fetch_never_overwrites_a_newer_one(
    mongo_db: AsyncDatabase[Document],
) -> None:
    """A batch resolved before a newer fetch of its record was written (a rebalance's zombie)
    is refused, and resolved again it finds its fetch stale."""
    records, _ = sandbox_records(50)
    old, new = records[0], _refetched(records[0], 1)

    zombie, owner = await _workers(mongo_db)
    late = await zombie.prepare([_message(old)])
    await owner.process([_message(new)])
    with pytest.raises(WriteConflict):
        await zombie.commit(late)
    zombie.store.forget_staged()
    again = await zombie.process([_message(old)])
    assert again.stale == 1
    stored = await mongo_db[EXTERNAL_EVENTS].find_one({"_id": old.key()})
    assert stored is not None
    # BSON keeps milliseconds.
    assert stored["last_synced"] == new.fetched_at.replace(
        microsecond=new.fetched_at.microsecond // 1000 * 1000
    )
    assert stored["version"] == 1


async def test_addons_are_marked_and_old_ones_migrated(mongo_db: AsyncDatabase[Document]) -> None:
    """A parking pass is stored with ``addon`` (its record and its event), so that listings
    can leave it out; add-ons stored before the mark get it at start, from their members."""
    records, truth = sandbox_records(300)
    addon = next(raw for raw in records if "/" in truth[raw.key()])
    show = next(raw for raw in records if "/" not in truth[raw.key()])
    one, _ = await _workers(mongo_db)
    await one.process([_message(addon), _message(show, 1)])
    stored = {d["_id"]: d async for d in mongo_db[EXTERNAL_EVENTS].find({})}
    assert (stored[addon.key()]["addon"], stored[show.key()]["addon"]) == (True, False)
    events = {d["_id"]: d async for d in mongo_db[EVENTS].find({})}
    assert {d["members"][0]["key"]: d["addon"] for d in events.values()} == {
        addon.key(): True,
        show.key(): False,
    }
    # As stored before the mark: gone from both; a later start puts it back, once.
    await mongo_db[EVENTS].update_many({}, {"$unset": {"addon": ""}})
    await mongo_db[EXTERNAL_EVENTS].update_many({}, {"$unset": {"addon": ""}})
    await mongo_db["migrations"].delete_one({"_id": "catalogue.addons.v1"})
    await one.start()
    assert await mongo_db[EXTERNAL_EVENTS].count_documents({"addon": True}) == 1
    assert await mongo_db[EVENTS].count_documents({"addon": True}) == 1
    assert (await mongo_db[EXTERNAL_EVENTS].find_one({"addon": True}) or {})["_id"] == addon.key()
