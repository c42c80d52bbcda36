"""Cross-provider entity resolution: block candidates, score pairs, pick the same performance."""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.normalizer.categories import TREE
from shared.contracts import ExternalEvent

# Words that differ between providers' titles of the same performance and say nothing.
STOPWORDS = frozenset(
    {
        *("the", "a", "an", "and", "of", "at", "vs", "v", "versus", "in", "on", "with"),
        *("live", "tour", "world", "tickets", "ticket", "presents", "feat", "featuring", "ft"),
        *("concert", "show", "night", "official"),
    }
)
MATCH_THRESHOLD = 0.62
# Blocks are per category (a record only meets candidates it could match); a record without
# one searches every top-level category.
CATEGORIES: tuple[str, ...] = tuple(TREE)
NO_CATEGORY = "-"
# A member leaves its event only when, its time set aside, it scores below this against every
# other member: lower than the join threshold, so a borderline record does not flap, and
# blind to time, so a rescheduled performance keeps its id.
SPLIT_BELOW = 0.45
YEAR = re.compile(r"(19|20)\d\d")
# A start more than this apart is never the same performance (a double-header is two),
# unless the gap is a provider's time-zone error (``zone_shift``).
MAX_START_GAP = timedelta(hours=3)
# Starts this close are the same time (the wall clocks of a time-zone error, too).
SAME_TIME = timedelta(minutes=15)
HOUR = timedelta(hours=1)
# How much a start that is off by a time-zone error counts for, as an unknown time does: the
# day and the wall clock agree, the instant does not.
ZONE_ERROR_WHEN = 0.6
# How alike the titles must be for a time-zone error to be believed: most words shared, not
# one performer's name ("Felix & the Signals" is not "Felix & the Lanterns").
ZONE_ERROR_TITLE = 0.75


def tokens(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()
    words = re.findall(r"[a-z0-9]+", plain)
    # Numbers stay ("Sprint #24" is not "Sprint #90"); years say nothing ("Tour 2027").
    return frozenset(w for w in words if w not in STOPWORDS and not YEAR.fullmatch(w))


# Variants providers write a performer's name in: a city abbreviated or not, "St." or
# "Saint" ("The" and "&"/"and" are stop words already). Both sides are spelled out the same way.
NAME_VARIANTS = {
    "la": ("los", "angeles"),
    "ny": ("new", "york"),
    "nyc": ("new", "york"),
    "sf": ("san", "francisco"),
    "st": ("saint",),
    "ste": ("sainte",),
    "mt": ("mount",),
}


def performer_key(name: str) -> str:
    """A performer's name as compared across providers: its words, variants spelled out."""
    words = [w for t in tokens(name) for w in NAME_VARIANTS.get(t, (t,))]
    return " ".join(sorted(set(words)))


def zone_shift(
    a_start: datetime, a_wall: datetime | None, b_start: datetime, b_wall: datetime | None
) -> int | None:
    """The hours b's start is off a's when that is a provider's time-zone error, else None.

    Two records of the same performance name the same wall-clock time at the venue; a provider
    that converts it with the wrong zone or offset (a stale DST rule, an organiser's home zone,
    the wall time taken for UTC) gets an instant a whole number of hours off, and its own
    offset (wall clock minus UTC) is off by the same hours. So: the wall clocks agree (within
    ``SAME_TIME``) and the offsets differ by a whole, non-zero number of hours. A double-header,
    or an early and a late show, is the other way round: one zone, two wall clocks, the hours
    between them in the wall clocks as much as in UTC; it never looks like this. Without a
    wall clock on both sides a gap cannot be told from a second performance: None.
    ``a_start``/``b_start`` are aware UTC, the walls naive local times.
    """
    if a_wall is None or b_wall is None or abs(a_wall - b_wall) > SAME_TIME:
        return None
    a_offset = a_wall - a_start.replace(tzinfo=None)
    b_offset = b_wall - b_start.replace(tzinfo=None)
    hours, rest = divmod(a_offset - b_offset, HOUR)
    return hours if hours and not rest else None


def overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """Containment: how much of the shorter side the other covers (handles "+ - City")."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def people_overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """Share of the shorter line-up found in the other ("Miners" is "Los Angeles Miners")."""
    if not a or not b:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    others = [frozenset(name.split()) for name in large]
    found = 0
    for name in small:
        words = frozenset(name.split())
        if any(words <= other or other <= words for other in others):
            found += 1
    return found / len(small)


def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class Profile:
    """What resolution looks at in one per-source record (computed once per record)."""

    key: str  # source:external_id
    source: str
    title: frozenset[str]
    performers: frozenset[str]
    venue: frozenset[str]
    city: str | None
    lat: float | None
    lon: float | None
    start: datetime | None  # None when the time is TBD
    day: str | None  # local date, YYYY-MM-DD
    online: bool
    addon: bool
    category: str | None = None
    wall: datetime | None = None  # the venue's wall clock at the start (naive); None when TBD

    @classmethod
    def of(cls, event: ExternalEvent, *, addon: bool) -> Profile:
        venue = event.venue
        local = event.start.local
        day = local[:10] if local else None
        if day is None and event.start_utc is not None:
            day = event.start_utc.date().isoformat()
        # The city is already in the block; in titles it only makes unrelated events look alike
        # ("New York City vs. Dublin" / "PyData New York").
        place = tokens(venue.city) if venue and venue.city else frozenset()
        performers = frozenset(
            performer_key(p.name) for p in event.performers if performer_key(p.name)
        )
        title = tokens(event.title)
        start = None if event.start.time_tbd else event.start.utc
        return cls(
            key=f"{event.source.value}:{event.external_id}",
            source=event.source.value,
            title=(title - place) or title,
            performers=performers,
            venue=tokens(venue.name) if venue else frozenset(),
            city=" ".join(sorted(tokens(venue.city))) if venue and venue.city else None,
            lat=venue.lat if venue else None,
            lon=venue.lon if venue else None,
            start=start,
            day=day,
            online=event.online,
            addon=addon,
            category=event.category,
            wall=wall_clock(local) if start is not None else None,
        )

    def places(self) -> list[str]:
        """Its place keys: the city, the 0.1° geo cell, or ``any`` when it has neither."""
        keys = []
        if self.city:
            keys.append(f"c:{self.city}")
        if self.lat is not None and self.lon is not None:
            keys.append(f"g:{round(self.lat, 1)},{round(self.lon, 1)}")
        # No place (online, or the provider left it out): compare with the whole day.
        return keys or ["any"]

    def blocks(self) -> list[str]:
        """Keys of the buckets where its duplicates must be: same local day, place, and a
        category that can match (its own, or none: ``score`` rules out two different ones)."""
        if self.day is None:
            return []
        kinds = [self.category, NO_CATEGORY] if self.category else [*CATEGORIES, NO_CATEGORY]
        return [f"{self.day}|{place}|{kind}" for place in self.places() for kind in kinds]

    def indexed_under(self) -> list[str]:
        """Where others find it: its own place keys under its category, plus the day's
        catch-all for community events.

        Placeless records (online meetups) search the catch-all; their physical twins are
        community events (Eventbrite, Meetup), so only those go there. Indexing every
        record there would put a whole day's events under one key."""
        if self.day is None:
            return []
        places = self.places()
        if self.category == "community" and "any" not in places:
            places.append("any")
        return [f"{self.day}|{place}|{self.category or NO_CATEGORY}" for place in places]


def wall_clock(local: str | None) -> datetime | None:
    """A ``When.local`` with a time as a naive datetime; None for a date alone or junk."""
    if not local or len(local) <= 10:
        return None
    try:
        wall = datetime.fromisoformat(local)
    except ValueError:
        return None
    return wall.replace(tzinfo=None)


def score(a: Profile, b: Profile) -> float:
    """How surely two records are the same performance, in [0, 1] (0: certainly not)."""
    if a.source == b.source or a.addon != b.addon or a.day != b.day:
        return 0.0
    if a.category and b.category and a.category != b.category:
        return 0.0  # a ball game is never a tech meetup, however alike the titles
    gap = timedelta(0)
    shifted = False  # the starts differ by a time-zone error (believed below, or not)
    if a.start is not None and b.start is not None:
        gap = abs(a.start - b.start)
        shifted = gap > SAME_TIME and zone_shift(a.start, a.wall, b.start, b.wall) is not None
        # The wall clocks must not be more than 3 h apart either: one provider's time-zone
        # error can bring a double-header's other game within 3 h in UTC.
        walls = abs(a.wall - b.wall) if a.wall is not None and b.wall is not None else gap
        if max(gap, walls) > MAX_START_GAP and not shifted:
            return 0.0
        when = 1.0 if gap <= SAME_TIME else 0.5 if gap <= timedelta(minutes=45) else 0.1
    else:
        when = 0.6  # one time is TBD: the same day is all we know
    numbers_a = {t for t in a.title if t.isdigit()}
    numbers_b = {t for t in b.title if t.isdigit()}
    if numbers_a and numbers_b and not numbers_a & numbers_b:
        return 0.0  # "Meetup #24" and "Meetup #90" are two evenings of one series
    # Containment forgives "+ - Madrid" suffixes; Jaccard keeps a one-word title from
    # swallowing a long one.
    title = 0.5 * (overlap(a.title, b.title) + jaccard(a.title, b.title))
    venue_names = overlap(a.venue, b.venue)
    if a.lat is not None and b.lat is not None and a.lon is not None and b.lon is not None:
        distance = km(a.lat, a.lon, b.lat, b.lon)
        if distance > 2 and venue_names < 0.5:
            return 0.0  # two places: two events, whatever the title says
        place = 1.0 if distance < 0.5 else 0.5 if distance < 2 else 0.0
    else:
        place = 0.0
    place = max(place, venue_names)
    people: float | None = None  # how much the two line-ups agree, when both have one
    if a.performers and b.performers:
        people = people_overlap(a.performers, b.performers)
        if min(len(a.performers), len(b.performers)) >= 2 and people < 1.0:
            return 0.0  # Madrid Rovers at Chicago is not Nashville Rovers at Chicago
    elif a.performers or b.performers:
        # Performer names also hide in the other side's title ("Adele" / "Adele - Live").
        named = a.performers or b.performers
        other = b.title if a.performers else a.title
        title = max(title, max((overlap(tokens(n), other) for n in named), default=0.0))
    if shifted:
        # A time-zone error is believed only where the rest agrees: the title, the venue, the
        # line-up where both have one (the local date and the wall clock agree already). The
        # time then counts as an unknown one would; otherwise the gap is a gap.
        if title >= ZONE_ERROR_TITLE and place >= 0.5 and (people is None or people == 1.0):
            when = ZONE_ERROR_WHEN
        elif gap > MAX_START_GAP:
            return 0.0
    if people is not None:
        return 0.35 * title + 0.2 * place + 0.2 * when + 0.25 * people
    return 0.5 * title + 0.25 * place + 0.25 * when


def canonical_id_for(key: str) -> str:
    """A canonical id derived from the record that founded it: redelivery finds the same id."""
    return "evt_" + hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass
class Cluster:
    id: str
    members: dict[str, Profile] = field(default_factory=dict)
    # Order of birth decides which of two merged events survives: the older id stays.
    born: tuple[int, str] = (1, "")

    def sources(self) -> set[str]:
        return {m.source for m in self.members.values()}

    def match(self, profile: Profile) -> float:
        """The best score against any member; a provider appears at most once per cluster."""
        if any(m.source == profile.source for m in self.members.values()):
            return 0.0
        return max((score(profile, m) for m in self.members.values()), default=0.0)

    def fits(self, profile: Profile) -> bool:
        """Whether a member still belongs with the others, whatever its time now says."""
        others = [m for m in self.members.values() if m.key != profile.key]
        if not others:
            return True
        best = max(
            score(replace(profile, start=m.start, day=m.day, wall=m.wall), m) for m in others
        )
        return best >= SPLIT_BELOW


class Resolver:
    """In-memory resolution over blocks; the store-backed pipeline loads the same shape.

    Besides placing records, it keeps the clustering right as records change: a member that
    no longer fits its event is split off (``split_from``), and two events that a record
    shows to be the same performance are merged into the older one (``merged``).
    """

    def __init__(self, threshold: float = MATCH_THRESHOLD) -> None:
        self.threshold = threshold
        self.clusters: dict[str, Cluster] = {}
        self.blocks: dict[str, set[str]] = {}
        self.of_key: dict[str, str] = {}
        self.merged: dict[str, str] = {}  # loser id → survivor id
        self.split_from: dict[str, str] = {}  # new cluster id → the cluster it left
        self._births = 0

    def load(self, cid: str, members: Iterable[Profile], born: datetime | None = None) -> None:
        """Restore a stored cluster (its members' profiles), as the pipeline reads them."""
        cluster = self.clusters.setdefault(cid, Cluster(cid))
        cluster.born = (0, born.isoformat() if born else "")
        for member in members:
            cluster.members[member.key] = member
            self.of_key[member.key] = cid
            self.index(cid, member)

    def candidates(self, profile: Profile) -> Iterable[Cluster]:
        seen: set[str] = set()
        for block in profile.blocks():
            for cid in self.blocks.get(block, ()):
                if cid not in seen and cid in self.clusters:
                    seen.add(cid)
                    yield self.clusters[cid]

    def best(self, profile: Profile, exclude: str | None = None) -> tuple[Cluster | None, float]:
        best: tuple[Cluster | None, float] = (None, 0.0)
        for cluster in self.candidates(profile):
            if cluster.id == exclude:
                continue
            value = cluster.match(profile)
            if value > best[1]:
                best = (cluster, value)
        return best if best[1] >= self.threshold else (None, best[1])

    def add(self, profile: Profile) -> tuple[str, float | None]:
        """Place a record: its existing cluster, the best match, or a new cluster."""
        known = self.of_key.get(profile.key)
        if known is not None:
            cluster = self.clusters[known]
            cluster.members[profile.key] = profile
            if cluster.fits(profile):
                self.index(cluster.id, profile)
                self._merge_around(cluster, profile)
                return self.of_key[profile.key], None
            # It changed into another performance: it leaves, the others keep the id.
            del cluster.members[profile.key]
            del self.of_key[profile.key]
            return self._place(profile, split_from=cluster.id)
        return self._place(profile)

    def _place(self, profile: Profile, split_from: str | None = None) -> tuple[str, float | None]:
        found, best = self.best(profile, exclude=split_from)
        value: float | None = best
        if found is None:
            cid = canonical_id_for(profile.key)
            if split_from is not None:
                # Its founding id may be the one it left: derive another, the same on replay.
                cid = canonical_id_for(f"{profile.key}>{split_from}")
            found = self.clusters.setdefault(cid, Cluster(cid))
            self._births += 1
            found.born = (1, f"{self._births:012d}")
            if split_from is not None:
                self.split_from[cid] = split_from
            value = None
        found.members[profile.key] = profile
        self.of_key[profile.key] = found.id
        self.index(found.id, profile)
        self._merge_around(found, profile)
        return self.of_key[profile.key], value

    def _merge_around(self, home: Cluster, profile: Profile) -> None:
        """Merge other events this record matches into one, when their providers differ."""
        for other in list(self.candidates(profile)):
            if other.id == home.id or other.id not in self.clusters:
                continue
            if home.sources() & other.sources() or other.match(profile) < self.threshold:
                continue
            cross = [(a, b) for a in home.members.values() for b in other.members.values()]
            if any(score(a, b) == 0.0 for a, b in cross):
                continue  # a hard rule says some pair is two performances
            survivor, loser = sorted((home, other), key=lambda c: (c.born, c.id))
            self._absorb(survivor, loser)
            home = survivor

    def _absorb(self, survivor: Cluster, loser: Cluster) -> None:
        for key, member in loser.members.items():
            for block in member.indexed_under() if member.day else []:
                self.blocks.get(block, set()).discard(loser.id)
            survivor.members[key] = member
            self.of_key[key] = survivor.id
            self.index(survivor.id, member)
        loser.members.clear()
        del self.clusters[loser.id]
        for old, new in self.merged.items():
            if new == loser.id:
                self.merged[old] = survivor.id
        self.merged[loser.id] = survivor.id

    def index(self, cid: str, profile: Profile) -> None:
        for block in profile.indexed_under() if profile.day else []:
            self.blocks.setdefault(block, set()).add(cid)
