"""Price and listing series through the normalizer: a sync with moved prices appends a point,
an unchanged one does not, and the series is read through its index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from deploy.sandbox import render
from deploy.sandbox.world import SG, TM, World
from services.normalizer.pipeline import CatalogueStore, Message, Normalizer
from shared.contracts import Provider, RawRecord
from shared.mongo import Document, uses_index
from shared.series import PRICE_SERIES, SERIES_SORT, series_query


def _records(world: World, at: datetime) -> list[RawRecord]:
    out = []
    for rec in world.index[SG]:
        body = render.sg_event(world, rec)
        out.append(
            RawRecord(
                provider=Provider.SEATGEEK, external_id=str(body["id"]), payload=body, fetched_at=at
            )
        )
    for rec in world.index[TM]:
        body = render.tm_event(world, rec)
        out.append(
            RawRecord(
                provider=Provider.TICKETMASTER,
                external_id=str(body["id"]),
                payload=body,
                fetched_at=at,
            )
        )
    return out


async def _sync(normalizer: Normalizer, raws: list[RawRecord]) -> None:
    for start in range(0, len(raws), 500):
        messages = [
            Message(r.model_dump_json().encode(), r.key().encode(), 0, start + i)
            for i, r in enumerate(raws[start : start + 500])
        ]
        outcome = await normalizer.process(messages)
        assert not outcome.rejected


async def _points(db: AsyncDatabase[Document]) -> dict[str, list[Document]]:
    out: dict[str, list[Document]] = {}
    async for b in db[PRICE_SERIES].find({}):
        out.setdefault(b["key"], []).extend(b["points"])
    return out


async def test_moved_prices_append_points_unchanged_ones_do_not(
    mongo_db: AsyncDatabase[Document],
) -> None:
    async def emit(*_: object) -> None:
        return None

    normalizer = Normalizer(CatalogueStore(mongo_db), emit)
    await normalizer.start()
    world = World(seed=11, events=300)
    t0 = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
    await _sync(normalizer, _records(world, t0))
    first = await _points(mongo_db)
    priced_sg = [k for k, pts in first.items() if k.startswith("seatgeek:")]
    assert priced_sg
    assert all(len(pts) == 1 for pts in first.values())
    # The same world again, an hour later: nothing new (payloads unchanged).
    await _sync(normalizer, _records(world, t0 + timedelta(hours=1)))
    assert await _points(mongo_db) == first
    # The market moves: those records get a second point, the others none.
    summary = world.advance(24)
    assert summary["repriced"] > 0
    t1 = t0 + timedelta(days=1)
    await _sync(normalizer, _records(world, t1))
    second = await _points(mongo_db)
    grown = {k for k, pts in second.items() if len(pts) == 2}
    assert grown
    assert all(len(pts) <= 2 for pts in second.values())
    key = sorted(k for k in grown if k.startswith("seatgeek:"))[0]
    a, b = second[key]
    assert (a["t"], b["t"]) == (t0, t1)
    assert (a["listings"], a["min"]) != (b["listings"], b["min"])
    # A changed payload with the same prices (a title edit) adds no point: same day bucket.
    raws = [r for r in _records(world, t1 + timedelta(hours=2)) if r.key() == key]
    assert raws[0].payload is not None
    raws[0].payload["title"] = str(raws[0].payload["title"]) + " (late show)"
    raws[0].payload_hash = ""
    raws = [RawRecord.model_validate(raws[0].model_dump())]
    before = normalizer.store.writes[PRICE_SERIES, "append"]
    await _sync(normalizer, raws)
    assert normalizer.store.writes[PRICE_SERIES, "append"] == before
    assert len((await _points(mongo_db))[key]) == 2
    # The series of a record is read through its index.
    query = series_query([key], t0, t1)
    plan = await mongo_db[PRICE_SERIES].find(query).sort(SERIES_SORT).explain()
    assert uses_index(plan), plan
    assert [d["day"] async for d in mongo_db[PRICE_SERIES].find(query).sort(SERIES_SORT)] == [
        datetime(2027, 1, 10, tzinfo=UTC),
        datetime(2027, 1, 11, tzinfo=UTC),
    ]
    indexes = await mongo_db[PRICE_SERIES].index_information()
    assert indexes["day_ttl"]["expireAfterSeconds"] == 180 * 86400
