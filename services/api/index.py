"""The in-process read model: columnar tables with token postings, for search, listing and feeds.

Built when the local store answered only ``_id`` lookups fast: everything that filters or sorts
over the whole catalogue runs here, in memory, over numpy columns:

* a table has one *slot* per stored version of a document; slots are only ever appended (an
  update appends a new slot and retires the old one), so postings stay sorted by slot and a new
  slot is simply appended to them;
* ``postings[token]`` is a sorted int32 array of slots (text tokens, and location tokens with an
  ``@`` prefix); recent appends sit in a small ``array('i')`` until the next query folds them in;
* numeric columns (start, updated, lat/lon, providers, category, status, flags) are filtered
  with vectorised masks; the page is chosen with ``argpartition`` and ordered by
  ``(value, key hash)`` so that cursors are stable across replicas and restarts;
* the public JSON of each document is kept pre-serialised (``bytes``), so a page is a join.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from services.api.text import LOCATION

IntArray = npt.NDArray[Any]  # slot numbers (int32 or int64 after numpy's index ops)
NOT_SET = 0
FAR = 1e300  # sort value of a missing start: after every real one, and JSON-encodable
PREFIX_MIN = 3  # shorter query tokens match whole tokens only
PREFIX_TERMS_MAX = 200  # a prefix standing for more tokens than this is cut (documented)
PROVIDERS = ("ticketmaster", "seatgeek", "eventbrite", "meetup", "spotify")
PROVIDER_BIT = {name: 1 << i for i, name in enumerate(PROVIDERS)}
STATUSES = (
    "EventScheduled",
    "EventCancelled",
    "EventPostponed",
    "EventRescheduled",
    "EventMovedOnline",
)
STATUS_CODE = {name: i + 1 for i, name in enumerate(STATUSES)}


def key_hash(key: str) -> int:
    """A stable 63-bit hash of a document key: the tie-break of every ordering."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Interned:
    """Strings to small ints (0 stands for none), case-insensitively."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str] = [""]

    def id(self, name: str | None) -> int:
        if not name:
            return NOT_SET
        folded = name.casefold()
        found = self.ids.get(folded)
        if found is None:
            found = len(self.names)
            self.ids[folded] = found
            self.names.append(name)
        return found

    def get(self, name: str) -> int | None:
        return self.ids.get(name.casefold())


@dataclass(slots=True)
class Row:
    """What a table indexes for one document version."""

    key: str
    version: int
    body: bytes  # public JSON object, without the import flags (spliced in when served)
    tokens: set[str]
    start: float = math.nan
    updated: float = 0.0
    lat: float = math.nan
    lon: float = math.nan
    providers: int = 0  # bit mask of PROVIDER_BIT
    category: str | None = None
    subcategory: str | None = None
    status: str | None = None
    group: str | None = None  # the canonical id of a per-source record
    listed: bool = True  # False for a canonical event merged into another
    country: str | None = None
    city: str | None = None


@dataclass(slots=True)
class Query:
    tokens: list[str] = field(default_factory=list)
    location: list[str] = field(default_factory=list)
    providers: int = 0  # 0: any
    categories: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    start_from: float | None = None
    start_to: float | None = None
    center: tuple[float, float] | None = None
    radius_km: float | None = None
    imported: bool | None = None
    sort: str = "start"  # start, -start, updated, -updated, distance
    after: tuple[float, int] | None = None
    limit: int = 20
    dedupe: bool = False


@dataclass(slots=True)
class Page:
    slots: list[int]
    total: int
    next_after: tuple[float, int] | None
    distances: dict[int, float] = field(default_factory=dict)


_COLUMNS: dict[str, Any] = {
    "start": np.float64,
    "updated": np.float64,
    "lat": np.float32,
    "lon": np.float32,
    "providers": np.uint8,
    "category": np.int32,
    "subcategory": np.int32,
    "status": np.int8,
    "alive": np.bool_,
    "listed": np.bool_,
    "imported": np.bool_,
    "group": np.int32,
    "country": np.int32,
    "city": np.int32,
    "hash": np.int64,
    "version": np.int64,
}


class Table:
    """One collection's documents, indexed for filtering, sorting and paging."""

    dense_min = 4096  # postings at least this long (and a sixteenth of the table) get flags

    def __init__(
        self, categories: Interned, groups: Interned, places: Interned, capacity: int = 1024
    ) -> None:
        self.categories = categories
        self.groups = groups
        self.places = places
        self.size = 0
        self.cols: dict[str, npt.NDArray[Any]] = {
            name: np.zeros(capacity, dtype=dtype) for name, dtype in _COLUMNS.items()
        }
        self.keys: list[str] = []
        self.bodies: list[bytes | None] = []
        self.slot_of: dict[str, int] = {}
        self.by_group: dict[int, set[int]] = {}  # live slots per canonical group
        self.postings: dict[str, IntArray] = {}
        self.pending: dict[str, array[int]] = {}
        self.terms: list[str] = []  # sorted vocabulary, for prefix queries
        self._terms_built = False
        self.live = 0
        self.dead = 0
        self.unlisted = 0  # live slots of merged canonical events
        self.ordered = 0  # slots [0, ordered) are in (start, hash) order (see seal)
        # Frequent tokens also get one flag per slot: intersecting with them is a gather over
        # the smaller list only (a word in a sixth of the catalogue is common here).
        self.dense: dict[str, npt.NDArray[np.bool_]] = {}
        self.start_key: npt.NDArray[np.float64] = np.zeros(0)
        self._mark = np.zeros(capacity, dtype=np.bool_)  # scratch for intersections

    # ----------------------------------------------------------------------------- writes

    def _grow(self, needed: int) -> None:
        capacity = len(self.cols["alive"])
        if needed <= capacity:
            return
        new = max(needed, capacity * 2)
        for name, column in self.cols.items():
            grown = np.zeros(new, dtype=column.dtype)
            grown[: self.size] = column[: self.size]
            self.cols[name] = grown
        for token, flags in self.dense.items():
            grown_flags = np.zeros(new, dtype=np.bool_)
            grown_flags[: self.size] = flags[: self.size]
            self.dense[token] = grown_flags

    def version_of(self, key: str) -> int | None:
        slot = self.slot_of.get(key)
        return None if slot is None else int(self.cols["version"][slot])

    def upsert(self, row: Row, *, force: bool = False) -> bool:
        """Store a document version; an older or equal version is ignored (unless forced)."""
        old = self.slot_of.get(row.key)
        if old is not None and not force and int(self.cols["version"][old]) >= row.version:
            return False
        imported = bool(self.cols["imported"][old]) if old is not None else False
        if old is not None:
            self._retire(old)
        slot = self.size
        self._grow(slot + 1)
        self.size += 1
        c = self.cols
        c["start"][slot] = row.start
        c["updated"][slot] = row.updated
        c["lat"][slot] = row.lat
        c["lon"][slot] = row.lon
        c["providers"][slot] = row.providers
        c["category"][slot] = self.categories.id(row.category)
        c["subcategory"][slot] = self.categories.id(row.subcategory)
        c["status"][slot] = STATUS_CODE.get(row.status or "", 0)
        c["alive"][slot] = True
        c["listed"][slot] = row.listed
        c["imported"][slot] = imported
        group = self.groups.id(row.group) if row.group else NOT_SET
        c["group"][slot] = group
        c["country"][slot] = self.places.id(row.country)
        c["city"][slot] = self.places.id(row.city)
        c["hash"][slot] = key_hash(row.key)
        c["version"][slot] = row.version
        if not row.listed:
            self.unlisted += 1
        self.keys.append(row.key)
        self.bodies.append(row.body)
        self.slot_of[row.key] = slot
        if group:
            self.by_group.setdefault(group, set()).add(slot)
        for token in row.tokens:
            flags = self.dense.get(token)
            if flags is not None:
                flags[slot] = True
            pending = self.pending.get(token)
            if pending is None:
                pending = self.pending[token] = array("i")
                if token not in self.postings and self._terms_built:
                    bisect.insort(self.terms, token)
            pending.append(slot)
        self.live += 1
        return True

    def _retire(self, slot: int) -> None:
        if not self.cols["listed"][slot]:
            self.unlisted -= 1
        self.cols["alive"][slot] = False
        self.bodies[slot] = None
        group = int(self.cols["group"][slot])
        if group:
            members = self.by_group.get(group)
            if members is not None:
                members.discard(slot)
                if not members:
                    del self.by_group[group]
        self.live -= 1
        self.dead += 1

    def set_imported(self, key: str, imported: bool) -> bool:
        slot = self.slot_of.get(key)
        if slot is None:
            return False
        self.cols["imported"][slot] = imported
        return True

    def seal(self) -> None:
        """End of the initial load: renumber slots in (start, key hash) order, drop retired
        ones, fold the postings. Afterwards the postings of the loaded part list slots in start
        order, so a start-sorted page needs no sort (only slots appended later do)."""
        c = self.cols
        size = self.size
        start = c["start"][:size].astype(np.float64)
        start[np.isnan(start)] = FAR
        alive = np.nonzero(c["alive"][:size])[0]
        order = alive[np.lexsort((c["hash"][:size][alive], start[alive]))]
        new_of = np.full(max(size, 1), -1, dtype=np.int64)
        new_of[order] = np.arange(len(order))
        n = len(order)
        for name, column in c.items():
            fresh = np.zeros(max(len(column), n, 1), dtype=column.dtype)
            fresh[:n] = column[:size][order]
            c[name] = fresh
        self.keys = [self.keys[i] for i in order.tolist()]
        self.bodies = [self.bodies[i] for i in order.tolist()]
        self.slot_of = {key: i for i, key in enumerate(self.keys)}
        self.by_group = {}
        for i, group in enumerate(c["group"][:n].tolist()):
            if group:
                self.by_group.setdefault(group, set()).add(i)
        for token in list(self.pending):
            self._fold(token)
        for token, posting in list(self.postings.items()):
            mapped = new_of[posting]
            mapped = np.sort(mapped[mapped >= 0]).astype(np.int32)
            if len(mapped):
                self.postings[token] = mapped
            else:
                del self.postings[token]
        self.size = n
        self.dead = 0
        self.ordered = n
        self.start_key = start[order] if n else np.zeros(0)
        capacity = len(c["alive"])
        threshold = max(self.dense_min, n // 16)
        self.dense = {}
        for token, posting in self.postings.items():
            if len(posting) >= threshold:
                flags = np.zeros(capacity, dtype=np.bool_)
                flags[posting] = True
                self.dense[token] = flags
        self.terms = sorted(self.postings)
        self._terms_built = True

    def _fold(self, token: str) -> IntArray:
        base = self.postings.get(token)
        pending = self.pending.pop(token, None)
        if pending is None:
            return base if base is not None else np.zeros(0, dtype=np.int32)
        extra = np.frombuffer(pending, dtype=np.int32).copy()
        merged = extra if base is None else np.concatenate((base, extra))
        self.postings[token] = merged
        return merged

    def compact(self) -> int:
        """Drop retired slots from the postings; returns how many entries went."""
        alive = self.cols["alive"]
        dropped = 0
        for token in list(self.postings):
            base = self._fold(token)
            kept = base[alive[base]]
            dropped += len(base) - len(kept)
            if len(kept):
                self.postings[token] = kept
            else:
                del self.postings[token]
        for flags in self.dense.values():
            flags[: self.size] &= alive[: self.size]
        self.terms = sorted(self.postings)
        self.dead = 0
        return dropped

    # ----------------------------------------------------------------------------- reads

    def slot(self, key: str) -> int | None:
        return self.slot_of.get(key)

    def body(self, slot: int) -> bytes | None:
        return self.bodies[slot]

    def posting(self, token: str) -> IntArray:
        if token in self.pending:
            return self._fold(token)
        found = self.postings.get(token)
        return found if found is not None else np.zeros(0, dtype=np.int32)

    def _expand(self, token: str) -> list[str]:
        if len(token.removeprefix(LOCATION)) < PREFIX_MIN:
            return [token]
        if not self._terms_built:
            self.terms = sorted(set(self.postings) | set(self.pending))
            self._terms_built = True
        start = bisect.bisect_left(self.terms, token)
        end = bisect.bisect_left(self.terms, token + "\U0010ffff", lo=start)
        found = self.terms[start : min(end, start + PREFIX_TERMS_MAX)]
        return found or [token]

    def matching(self, token: str) -> IntArray:
        """Slots with a token starting with ``token`` (whole-token match below 3 letters)."""
        terms = self._expand(token)
        if len(terms) == 1:
            return self.posting(terms[0])
        arrays = [self.posting(t) for t in terms]
        return np.unique(np.concatenate(arrays))

    def candidates(self, words: Sequence[str]) -> IntArray | None:
        """Slots matching every word (None: no words, everything is a candidate)."""
        if not words:
            return None
        parts: list[tuple[IntArray, npt.NDArray[np.bool_] | None]] = []
        for word in dict.fromkeys(words):
            terms = self._expand(word)
            flags = self.dense.get(terms[0]) if len(terms) == 1 else None
            parts.append((self.matching(word), flags))
        parts.sort(key=lambda part: len(part[0]))
        result = parts[0][0]
        for posting, flags in parts[1:]:
            if not len(result):
                break
            if flags is not None:
                result = result[flags[result]]  # a gather over the smaller side only
                continue
            if len(self._mark) < self.size:
                self._mark = np.zeros(len(self.cols["alive"]), dtype=np.bool_)
            mark = self._mark
            mark[result] = True
            found = posting[mark[posting]]
            mark[result] = False
            result = found
        return result

    def select(self, query: Query) -> Page:
        c = self.cols
        words = query.tokens + [LOCATION + w for w in query.location]
        found = self.candidates(words)
        if found is None:
            slots = np.nonzero(c["alive"][: self.size] & c["listed"][: self.size])[0]
        elif self.dead or self.unlisted:
            slots = found[c["alive"][found] & c["listed"][found]]
        else:
            slots = found  # nothing retired or merged: every posting is visible
        if query.start_from is not None or query.start_to is not None:
            slots = self._in_window(slots, query.start_from, query.start_to)
        if query.providers:
            slots = slots[(c["providers"][slots] & query.providers) != 0]
        if query.categories:
            ids = [self.categories.get(n) for n in query.categories]
            wanted = np.array([i for i in ids if i is not None] or [-1], dtype=np.int32)
            slots = slots[
                np.isin(c["category"][slots], wanted) | np.isin(c["subcategory"][slots], wanted)
            ]
        if query.statuses:
            codes = np.array([STATUS_CODE.get(s, -1) for s in query.statuses], dtype=np.int8)
            slots = slots[np.isin(c["status"][slots], codes)]
        if query.imported is not None:
            slots = slots[c["imported"][slots] == query.imported]
        distances: npt.NDArray[np.float64] | None = None
        if query.center is not None and query.radius_km is not None:
            slots, distances = self._within(slots, query.center, query.radius_km)
        if (
            self.ordered
            and distances is None
            and not query.dedupe
            and (query.sort == "start" or (query.sort == "-start" and query.after is None))
        ):
            return self._by_start(slots, query)
        values = self._sort_values(slots, query.sort, distances)
        hashes = c["hash"][slots]
        if query.dedupe:
            slots, values, hashes, distances = self._collapse(slots, values, hashes, distances)
        total_all = len(slots)
        if query.after is not None:
            v0, h0 = query.after
            keep = (values > v0) | ((values == v0) & (hashes > h0))
            slots, values, hashes = slots[keep], values[keep], hashes[keep]
            if distances is not None:
                distances = distances[keep]
        limit = max(query.limit, 0)
        has_more = len(slots) > limit
        if has_more and limit > 0:
            kth = np.partition(values, limit - 1)[limit - 1]
            near = values <= kth
            slots, values, hashes = slots[near], values[near], hashes[near]
            if distances is not None:
                distances = distances[near]
        order = np.lexsort((hashes, values))[:limit]
        chosen = slots[order]
        page = Page([int(s) for s in chosen], total_all, None)
        if distances is not None:
            page.distances = {
                int(s): round(float(d), 3) for s, d in zip(chosen, distances[order], strict=True)
            }
        if has_more and limit > 0:
            last = order[-1]
            page.next_after = (float(values[last]), int(hashes[last]))
        return page

    def _in_window(self, slots: IntArray, low: float | None, high: float | None) -> IntArray:
        """Slots starting in [low, high]: a slot range of the start-ordered part (two binary
        searches), a mask over the few slots appended since."""
        start = self.cols["start"]
        split = int(np.searchsorted(slots, self.ordered))
        head, tail = slots[:split], slots[split:]
        if split:
            first = int(np.searchsorted(self.start_key, low, "left")) if low is not None else 0
            last = (
                int(np.searchsorted(self.start_key, high, "right"))
                if high is not None
                else int(np.searchsorted(self.start_key, FAR, "left"))
            )
            head = head[int(np.searchsorted(head, first)) : int(np.searchsorted(head, last))]
        if len(tail):
            values = start[tail]
            keep = ~np.isnan(values)
            if low is not None:
                keep &= values >= low
            if high is not None:
                keep &= values <= high
            tail = tail[keep]
        return np.concatenate((head, tail)) if len(tail) else head

    def _by_start(self, slots: IntArray, query: Query) -> Page:
        """A start-ordered page without sorting the matches: the loaded part of ``slots`` is
        already in (start, hash) order; only the few slots appended since are sorted."""
        c = self.cols
        keys = self.start_key
        total = len(slots)
        split = int(np.searchsorted(slots, self.ordered))
        head, tail = slots[:split], slots[split:]
        limit = max(query.limit, 0)
        if query.sort == "start":
            if query.after is not None:
                v0, h0 = query.after
                lo = int(np.searchsorted(keys, v0, "left"))
                hi = int(np.searchsorted(keys, v0, "right"))
                first = lo + int(np.searchsorted(c["hash"][lo:hi], h0, "right"))
                head = head[int(np.searchsorted(head, first)) :]
            end = min(limit, len(head))
            if 0 < end < len(head):
                boundary = keys[head[end - 1]]
                end = int(np.searchsorted(head, np.searchsorted(keys, boundary, "right")))
            window = head[:end]
        else:
            real = head[: int(np.searchsorted(head, np.searchsorted(keys, FAR, "left")))]
            missing = head[len(real) : len(real) + limit]
            begin = max(len(real) - limit, 0)
            if begin > 0:
                boundary = keys[real[begin]]
                begin = int(np.searchsorted(real, np.searchsorted(keys, boundary, "left")))
            window = np.concatenate((real[begin:], missing))
        remaining = len(head) + len(tail)
        if query.after is not None and len(tail):
            values = self._sort_values(tail, query.sort, None)
            v0, h0 = query.after
            hashes = c["hash"][tail]
            tail = tail[(values > v0) | ((values == v0) & (hashes > h0))]
            remaining = len(head) + len(tail)
        chosen = np.concatenate((window, tail)).astype(np.int64)
        values = self._sort_values(chosen, query.sort, None)
        hashes = c["hash"][chosen]
        order = np.lexsort((hashes, values))[:limit]
        page = Page([int(s) for s in chosen[order]], total, None)
        if remaining > limit > 0:
            last = order[-1]
            page.next_after = (float(values[last]), int(hashes[last]))
        return page

    def _sort_values(
        self,
        slots: IntArray,
        sort: str,
        distances: npt.NDArray[np.float64] | None,
    ) -> npt.NDArray[np.float64]:
        c = self.cols
        if sort == "distance" and distances is not None:
            return distances.astype(np.float64)
        column = c["updated"] if sort.endswith("updated") else c["start"]
        values = column[slots].astype(np.float64)
        if sort.startswith("-"):
            values = -values
        values[np.isnan(values)] = FAR
        return values

    def _within(
        self, slots: IntArray, center: tuple[float, float], radius_km: float
    ) -> tuple[IntArray, npt.NDArray[np.float64]]:
        """Bounding box on the lat/lon columns first, then the exact great-circle distance."""
        lat0, lon0 = center
        c = self.cols
        dlat = radius_km / 111.0
        lat = c["lat"][slots]
        box = (lat >= lat0 - dlat) & (lat <= lat0 + dlat)
        cos = math.cos(math.radians(lat0))
        if cos > 0.01:
            dlon = radius_km / (111.32 * cos)
            if dlon < 180:
                lon = c["lon"][slots]
                delta = np.abs((lon - lon0 + 180.0) % 360.0 - 180.0)
                box &= delta <= dlon
        slots = slots[box]
        lat1 = np.radians(c["lat"][slots].astype(np.float64))
        lon1 = np.radians(c["lon"][slots].astype(np.float64))
        la0, lo0 = math.radians(lat0), math.radians(lon0)
        a = np.sin((lat1 - la0) / 2) ** 2 + math.cos(la0) * np.cos(lat1) * (
            np.sin((lon1 - lo0) / 2) ** 2
        )
        distance = 6371.0088 * 2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
        inside = distance <= radius_km
        return slots[inside], distance[inside]

    def _collapse(
        self,
        slots: IntArray,
        values: npt.NDArray[np.float64],
        hashes: npt.NDArray[np.int64],
        distances: npt.NDArray[np.float64] | None,
    ) -> tuple[
        IntArray, npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64] | None
    ]:
        """One slot per canonical group: the group's first in the requested order."""
        groups = self.cols["group"][slots].astype(np.int64)
        # Records without a canonical id are their own group.
        lone = groups == NOT_SET
        groups[lone] = -(np.arange(int(lone.sum()), dtype=np.int64) + 1)
        order = np.lexsort((hashes, values, groups))
        first = np.ones(len(order), dtype=bool)
        sorted_groups = groups[order]
        first[1:] = sorted_groups[1:] != sorted_groups[:-1]
        keep = order[first]
        return (
            slots[keep],
            values[keep],
            hashes[keep],
            None if distances is None else distances[keep],
        )

    # ------------------------------------------------------------------------ aggregates

    def counts(self, column: str, *, mask: npt.NDArray[np.bool_] | None = None) -> dict[int, int]:
        live = self.cols["alive"][: self.size] & self.cols["listed"][: self.size]
        if mask is not None:
            live = live & mask
        values = self.cols[column][: self.size][live]
        uniques, counts = np.unique(values, return_counts=True)
        return {int(u): int(n) for u, n in zip(uniques, counts, strict=True)}

    def live_slots(self) -> IntArray:
        live = self.cols["alive"][: self.size] & self.cols["listed"][: self.size]
        return np.nonzero(live)[0].astype(np.int32)

    def group_slots(self, group: str) -> list[int]:
        gid = self.groups.get(group)
        if gid is None:
            return []
        return sorted(self.by_group.get(gid, ()))

    def keys_of(self, slots: Iterable[int]) -> list[str]:
        return [self.keys[s] for s in slots]
