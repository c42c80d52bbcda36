"""Spotify performer enrichment: by Ticketmaster's Spotify link, else name search with a score."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from difflib import SequenceMatcher
from typing import Any

from services.ingestor.errors import QuotaSpent
from services.ingestor.http import ApiClient
from services.ingestor.progress import ProgressManager, call_hash
from services.ingestor.publish import RawPublisher
from shared.contracts import Provider, RawRecord
from shared.contracts.messages import Entity

log = logging.getLogger(__name__)

# Below this a name-search match is not published: a wrong artist is worse than none.
MIN_CONFIDENCE = 0.6
SPOTIFY_ID = re.compile(r"(?:open\.spotify\.com/artist/|spotify:artist:)([A-Za-z0-9]{22})")


# Event keys sent with an artist; a performer's later events get it when they next change.
MAX_EVENT_KEYS = 200


@dataclass(frozen=True, slots=True)
class PerformerRef:
    """A performer seen in another provider's payload, to be matched on Spotify."""

    provider: Provider
    performer_id: str
    name: str
    spotify_id: str | None = None
    event_key: str | None = None  # "{provider}:{external_id}" of the event that named it


@dataclass(frozen=True, slots=True)
class Match:
    artist: dict[str, Any]
    method: str  # "link" or "search"
    confidence: float


# Below this a name that is not the performer's (after normalising) is a different artist;
# above it, a spelling variant ("Metalica").
MIN_SPELLING_RATIO = 0.9


def normalise(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()
    text = re.sub(r"\s*[&+]\s*", " and ", text)
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    text = re.sub(r"^the ", "", text.strip())
    return re.sub(r"\s+", " ", text).strip()


def score(wanted: str, candidates: list[dict[str, Any]]) -> tuple[dict[str, Any], float] | None:
    """The best candidate and a confidence in [0, 1].

    Name similarity first; several artists with the same name (common: "Muse" has many)
    share the confidence, and popularity picks among them.
    """
    target = normalise(wanted)
    scored = []
    for artist in candidates:
        name = normalise(str(artist.get("name") or ""))
        if not name:
            continue
        scored.append((_likeness(target, name), artist))
    if not scored or max(r for r, _ in scored) == 0.0:
        return None
    best_ratio = max(r for r, _ in scored)
    tied = [a for r, a in scored if r >= best_ratio - 1e-9]
    chosen = max(tied, key=lambda a: int(a.get("popularity") or 0))
    confidence = best_ratio / len(tied)
    if len(tied) > 1:
        # Same-name artists: trust the clearly most popular one a little more.
        pops = sorted((int(a.get("popularity") or 0) for a in tied), reverse=True)
        if pops[0] >= 2 * max(pops[1], 1):
            confidence = min(best_ratio * 0.8, 1.0)
    return chosen, round(confidence, 3)


def _likeness(wanted: str, name: str) -> float:
    """1.0 for the same name (spaces aside: "AC/DC", "ACDC"); a near spelling keeps its
    ratio; anything else is another artist, 0.0. A name that only contains the performer's
    ("X Trio", "The X Band" for X), or is contained in it, is another act, however alike."""
    if wanted == name or wanted.replace(" ", "") == name.replace(" ", ""):
        return 1.0
    words, others = set(wanted.split()), set(name.split())
    if words < others or others < words:
        return 0.0
    ratio = SequenceMatcher(None, wanted, name).ratio()
    return ratio if ratio >= MIN_SPELLING_RATIO else 0.0


def spotify_id_of(attraction: dict[str, Any]) -> str | None:
    """Ticketmaster attractions may carry ``externalLinks.spotify[].url``: a join key."""
    links = (attraction.get("externalLinks") or {}).get("spotify") or []
    for link in links:
        found = SPOTIFY_ID.search(str((link or {}).get("url") or ""))
        if found:
            return found.group(1)
    return None


def performers_in(provider: Provider, payload: dict[str, Any]) -> list[PerformerRef]:
    """Performers named in an event payload (Ticketmaster attractions, SeatGeek performers)."""
    event = f"{provider.value}:{payload['id']}" if payload.get("id") is not None else None
    if provider is Provider.TICKETMASTER:
        attractions = (payload.get("_embedded") or {}).get("attractions") or []
        return [
            PerformerRef(provider, str(a["id"]), str(a.get("name") or ""), spotify_id_of(a), event)
            for a in attractions
            if isinstance(a, dict) and a.get("id") and a.get("name")
        ]
    if provider is Provider.SEATGEEK:
        return [
            PerformerRef(provider, str(p["id"]), str(p.get("name") or ""), None, event)
            for p in payload.get("performers") or []
            if isinstance(p, dict) and p.get("id") is not None and p.get("name")
        ]
    return []


class SpotifyEnricher:
    """Looks performers up once per freshness period and publishes the artists it trusts.

    The artist payload goes to ``raw.events`` verbatim (entity performer, provider spotify);
    which performer it was matched to, how and how surely, rides in CloudEvents extension
    headers (``ce_matchprovider``, ``ce_matchid``, ``ce_matchmethod``, ``ce_matchconfidence``).
    """

    def __init__(
        self,
        client: ApiClient,
        publisher: RawPublisher,
        progress: ProgressManager,
        *,
        job_id: str,
        freshness: timedelta = timedelta(days=7),
        max_lookups: int | None = None,
    ) -> None:
        self.max_lookups = max_lookups
        self.client = client
        self.publisher = publisher
        self.progress = progress
        self.job_id = job_id
        self.freshness = freshness
        self.matched = 0
        self.unmatched = 0
        self.skipped = 0
        self.events: dict[tuple[Provider, str], list[str]] = {}

    async def match(self, ref: PerformerRef) -> Match | None:
        if ref.spotify_id:
            page = await self.client.get(f"artists/{ref.spotify_id}")
            if isinstance(page.data, dict) and page.data.get("id"):
                return Match(page.data, "link", 1.0)
        page = await self.client.get("search", {"type": "artist", "q": ref.name, "limit": 10})
        items = ((page.data or {}).get("artists") or {}).get("items") or []
        best = score(ref.name, [i for i in items if isinstance(i, dict)])
        if best is None or best[1] < MIN_CONFIDENCE:
            return None
        return Match(best[0], "search", best[1])

    async def enrich(self, refs: Iterable[PerformerRef]) -> int:
        """Match each distinct performer; stops quietly when Spotify's budget is spent."""
        refs = list(refs)
        # Which events name each performer: the normalizer re-merges those once the artist
        # lands, since the events usually reached the catalogue before their Spotify match.
        self.events = {}
        for ref in refs:
            if ref.event_key:
                named = self.events.setdefault((ref.provider, ref.performer_id), [])
                if ref.event_key not in named and len(named) < MAX_EVENT_KEYS:
                    named.append(ref.event_key)
        seen: set[tuple[Provider, str]] = set()
        saved = self.progress.freshness
        self.progress.freshness = self.freshness
        try:
            for ref in refs:
                if (ref.provider, ref.performer_id) in seen:
                    continue
                if (
                    self.max_lookups is not None
                    and self.matched + self.unmatched >= self.max_lookups
                ):
                    log.info("spotify: %d lookups this sync, the rest wait", self.max_lookups)
                    break
                seen.add((ref.provider, ref.performer_id))
                partition = f"{ref.provider.value}:{ref.performer_id}"
                call = call_hash("match", {"name": ref.name, "link": ref.spotify_id or ""})
                if await self.progress.should_skip(Provider.SPOTIFY, "match", partition, call):
                    self.skipped += 1
                    continue
                try:
                    found = await self.match(ref)
                except QuotaSpent as spent:
                    log.warning("spotify enrichment stopped: %s", spent)
                    break
                if found is None:
                    self.unmatched += 1
                else:
                    await self._publish(ref, found)
                    self.matched += 1
                await self.progress.done(Provider.SPOTIFY, "match", partition, call)
        finally:
            self.progress.freshness = saved
        return self.matched

    async def _publish(self, ref: PerformerRef, found: Match) -> None:
        record = RawRecord(
            provider=Provider.SPOTIFY,
            entity=Entity.PERFORMER,
            external_id=str(found.artist["id"]),
            job_id=self.job_id,
            payload=found.artist,
        )
        await self.publisher.publish(
            [record],
            extra_headers={
                "ce_matchprovider": ref.provider.value,
                "ce_matchid": ref.performer_id,
                "ce_matchmethod": found.method,
                "ce_matchconfidence": f"{found.confidence:.3f}",
                "ce_matchevents": ",".join(self.events.get((ref.provider, ref.performer_id), [])),
            },
        )
