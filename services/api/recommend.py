"""Artist recommendations: upcoming events near a place, ranked by how much their performers
resemble the artists someone likes, each with the reasons why.

The liked artists (Spotify ids or names) are resolved in ``artists``, the Spotify artists the
normalizer stored for the providers' performers (an exact id on the ``spotify_id`` index, a name
on ``name_key``: its words, lower case, accents folded). The candidates are the canonical events
inside the circle and the dates: one query led by the ``geo`` index (the start is checked per
match), bounded by ``CANDIDATE_MAX``. Each candidate is scored here:

* genre similarity: weighted Jaccard between the liked genres (each weighted by the share of
  liked artists that have it) and the event's performers' genres (weight 1 each);
* ``ARTIST_BOOST`` when a liked artist plays;
* small terms for popularity (the most popular performer's Spotify popularity) and distance
  (nearer is better, linear to the radius edge).

An event with neither a shared genre nor a liked artist is not recommended: every recommendation
has a reason. The sandbox's Spotify offers no related artists, so none are used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.api.catalogue import (
    EARTH_RADIUS_KM,
    HIDDEN,
    TooBroad,
    distance_km,
)
from shared.contracts import EventStatus
from shared.mongo import ARTISTS, EVENTS, Document
from shared.search import ADDON, GEO, WHEN, name_key

MAX_ARTISTS = 20
CANDIDATE_MAX = 5000  # events inside one circle and date range that are ranked at most
ARTIST_BOOST = 1.0
POPULARITY_WEIGHT = 0.1
DISTANCE_WEIGHT = 0.1
GENRES_SHOWN = 3  # genres named in one reason


@dataclass(frozen=True, slots=True)
class Liked:
    """A liked artist as resolved: what was asked for and the Spotify artist it named."""

    asked: str
    name: str
    spotify_id: str | None
    genres: tuple[str, ...]
    popularity: int | None = None


@dataclass(slots=True)
class Profile:
    artists: list[Liked]
    weights: dict[str, float] = field(default_factory=dict)  # genre -> share of liked artists
    ids: dict[str, Liked] = field(default_factory=dict)
    names: dict[str, Liked] = field(default_factory=dict)


def profile_of(artists: Sequence[Liked]) -> Profile:
    found = Profile(list(artists))
    for artist in artists:
        for genre in {g.casefold() for g in artist.genres}:
            found.weights[genre] = found.weights.get(genre, 0.0) + 1 / len(artists)
        if artist.spotify_id:
            found.ids[artist.spotify_id] = artist
        found.names.setdefault(name_key(artist.name), artist)
    return found


@dataclass(slots=True)
class Scored:
    event_id: str
    score: float
    distance_km: float
    why: list[str]
    artists: list[str]  # the liked artists it is recommended for


def genre_similarity(weights: dict[str, float], genres: Iterable[str]) -> float:
    """Weighted Jaccard of the liked genres (weights) and an event's genres (1 each)."""
    event = {g.casefold() for g in genres}
    shared = sum(min(w, 1.0) for g, w in weights.items() if g in event)
    union = len(event) + sum(w for g, w in weights.items() if g not in event)
    return shared / union if union else 0.0


def _genres_text(genres: list[str]) -> str:
    shown = genres[:GENRES_SHOWN]
    word = "genre" if len(shown) == 1 else "genres"
    more = f" and {len(genres) - len(shown)} more" if len(genres) > len(shown) else ""
    return f"{word} {', '.join(shown)}{more}"


def score_event(
    profile: Profile, doc: Document, center: tuple[float, float], radius_km: float
) -> Scored | None:
    """The event's score and reasons, or None when nothing about it matches the profile."""
    performers = [p for p in doc.get("performers") or [] if isinstance(p, dict)]
    genres: list[str] = []
    playing: list[Liked] = []
    popularity = 0
    for p in performers:
        for g in p.get("genres") or []:
            if isinstance(g, str) and g.casefold() not in genres:
                genres.append(g.casefold())
        liked = profile.ids.get(str(p.get("spotify_id") or "")) or profile.names.get(
            name_key(str(p.get("name") or ""))
        )
        if liked is not None and liked not in playing:
            playing.append(liked)
        if isinstance(p.get("popularity"), int):
            popularity = max(popularity, int(p["popularity"]))
    similarity = genre_similarity(profile.weights, genres)
    if not playing and similarity <= 0:
        return None
    why = [f"{a.name} plays" for a in playing]
    # Who it resembles: the liked artists sharing most of its genres (the most popular first).
    sharing = sorted(
        (
            ([g for g in genres if g in {x.casefold() for x in a.genres}], a)
            for a in profile.artists
            if a not in playing
        ),
        key=lambda pair: (-len(pair[0]), -(pair[1].popularity or 0), pair[1].name),
    )
    for shared, artist in sharing[:2]:
        if shared:
            why.append(f"shares {_genres_text(shared)} with {artist.name}")
    distance = distance_km(center, doc)
    near = max(0.0, 1 - distance / radius_km) if radius_km > 0 and distance != float("inf") else 0
    score = (
        (ARTIST_BOOST if playing else 0.0)
        + similarity
        + POPULARITY_WEIGHT * popularity / 100
        + DISTANCE_WEIGHT * near
    )
    names = [a.name for a in playing] + [a.name for s, a in sharing if s]
    return Scored(
        str(doc["_id"]),
        round(score, 6),
        distance if distance != float("inf") else -1.0,
        why,
        list(dict.fromkeys(names)),
    )


def rank(scored: Iterable[Scored]) -> list[Scored]:
    """Best first; equal scores in id order (what the cursor's position relies on)."""
    return sorted(scored, key=lambda s: (-s.score, s.event_id))


def after_position(ranked: list[Scored], after: tuple[float, str] | None) -> list[Scored]:
    """The items after a cursor's position (``-score~id`` of the previous page's last)."""
    if after is None:
        return ranked
    value, last_id = after
    return [s for s in ranked if (-s.score, s.event_id) > (round(value, 6), last_id)]


def cursor_of(item: Scored) -> str:
    return f"{-item.score:.6f}~{item.event_id}"


def candidate_filter(
    center: tuple[float, float], radius_km: float, start_from: datetime, start_to: datetime
) -> Document:
    """Upcoming canonical events in the circle and dates: the ``geo`` index leads (as for a
    ranking by distance); the rest is checked per match."""
    lat, lon = center
    return {
        GEO: {"$geoWithin": {"$centerSphere": [[lon, lat], radius_km / EARTH_RADIUS_KM]}},
        "$and": [
            {WHEN: {"$gte": start_from, "$lte": start_to}},
            {"duplicate_of": None},
            {ADDON: {"$ne": True}},
            {"status": {"$ne": EventStatus.CANCELLED.value}},
        ],
    }


CANDIDATE_FIELDS: Document = {
    "performers.name": 1,
    "performers.spotify_id": 1,
    "performers.genres": 1,
    "performers.popularity": 1,
    "venue.lat": 1,
    "venue.lon": 1,
}


@dataclass(slots=True)
class Request:
    artists: list[str]
    center: tuple[float, float]
    radius_km: float
    start_from: datetime
    start_to: datetime
    limit: int = 10
    after: tuple[float, str] | None = None


@dataclass(slots=True)
class Result:
    liked: list[Liked]
    unmatched: list[str]
    items: list[tuple[Scored, Document]]
    total: int
    next_cursor: str | None


class Recommender:
    """What ``GET /recommendations``, its web page and the offline evaluation call."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def resolve(self, asked: Sequence[str]) -> tuple[list[Liked], list[str]]:
        """Each asked artist as a Spotify id, else as a name (the most popular of that name);
        the ones that are neither are returned apart."""
        wanted = list(dict.fromkeys(a for a in asked if a))
        keys = {a: name_key(a) for a in wanted}
        by_id: dict[str, Document] = {}
        async for doc in self.db[ARTISTS].find({"spotify_id": {"$in": wanted}}, _ARTIST_FIELDS):
            by_id.setdefault(str(doc["spotify_id"]), doc)
        by_name: dict[str, Document] = {}
        names = sorted({k for k in keys.values() if k})
        if names:
            async for doc in self.db[ARTISTS].find({"name_key": {"$in": names}}, _ARTIST_FIELDS):
                known = by_name.get(str(doc["name_key"]))
                if known is None or _popularity(doc) > _popularity(known):
                    by_name[str(doc["name_key"])] = doc
        liked: list[Liked] = []
        unmatched: list[str] = []
        for asked_for in wanted:
            hit = by_id.get(asked_for) or by_name.get(keys[asked_for])
            if hit is None:
                unmatched.append(asked_for)
                continue
            artist = Liked(
                asked_for,
                str(hit.get("name") or asked_for),
                hit.get("spotify_id"),
                tuple(str(g) for g in hit.get("genres") or []),
                hit.get("popularity") if isinstance(hit.get("popularity"), int) else None,
            )
            if all(a.spotify_id != artist.spotify_id or not a.spotify_id for a in liked):
                liked.append(artist)
        return liked, unmatched

    async def candidates(self, request: Request) -> list[Document]:
        found = candidate_filter(
            request.center, request.radius_km, request.start_from, request.start_to
        )
        cursor = self.db[EVENTS].find(found, CANDIDATE_FIELDS).limit(CANDIDATE_MAX + 1)
        docs = [doc async for doc in cursor]
        if len(docs) > CANDIDATE_MAX:
            raise TooBroad(
                "near", f"more than {CANDIDATE_MAX} events: narrow the circle or the dates"
            )
        return docs

    async def recommend(self, request: Request) -> Result:
        liked, unmatched = await self.resolve(request.artists)
        if not liked:
            return Result(liked, unmatched, [], 0, None)
        profile = profile_of(liked)
        scored = [
            s
            for doc in await self.candidates(request)
            if (s := score_event(profile, doc, request.center, request.radius_km)) is not None
        ]
        ranked = after_position(rank(scored), request.after)
        chosen = ranked[: request.limit]
        ids = [s.event_id for s in chosen]
        docs: dict[str, Document] = {}
        if ids:
            async for doc in self.db[EVENTS].find({"_id": {"$in": ids}}, HIDDEN):
                docs[str(doc["_id"])] = doc
        items = [(s, docs[s.event_id]) for s in chosen if s.event_id in docs]
        more = len(ranked) > request.limit
        return Result(liked, unmatched, items, len(ranked), cursor_of(chosen[-1]) if more else None)


_ARTIST_FIELDS: Document = {
    "name": 1,
    "name_key": 1,
    "spotify_id": 1,
    "genres": 1,
    "popularity": 1,
}


def _popularity(doc: Document) -> int:
    value = doc.get("popularity")
    return value if isinstance(value, int) else -1


def liked_view(artist: Liked) -> dict[str, Any]:
    return {
        "asked": artist.asked,
        "name": artist.name,
        "spotify_id": artist.spotify_id,
        "genres": list(artist.genres),
    }
