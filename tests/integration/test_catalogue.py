"""The API's catalogue queries on the real store: every listing shape against a brute-force
reference (all pages, through cursors), and ``explain()`` of every query shape: no collection
scan."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.api.catalogue import (
    HIDDEN,
    Catalogue,
    Page,
    Query,
    build_filter,
    day_edge,
    days_between,
    great_circle_km,
    leading,
)
from shared.mongo import EVENTS, EXTERNAL_EVENTS, Document, ensure_indexes, uses_index
from shared.search import GEO, LOCATION, terms_of, tokens, when_of, with_search_fields

NOW = datetime.now(UTC).replace(microsecond=0)
WORDS = ["rock", "jazz", "opera", "orchestra", "comedy", "night", "live", "tour", "rocket"]
CITIES = [("London", 51.5, -0.12), ("Paris", 48.85, 2.35), ("Leeds", 53.8, -1.55)]
CATEGORIES = [("music", "rock"), ("music", "jazz"), ("arts & theatre", "comedy"), ("sports", None)]
SOURCES = ["ticketmaster", "seatgeek", "eventbrite"]


def _catalogue(seed: int = 5, size: int = 400) -> tuple[list[Document], list[Document]]:
    rng = random.Random(seed)
    externals: list[Document] = []
    canonicals: list[Document] = []
    for i in range(size):
        city, lat, lon = rng.choice(CITIES)
        category, sub = rng.choice(CATEGORIES)
        hours = rng.randrange(-24 * 10, 24 * 400)
        # Many events share a start (the tie-break on _id is exercised).
        start = NOW.replace(minute=0, second=0) + timedelta(hours=hours)
        tbd = i % 17 == 0
        when = (
            {"utc": None, "local": start.date().isoformat(), "timezone": "UTC", "time_tbd": True}
            if tbd
            else {"utc": start, "local": start.replace(tzinfo=None).isoformat(), "timezone": "UTC"}
        )
        cid = f"c{i // 2}"
        source = SOURCES[i % 3]
        doc: Document = {
            "_id": f"{source}:e{i}",
            "source": source,
            "external_id": f"e{i}",
            "title": " ".join(rng.sample(WORDS, 2)) + f" {i}",
            "category": category,
            "subcategory": sub,
            "status": "EventCancelled" if i % 11 == 0 else "EventScheduled",
            "start": when,
            "venue": {"name": f"{city} Hall", "city": city, "lat": lat + i * 1e-3, "lon": lon},
            "performers": [{"name": rng.choice(["The Rockets", "Miles Ahead"])}],
            "canonical_id": cid,
            "version": 1,
            "updated_at": NOW - timedelta(minutes=rng.randrange(0, 5000)),
            "is_imported": i % 13 == 0,
            "imported_event": f"local-{i}" if i % 13 == 0 else None,
        }
        externals.append(doc)
        if i % 2 == 0:
            canonicals.append(
                {
                    **{k: v for k, v in doc.items() if k not in ("source", "external_id")},
                    "_id": cid,
                    "sources": [{"source": source, "external_id": f"e{i}"}],
                    "duplicate_of": "c0" if i % 19 == 0 and cid != "c0" else None,
                }
            )
        else:
            canonicals[-1]["sources"].append({"source": source, "external_id": f"e{i}"})
    return externals, canonicals


def _matches(doc: Document, q: Query, *, canonical: bool) -> bool:
    terms = set(terms_of(doc))
    words = list(dict.fromkeys(q.words))
    for i, word in enumerate(words):
        if i == len(words) - 1 and len(word) >= 3:
            if not any(t.startswith(word) for t in terms):
                return False
        elif word not in terms:
            return False
    if any(LOCATION + w not in terms for w in q.location):
        return False
    when = when_of(doc.get("start"))
    low = q.start_from or datetime.now(UTC)
    if when is None or when < low or (q.start_to is not None and when > q.start_to):
        return False
    if q.source:
        sources = [s["source"] for s in doc["sources"]] if canonical else [doc["source"]]
        if q.source not in sources:
            return False
    if q.categories and not {doc.get("category"), doc.get("subcategory")} & set(q.categories):
        return False
    if q.statuses and doc.get("status") not in q.statuses:
        return False
    if q.imported is not None and bool(doc.get("is_imported")) != q.imported:
        return False
    if canonical and doc.get("duplicate_of"):
        return False
    if q.center is not None and q.radius_km is not None:
        venue = doc["venue"]
        if great_circle_km(*q.center, venue["lat"], venue["lon"]) > q.radius_km:
            return False
    return True


def _reference(docs: list[Document], q: Query, *, canonical: bool) -> list[str]:
    found = [d for d in docs if _matches(d, q, canonical=canonical)]
    if q.sort == "distance":
        assert q.center is not None
        key: Any = lambda d: (  # noqa: E731
            round(great_circle_km(*q.center, d["venue"]["lat"], d["venue"]["lon"]), 3),
            d["_id"],
        )
        return [d["_id"] for d in sorted(found, key=key)]
    field = "updated_at" if q.sort.endswith("updated") else None

    def value(d: Document) -> float:
        moment = d[field] if field else when_of(d.get("start"))
        assert moment is not None
        return moment.timestamp()

    if q.sort.startswith("-"):
        ordered = sorted(found, key=lambda d: (-value(d), d["_id"]))
    else:
        ordered = sorted(found, key=lambda d: (value(d), d["_id"]))
    return [d["_id"] for d in ordered]


class Recording(Catalogue):
    """A catalogue that notes every query it sends (for explain)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        super().__init__(db)
        self.sent: list[tuple[str, Document]] = []

    async def _window(
        self, collection: str, found: Document, instant: str, direction: int
    ) -> list[tuple[datetime, str]]:
        self.sent.append((collection, found))
        return await super()._window(collection, found, instant, direction)

    async def _circle(self, collection: str, found: Document) -> list[Document]:
        self.sent.append((collection, found))
        return await super()._circle(collection, found)


@pytest.fixture
async def seeded(mongo_db: AsyncDatabase[Document]) -> tuple[AsyncDatabase[Document], Any]:
    externals, canonicals = _catalogue()
    with_search_fields(externals)
    with_search_fields(canonicals)
    await ensure_indexes(mongo_db)
    await mongo_db[EXTERNAL_EVENTS].insert_many(externals)
    await mongo_db[EVENTS].insert_many(canonicals)
    return mongo_db, (externals, canonicals)


def _queries() -> Iterator[Query]:
    yield Query()
    yield Query(words=["rock"])  # a word and its prefix: rock, rocket, rockets
    yield Query(words=["live", "roc"])
    yield Query(words=["night"], source="seatgeek", sort="-start")
    yield Query(words=["ja"])  # two letters: a whole word only (none is "ja")
    yield Query(location=["london"], categories=["jazz", "sports"])
    yield Query(source="eventbrite", statuses=["EventCancelled"], imported=False)
    yield Query(imported=True, sort="updated")
    yield Query(sort="-updated", start_from=datetime(1970, 1, 1, tzinfo=UTC))
    yield Query(start_from=NOW + timedelta(days=30), start_to=NOW + timedelta(days=90))
    yield Query(center=(51.5, -0.12), radius_km=30, words=["hall"])
    yield Query(center=(48.85, 2.35), radius_km=20, sort="distance")
    yield Query(words=["opera"], start_from=datetime(1970, 1, 1, tzinfo=UTC), sort="-start")
    yield Query(categories=["jazz"], sort="-start")  # a category's word leads
    yield Query(
        words=["rock"], start_from=NOW + timedelta(days=3), start_to=NOW + timedelta(days=200)
    )


async def _all_pages(fetch: Any, q: Query, limit: int) -> tuple[list[str], list[Page]]:
    ids: list[str] = []
    pages: list[Page] = []
    after = None
    for _ in range(1000):
        page = await fetch(replace(q, after=after, limit=limit))
        pages.append(page)
        ids += [str(d["_id"]) for d in page.docs]
        if page.next_after is None:
            return ids, pages
        after = page.next_after
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("limit", [7, 100])
async def test_every_listing_shape_matches_the_reference(
    seeded: tuple[AsyncDatabase[Document], Any], limit: int
) -> None:
    db, (externals, canonicals) = seeded
    catalogue = Catalogue(db)
    for q in _queries():
        want = _reference(externals, q, canonical=False)
        got, pages = await _all_pages(catalogue.search, q, limit)
        assert got == want, q
        assert pages[0].total_exact == (len(want) <= limit) or pages[0].total >= limit + 1
        if len(want) <= limit:
            assert pages[0].total == len(want)
        if q.center is not None:
            page = pages[0]
            for doc in page.docs:
                venue = doc["venue"]
                expected = round(great_circle_km(*q.center, venue["lat"], venue["lon"]), 3)
                assert math.isclose(page.distances[str(doc["_id"])], expected)
        for doc in pages[0].docs:
            assert not set(HIDDEN) & set(doc)
        want_canonical = _reference(canonicals, q, canonical=True)
        got_canonical, _ = await _all_pages(catalogue.listing, q, limit)
        assert got_canonical == want_canonical, q


async def test_dedupe_shows_one_record_per_canonical_event(
    seeded: tuple[AsyncDatabase[Document], Any],
) -> None:
    db, (externals, canonicals) = seeded
    catalogue = Catalogue(db)
    q = Query(words=["rock"], source="seatgeek")
    got, _ = await _all_pages(catalogue.search_deduped, q, 5)
    events = _reference(canonicals, q, canonical=True)
    by_id = {d["_id"]: d for d in canonicals}
    want = []
    for cid in events:
        sources = [s for s in by_id[cid]["sources"] if s["source"] == "seatgeek"]
        want.append(f"{sources[0]['source']}:{sources[0]['external_id']}")
    assert got == want
    assert len({d["canonical_id"] for d in externals if d["_id"] in got}) == len(got)


async def test_tbd_event_matches_its_date(seeded: tuple[AsyncDatabase[Document], Any]) -> None:
    db, (externals, _) = seeded
    catalogue = Catalogue(db)
    tbd = next(
        d for d in externals if d["start"].get("time_tbd") and (when_of(d["start"]) or NOW) > NOW
    )
    day = datetime.fromisoformat(tbd["start"]["local"]).replace(tzinfo=UTC)
    q = Query(start_from=day, start_to=day + timedelta(days=1) - timedelta(milliseconds=1))
    got, _ = await _all_pages(catalogue.search, q, 100)
    assert tbd["_id"] in got


async def test_no_query_shape_scans_the_collection(
    seeded: tuple[AsyncDatabase[Document], Any],
) -> None:
    """explain() of every query the listings send: each is answered from an index. (On the
    embedded server explain emulates mongod's planner without geo, so a query led by
    ``$geoWithin`` is reported as a scan there although its executor walks the 2dsphere index:
    secantus-storage ``try_geo_sphere_id_keys``. That shape is checked on MongoDB only.)"""
    db, _ = seeded
    catalogue = Recording(db)
    for q in _queries():
        await catalogue.search(q)
        await catalogue.listing(q)
        await catalogue.search_deduped(q)
    await catalogue.changes(None, 50, datetime.now(UTC))
    build = await db.command("buildInfo")
    embedded = "secantus" in str(build).lower()
    checked = 0
    for collection, found in catalogue.sent:
        if embedded and next(iter(found)) == GEO:
            continue
        plan = await db.command("explain", {"find": collection, "filter": found})
        assert uses_index(plan), (collection, found, plan["queryPlanner"]["winningPlan"])
        checked += 1
    assert checked > 30


def test_word_windows_are_whole_days() -> None:
    noon = datetime(2027, 3, 1, 12, tzinfo=UTC)
    assert day_edge(noon, 1) == datetime(2027, 3, 2, tzinfo=UTC)
    assert day_edge(noon, -1) == datetime(2027, 3, 1, tzinfo=UTC)
    assert day_edge(datetime(2027, 3, 2, tzinfo=UTC), 1) == datetime(2027, 3, 2, tzinfo=UTC)
    # An open bound at midnight takes nothing of its day; a closed one takes that instant.
    assert days_between(noon, datetime(2027, 3, 3, tzinfo=UTC), high_open=True) == [
        "2027-03-01",
        "2027-03-02",
    ]
    assert days_between(noon, datetime(2027, 3, 3, tzinfo=UTC), high_open=False)[-1] == "2027-03-03"
    found = build_filter(
        Query(words=["night", "jazz"]), canonical=False, instant="when", span={}, days=["x"]
    )
    assert found["$and"][0] == {"terms": "night", "day": {"$in": ["x"]}}
    every = build_filter(
        Query(words=["night", "ja"]), canonical=False, instant="when", span={}, days=[]
    )
    assert every["$and"][0] == {"terms": "night"}


def test_the_longest_exact_word_leads() -> None:
    typed: list[Document] = [{"terms": "of"}, {"terms": "orchestra"}, {"terms": {"$regex": "^ro"}}]
    lead, rest = leading([typed, [{"terms": "@london"}], [{"terms": "theatre"}]])
    assert lead == {"terms": "orchestra"}
    assert rest == [
        {"terms": "of"},
        {"terms": {"$regex": "^ro"}},
        {"terms": "@london"},
        {"terms": "theatre"},
    ]
    # No whole typed word: a place leads before a category's word.
    lead, _ = leading([[{"terms": {"$regex": "^ro"}}], [{"terms": "@us"}], [{"terms": "theatre"}]])
    assert lead == {"terms": "@us"}
    assert tokens("Café-Concert!") == ["cafe", "concert"]
