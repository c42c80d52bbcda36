"""The catalogue as the API reads it: every list an indexed MongoDB query, every figure a pipeline.

How a page is read. Every listing is ordered by an indexed instant (``when`` or ``updated_at``)
and then ``_id``, and is read as a series of *windows* on that instant: the query names a
bounded range of it, starting where the previous page (its cursor) ended, and the range grows
eightfold while the page is not full. Each query is then an index range whose size is about the
page, on MongoDB 7 and on the embedded SecantusDB alike; the embedded server reads every match of
a query before it applies ``limit`` (secantus-commands ``find.rs`` 663-741, storage
``matching_rows``), so an unbounded "first 20 of everything" would read the whole catalogue.

Each window is asked for ``(instant, _id)`` only; the page's documents are then read by ``_id``.
A whole word (of ``q``, ``location`` or a single ``category``) leads the filter on the compound
``terms_day`` index as one exact key per day of the window (windows then end at midnight UTC),
else the instant itself (``when_id``); the rest is checked on the window's matches. Days, not a
range of instants: a multikey index may apply only one bound of a range on its second field
(SecantusDB keeps the first), which made a word-led window read the word to its last entry.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import EVENTS, EXTERNAL_EVENTS, Document
from shared.search import ADDON, DAY, GEO, LOCATION, TERMS, WHEN, day_of, tokens

EARTH_RADIUS_KM = 6378.1  # what $centerSphere divides by (MongoDB's own figure)
MEAN_RADIUS_KM = 6371.0088  # for the distances returned (great circle, mean radius)
PREFIX_MIN = 3  # a shorter last word matches whole words only (a prefix of 1 or 2 letters is most)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_WINDOW = timedelta(hours=6)
GROWTH = 8  # the widest step from one window to the next (see next_width)
# How far ahead an open-ended "upcoming" range reaches (nothing is sold 30 years ahead).
HORIZON = timedelta(days=365 * 30)
# A radius search ranks every match inside its circle; more than this is refused (narrow it).
DISTANCE_MAX = 20_000
# A prefix with no whole word switches to its own index range only after windows this wide.
PREFIX_SWITCH_AFTER = timedelta(days=7)
# A word-led window of more days than this (a rare word) reads the word's remaining entries in
# one query instead: a key per day would cost more than the word has.
MAX_DAYS = 64

# Stored bookkeeping that is not part of the public representation.
PRIVATE = ("content_hash", "members", "blocks", "rev", TERMS, WHEN, DAY, GEO)
HIDDEN: Document = {name: 0 for name in PRIVATE}


class TooBroad(ValueError):
    """A query whose result cannot be ranked within the bounds above (the API answers 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(slots=True)
class Query:
    """One listing request, already validated (see params.py)."""

    words: list[str] = field(default_factory=list)  # the last one matched as a prefix
    location: list[str] = field(default_factory=list)
    source: str | None = None
    categories: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    start_from: datetime | None = None  # default: now (upcoming only)
    start_to: datetime | None = None
    center: tuple[float, float] | None = None  # (lat, lon)
    radius_km: float | None = None
    imported: bool | None = None
    addons: bool = False  # add-ons (parking, upgrades, passes) listed too
    sort: str = "start"  # start, -start, updated, -updated, distance
    after: tuple[Any, str] | None = None  # (sort value, _id) of the previous page's last item
    limit: int = 20


@dataclass(slots=True)
class Page:
    docs: list[Document]
    total: int  # matches counted from this page's position on
    total_exact: bool  # False: there are more than ``total``
    next_after: tuple[Any, str] | None
    distances: dict[str, float] = field(default_factory=dict)


def great_circle_km(lat0: float, lon0: float, lat1: float, lon1: float) -> float:
    la0, lo0, la1, lo1 = map(math.radians, (lat0, lon0, lat1, lon1))
    a = (
        math.sin((la1 - la0) / 2) ** 2
        + math.cos(la0) * math.cos(la1) * math.sin((lo1 - lo0) / 2) ** 2
    )
    return MEAN_RADIUS_KM * 2 * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def distance_km(center: tuple[float, float], doc: Document) -> float:
    venue = doc.get("venue") or {}
    lat, lon = venue.get("lat"), venue.get("lon")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return math.inf
    return round(great_circle_km(*center, float(lat), float(lon)), 3)


def _word_groups(query: Query) -> list[list[Document]]:
    """One clause per word, grouped by how well a word of the group narrows a query: the words
    of ``q``, then of ``location``, then of a single ``category`` (see ``leading``)."""
    typed: list[Document] = []
    words = list(dict.fromkeys(query.words))
    for i, word in enumerate(words):
        if i == len(words) - 1 and len(word) >= PREFIX_MIN:
            # An anchored regex is a range of the token index: [word, word + 1).
            typed.append({TERMS: {"$regex": f"^{word}"}})
        else:
            typed.append({TERMS: word})
    place = [{TERMS: LOCATION + w} for w in dict.fromkeys(query.location)]
    kind: list[Document] = []
    if len(query.categories) == 1:
        # A category's words are among its events' terms (shared/search.py), so they can lead;
        # the category itself is still checked on the matches.
        kind = [{TERMS: w} for w in dict.fromkeys(tokens(query.categories[0]))]
    return [typed, place, kind]


def _prefix(query: Query) -> Document:
    words = list(dict.fromkeys(query.words))
    return {"$regex": f"^{words[-1]}"}


def by_prefix(query: Query) -> bool:
    """No whole word to lead with, and a prefix that could (see ``Catalogue._keys``)."""
    groups = _word_groups(query)
    lead, rest = leading(groups)
    return lead is None and any(not isinstance(c[TERMS], str) for c in rest)


def leading(groups: list[list[Document]]) -> tuple[Document | None, list[Document]]:
    """The exact word to lead with, and the rest: the longest (likely the rarest) of the first
    group that has one. A typed word before a place or a category: "theatre" of a category is
    in a third of the catalogue, where a typed word is most often in a few events."""
    clauses = [c for group in groups for c in group]
    for group in groups:
        exact = [c for c in group if isinstance(c[TERMS], str)]
        if exact:
            lead = max(exact, key=lambda c: len(c[TERMS]))
            return lead, [c for c in clauses if c is not lead]
    return None, clauses


def lead_word(query: Query) -> str | None:
    lead, _ = leading(_word_groups(query))
    return None if lead is None else str(lead[TERMS])


def build_filter(
    query: Query,
    *,
    canonical: bool,
    instant: str,
    span: Any,
    days: list[str] | None = None,
    after_id: str | None = None,
) -> Document:
    """The filter of ``query`` with ``span`` on the instant. With ``days`` (and a word to lead):
    ``{$and: [{terms: word, day: {$in: days}}, {$and: everything else}]}``, the first part what
    the ``terms_day`` index reads exactly, the rest checked per match (nested, so a server that
    merges plain conjuncts does not route by the word alone); ``days=[]``: every day of the
    word. Otherwise the first fields are what an index serves (a word, then the instant) and the
    rest is checked per match. ``after_id``: only ids after it (the rest of a tie at a cursor's
    instant)."""
    lead, words = leading(_word_groups(query))
    found: Document = {}
    rest: list[Document] = list(words)
    at: Document = {instant: span}
    if after_id is not None:
        at["_id"] = {"$gt": after_id}
    if lead is not None and days is not None:
        rest.insert(0, at)
    else:
        if lead is not None:
            found[TERMS] = lead[TERMS]
        found.update(at)
    if query.source:
        rest.append({"sources.source" if canonical else "source": query.source})
    if instant != WHEN:
        # Sorted by modification time: the event's own start bounds still apply.
        found[WHEN] = start_span(query)
    if query.categories:
        wanted = [c.casefold() for c in query.categories]
        rest.append({"$or": [{"category": {"$in": wanted}}, {"subcategory": {"$in": wanted}}]})
    if query.statuses:
        rest.append({"status": {"$in": query.statuses}})
    if query.imported is not None:
        rest.append({"is_imported": True} if query.imported else {"is_imported": {"$ne": True}})
    if not query.addons:
        rest.append({ADDON: {"$ne": True}})
    if canonical:
        rest.append({"duplicate_of": None})
    if query.center is not None and query.radius_km is not None:
        lat, lon = query.center
        sphere = {"$centerSphere": [[lon, lat], query.radius_km / EARTH_RADIUS_KM]}
        rest.append({GEO: {"$geoWithin": sphere}})
    if lead is not None and days is not None:
        led: Document = {TERMS: lead[TERMS], DAY: {"$in": days}} if days else {TERMS: lead[TERMS]}
        return {"$and": [led, {"$and": rest}]}
    if rest:
        found["$and"] = rest
    return found


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(0), tzinfo=UTC)


def day_edge(moment: datetime, direction: int) -> datetime:
    """The first midnight UTC at or after ``moment`` (direction 1), or at or before it."""
    floor = _midnight(moment)
    if direction == 1 and floor < moment:
        return floor + timedelta(days=1)
    return floor


def days_between(low: datetime, high: datetime, *, high_open: bool) -> list[str]:
    """The UTC dates from ``low`` to ``high`` (``high``'s own left out when it is an open
    bound at midnight: nothing of that day is in the range)."""
    first: date = low.astimezone(UTC).date()
    last: date = high.astimezone(UTC).date()
    if high_open and high == _midnight(high) and last > first:
        last -= timedelta(days=1)
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def start_span(query: Query, now: datetime | None = None) -> Document:
    span: Document = {"$gte": query.start_from or now or datetime.now(UTC)}
    if query.start_to is not None:
        span["$lte"] = query.start_to
    return span


# Sort order → (instant, direction). Every order ends on _id, ascending.
_ORDER = {
    "start": (WHEN, 1),
    "-start": (WHEN, -1),
    "updated": ("updated_at", 1),
    "-updated": ("updated_at", -1),
}


class Catalogue:
    """Reads of ``external_events`` and ``events``."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    def _range(self, query: Query, instant: str, now: datetime) -> tuple[datetime, datetime]:
        """The instants a listing covers, closed at both ends."""
        if instant == WHEN:
            low = query.start_from or now
            high = query.start_to or now + HORIZON
        else:  # modification times: all in the past
            low, high = EPOCH, now + timedelta(days=1)
        return low, high

    async def _keys(
        self,
        collection: str,
        query: Query,
        *,
        canonical: bool,
        instant: str,
        direction: int,
        need: int,
        after: tuple[Any, str] | None,
    ) -> tuple[list[tuple[datetime, str]], bool]:
        """``(instant, _id)`` of the matches in order from ``after``: at least ``need`` of
        them, unless fewer are left; and whether every match from ``after`` on was counted."""
        now = datetime.now(UTC)
        low, high = self._range(query, instant, now)
        keys: list[tuple[datetime, str]] = []
        position: datetime
        by_day = instant == WHEN and lead_word(query) is not None
        prefix_only = by_prefix(query)
        if after is not None:
            position, last_id = after
            # The rest of the tie at the cursor's instant, then strictly beyond it.
            day = [day_of(position)] if by_day else None
            tie = build_filter(
                query,
                canonical=canonical,
                instant=instant,
                span=position,
                days=day,
                after_id=last_id,
            )
            keys += await self._window(collection, tie, instant, direction)
        else:
            position = low if direction == 1 else high
        if not low <= position <= high:
            return keys, True
        width = FIRST_WINDOW
        inclusive = after is None
        start = position
        while len(keys) < need:
            bound = high if direction == 1 else low
            end = _step(position, width * direction, bound)
            days: list[str] | None = None
            if by_day:
                # Whole days: the next window starts on a day of its own, not one read already.
                end = day_edge(end, direction)
                end = min(end, high) if direction == 1 else max(end, low)
                days = (
                    days_between(position, end, high_open=end != high)
                    if direction == 1
                    else days_between(end, position, high_open=False)
                )
                if len(days) > MAX_DAYS:
                    # A rare word: every entry of the word, in one read (a key per day of a
                    # window this wide would cost more than the word has).
                    end, days = bound, []
            if direction == 1:
                span: Document = {"$gte" if inclusive else "$gt": position}
                span["$lte" if end == high else "$lt"] = end
            else:
                span = {"$lte" if inclusive else "$lt": position}
                span["$gte" if end == low else "$gt"] = end
            found = build_filter(query, canonical=canonical, instant=instant, span=span, days=days)
            rows = await self._window(collection, found, instant, direction)
            keys += rows
            if end == bound:
                return keys, True
            width = max(width, abs(end - position))
            missing = need - len(keys)
            if (
                missing > 0
                and prefix_only
                and abs(end - start) >= PREFIX_SWITCH_AFTER
                and len(rows) * GROWTH < missing
            ):
                # A prefix with no whole word to lead: the windows read every document of
                # their range, and a week of them shows the prefix is rare. Its own index range
                # (every instant, the prefix's matches only) is then the cheaper read. (After
                # one six-hour window it switched for common words too: 700 ms for "crimson".)
                rest = {"$gte": end, "$lte": high} if direction == 1 else {"$lte": end, "$gte": low}
                found = build_filter(query, canonical=canonical, instant=instant, span=rest)
                found = {TERMS: _prefix(query), **found}
                keys += await self._window(collection, found, instant, direction)
                return keys, True
            position, inclusive, width = end, True, next_width(width, len(rows), missing)
        return keys, False

    async def _window(
        self, collection: str, found: Document, instant: str, direction: int
    ) -> list[tuple[datetime, str]]:
        cursor = self.db[collection].find(found, {instant: 1})
        rows = [(doc[instant], str(doc["_id"])) async for doc in cursor]
        if direction == 1:
            rows.sort()
        else:
            rows.sort(key=lambda r: (-r[0].timestamp(), r[1]))
        return rows

    async def _page(
        self, collection: str, query: Query, *, canonical: bool, projection: Document
    ) -> Page:
        if query.sort == "distance":
            return await self._by_distance(collection, query, canonical, projection)
        instant, direction = _ORDER[query.sort]
        keys, complete = await self._keys(
            collection,
            query,
            canonical=canonical,
            instant=instant,
            direction=direction,
            need=query.limit + 1,
            after=query.after,
        )
        page = await self._fetch(collection, keys, query.limit, projection, exact=complete)
        if query.center is not None:
            page.distances = {str(d["_id"]): distance_km(query.center, d) for d in page.docs}
        return page

    async def _by_distance(
        self, collection: str, query: Query, canonical: bool, projection: Document
    ) -> Page:
        """Nearest first: every match inside the circle is ranked here (the circle bounds the
        work; ``$near`` reads the whole collection on the embedded server)."""
        if query.center is None or query.radius_km is None:
            # Without a point every distance is the same: the tie order (start) is the order.
            return await self._page(
                collection, replace(query, sort="start"), canonical=canonical, projection=projection
            )
        lat, lon = query.center
        sphere = {"$centerSphere": [[lon, lat], query.radius_km / EARTH_RADIUS_KM]}
        circle = replace(query, center=None, radius_km=None)
        # The circle leads: the 2dsphere index answers it; the rest is checked per match.
        found: Document = {GEO: {"$geoWithin": sphere}}
        rest = build_filter(circle, canonical=canonical, instant=WHEN, span=start_span(query))
        found.update(rest)
        center = query.center
        ranked = sorted(
            (distance_km(center, d), str(d["_id"])) for d in await self._circle(collection, found)
        )
        if len(ranked) > DISTANCE_MAX:
            raise TooBroad("radius_km", f"more than {DISTANCE_MAX} matches: narrow the circle")
        if query.after is not None:
            value, last_id = float(query.after[0]), query.after[1]
            ranked = [r for r in ranked if r > (value, last_id)]
        page = await self._fetch(collection, ranked, query.limit, projection, exact=True)
        page.distances = {k: d for d, k in ranked[: query.limit]}
        return page

    async def _fetch(
        self,
        collection: str,
        keys: Sequence[tuple[Any, str]],
        limit: int,
        projection: Document,
        *,
        exact: bool,
    ) -> Page:
        """The page of the first ``limit`` of ``keys`` ((sort value, _id), in order), read by
        ``_id``; the cursor is the last one's position when more follow."""
        chosen = keys[:limit]
        docs = await self.by_ids(collection, [k for _, k in chosen], projection)
        more = len(keys) > limit
        return Page(
            [docs[k] for _, k in chosen if k in docs],
            len(keys),
            exact,
            chosen[-1] if more and chosen else None,
        )

    async def _circle(self, collection: str, found: Document) -> list[Document]:
        cursor = self.db[collection].find(found, {"venue": 1}).limit(DISTANCE_MAX + 1)
        return [doc async for doc in cursor]

    async def scan(self, query: Query) -> AsyncIterator[Document]:
        """Every per-source record matching ``query``, in start order (for the export)."""
        after: tuple[Any, str] | None = None
        while True:
            page = await self._page(
                EXTERNAL_EVENTS,
                replace(query, sort="start", after=after, limit=1000),
                canonical=False,
                projection=HIDDEN,
            )
            for doc in page.docs:
                yield doc
            if page.next_after is None:
                return
            after = page.next_after

    async def search(self, query: Query) -> Page:
        """Per-source records."""
        return await self._page(EXTERNAL_EVENTS, query, canonical=False, projection=HIDDEN)

    async def listing(self, query: Query) -> Page:
        """Canonical events (merged ones left out)."""
        return await self._page(EVENTS, query, canonical=True, projection=HIDDEN)

    async def search_deduped(self, query: Query) -> Page:
        """One per-source record per canonical event: the events are found (and ordered) in
        ``events``, each shown as its first source (of the asked provider, if one was)."""
        page = await self._page(EVENTS, query, canonical=True, projection={"sources": 1})
        chosen: dict[str, str] = {}
        for event in page.docs:
            sources = event.get("sources") or []
            if query.source:
                sources = [s for s in sources if s.get("source") == query.source] or sources
            if sources:
                chosen[str(event["_id"])] = f"{sources[0]['source']}:{sources[0]['external_id']}"
        records = await self.by_ids(EXTERNAL_EVENTS, list(chosen.values()), HIDDEN)
        docs = [records[key] for key in chosen.values() if key in records]
        distances = {chosen[cid]: d for cid, d in page.distances.items() if cid in chosen}
        if query.center is not None:
            distances = {str(d["_id"]): distance_km(query.center, d) for d in docs}
        return Page(docs, page.total, page.total_exact, page.next_after, distances)

    async def by_ids(
        self, collection: str, ids: Sequence[str], projection: Document | None = None
    ) -> dict[str, Document]:
        if not ids:
            return {}
        found = self.db[collection].find({"_id": {"$in": list(ids)}}, projection or HIDDEN)
        return {str(doc["_id"]): doc async for doc in found}

    async def changes(
        self, after: tuple[datetime, str | None] | None, limit: int, until: datetime
    ) -> tuple[list[Document], bool]:
        """Canonical events (merged ones too) in (modified, id) order after the cursor, up to
        ``until``: windows on the ``change_feed`` index, as for a page. A cursor without an id
        is an instant: everything modified after it (no tie to finish)."""
        keys: list[tuple[datetime, str]] = []
        if after is not None and after[1] is not None:
            tie = {"updated_at": after[0], "_id": {"$gt": after[1]}}
            keys += await self._window(EVENTS, tie, "updated_at", 1)
        position, inclusive = (after[0], False) if after is not None else (EPOCH, True)
        width = FIRST_WINDOW
        while len(keys) <= limit and position < until:
            end = _step(position, width, until)
            span: Document = {"$gte" if inclusive else "$gt": position}
            span["$lte" if end == until else "$lt"] = end
            rows = await self._window(EVENTS, {"updated_at": span}, "updated_at", 1)
            keys += rows
            position, inclusive, width = (
                end,
                True,
                next_width(width, len(rows), limit + 1 - len(keys)),
            )
        chosen = keys[:limit]
        docs = await self.by_ids(EVENTS, [k for _, k in chosen])
        return [docs[k] for _, k in chosen if k in docs], len(keys) > limit

    async def latest_changes(self, limit: int, until: datetime) -> list[Document]:
        """The last ``limit`` changes up to ``until``, newest first: windows on the
        ``change_feed`` index reaching back from ``until``, eight times wider each time."""
        keys: list[tuple[datetime, str]] = []
        end, width = until, timedelta(minutes=10)
        while len(keys) < limit and end > EPOCH:
            start = max(EPOCH, end - width)
            span = {"$gt": start, "$lte": end} if start > EPOCH else {"$lte": end}
            keys += await self._window(EVENTS, {"updated_at": span}, "updated_at", -1)
            end, width = start, width * GROWTH
        keys.sort(key=lambda k: (k[0], k[1]), reverse=True)
        chosen = keys[:limit]
        docs = await self.by_ids(EVENTS, [k for _, k in chosen])
        return [docs[k] for _, k in chosen if k in docs]

    async def category_counts(self) -> dict[str, int]:
        """Per-source records per canonical category and subcategory (lower case)."""
        counts: dict[str, int] = {}
        for name in ("category", "subcategory"):
            pipeline: list[Document] = [
                {"$match": {name: {"$type": "string"}}},
                {"$group": {"_id": f"${name}", "n": {"$sum": 1}}},
            ]
            async for row in await self.db[EXTERNAL_EVENTS].aggregate(pipeline):
                key = str(row["_id"]).casefold()
                counts[key] = counts.get(key, 0) + int(row["n"])
        return counts


def _step(position: datetime, width: timedelta, bound: datetime) -> datetime:
    """``position`` moved by ``width``, not beyond ``bound`` (nor past what a datetime holds)."""
    try:
        moved = position + width
    except OverflowError:
        return bound
    return min(moved, bound) if width > timedelta(0) else max(moved, bound)


def next_width(width: timedelta, found: int, missing: int) -> timedelta:
    """The next window: wide enough for the matches still missing at the density the last one
    showed (a quarter more, for luck), at least as wide as it, at most eight times: a window's
    cost is the documents in it, and a blind eightfold step overshoots a sparse query."""
    if found <= 0:
        return width * GROWTH
    wanted = width * (max(missing, 1) / found * 1.25)
    return max(width, min(wanted, width * GROWTH))
