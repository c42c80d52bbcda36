"""A deterministic world of performances, listed on several fake providers, with a clock."""

from __future__ import annotations

import bisect
import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

TM, SG, EB, MU = "ticketmaster", "seatgeek", "eventbrite", "meetup"
PROVIDERS = (TM, SG, EB, MU)
DEFAULT_START = datetime(2026, 11, 23, tzinfo=UTC)
_ALNUM = string.ascii_letters + string.digits


@cache
def zone(name: str) -> ZoneInfo:
    """ZoneInfo lookups are cached already, this just keeps call sites short."""
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class City:
    name: str
    state_code: str
    state_name: str
    country_code: str
    country_name: str
    tz: str
    lat: float
    lon: float


# A few dozen cities over several countries and time zones (incl. a +05:30 and southern ones),
# so that timezone handling is exercised, not just America/*.
CITIES = [
    City(*c)
    for c in [
        ("Los Angeles", "CA", "California", "US", "United States Of America",
         "America/Los_Angeles", 34.0522, -118.2437),
        ("New York", "NY", "New York", "US", "United States Of America",
         "America/New_York", 40.7128, -74.0060),
        ("Boston", "MA", "Massachusetts", "US", "United States Of America",
         "America/New_York", 42.3601, -71.0589),
        ("Chicago", "IL", "Illinois", "US", "United States Of America",
         "America/Chicago", 41.8781, -87.6298),
        ("Seattle", "WA", "Washington", "US", "United States Of America",
         "America/Los_Angeles", 47.6062, -122.3321),
        ("Denver", "CO", "Colorado", "US", "United States Of America",
         "America/Denver", 39.7392, -104.9903),
        ("Phoenix", "AZ", "Arizona", "US", "United States Of America",
         "America/Phoenix", 33.4484, -112.0740),
        ("Austin", "TX", "Texas", "US", "United States Of America",
         "America/Chicago", 30.2672, -97.7431),
        ("Miami", "FL", "Florida", "US", "United States Of America",
         "America/New_York", 25.7617, -80.1918),
        ("Nashville", "TN", "Tennessee", "US", "United States Of America",
         "America/Chicago", 36.1627, -86.7816),
        ("San Francisco", "CA", "California", "US", "United States Of America",
         "America/Los_Angeles", 37.7749, -122.4194),
        ("Atlanta", "GA", "Georgia", "US", "United States Of America",
         "America/New_York", 33.7490, -84.3880),
        ("Toronto", "ON", "Ontario", "CA", "Canada", "America/Toronto", 43.6532, -79.3832),
        ("Vancouver", "BC", "British Columbia", "CA", "Canada",
         "America/Vancouver", 49.2827, -123.1207),
        ("Montreal", "QC", "Quebec", "CA", "Canada", "America/Toronto", 45.5017, -73.5673),
        ("London", "", "", "GB", "Great Britain", "Europe/London", 51.5074, -0.1278),
        ("Manchester", "", "", "GB", "Great Britain", "Europe/London", 53.4808, -2.2426),
        ("Dublin", "", "", "IE", "Ireland", "Europe/Dublin", 53.3498, -6.2603),
        ("Berlin", "", "", "DE", "Germany", "Europe/Berlin", 52.5200, 13.4050),
        ("Munich", "", "", "DE", "Germany", "Europe/Berlin", 48.1351, 11.5820),
        ("Paris", "", "", "FR", "France", "Europe/Paris", 48.8566, 2.3522),
        ("Madrid", "", "", "ES", "Spain", "Europe/Madrid", 40.4168, -3.7038),
        ("Amsterdam", "", "", "NL", "Netherlands", "Europe/Amsterdam", 52.3676, 4.9041),
        ("Stockholm", "", "", "SE", "Sweden", "Europe/Stockholm", 59.3293, 18.0686),
        ("Sydney", "NSW", "New South Wales", "AU", "Australia",
         "Australia/Sydney", -33.8688, 151.2093),
        ("Melbourne", "VIC", "Victoria", "AU", "Australia",
         "Australia/Melbourne", -37.8136, 144.9631),
        ("Tokyo", "", "", "JP", "Japan", "Asia/Tokyo", 35.6762, 139.6503),
        ("Bengaluru", "KA", "Karnataka", "IN", "India", "Asia/Kolkata", 12.9716, 77.5946),
        ("Mexico City", "CMX", "Ciudad de Mexico", "MX", "Mexico",
         "America/Mexico_City", 19.4326, -99.1332),
        ("Sao Paulo", "SP", "Sao Paulo", "BR", "Brazil", "America/Sao_Paulo", -23.5505, -46.6333),
        ("Lagos", "LA", "Lagos", "NG", "Nigeria", "Africa/Lagos", 6.5244, 3.3792),
    ]
]  # fmt: skip

_CITY_INDEX = {c.name: i for i, c in enumerate(CITIES)}
CATEGORIES = ("music", "sports", "arts", "family", "comedy", "community")
_CATEGORY_WEIGHTS = (34, 20, 12, 8, 8, 18)

_SPONSORS = [
    "Crypto.com",
    "Northwind",
    "Globex",
    "Initech",
    "Vertex",
    "Harbor Bank",
    "Summit",
    "Pinnacle",
    "Aurora",
    "Beacon",
    "Keystone",
    "Evergreen",
    "Atlas",
    "Orion",
]
_ADJ = [
    "Velvet",
    "Electric",
    "Silver",
    "Midnight",
    "Golden",
    "Crimson",
    "Wild",
    "Neon",
    "Lunar",
    "Hollow",
    "Paper",
    "Static",
    "Broken",
    "Gentle",
    "Atomic",
    "Copper",
    "Violet",
    "Savage",
]
_NOUN = [
    "Wolves",
    "Echoes",
    "Machines",
    "Rivers",
    "Ghosts",
    "Hearts",
    "Tigers",
    "Signals",
    "Shadows",
    "Pilots",
    "Lanterns",
    "Owls",
    "Harbors",
    "Comets",
    "Foxes",
    "Giants",
]
_FIRST = [
    "Maya",
    "Leo",
    "Ava",
    "Noah",
    "Zoe",
    "Eli",
    "Iris",
    "Omar",
    "Lena",
    "Jonas",
    "Nina",
    "Theo",
    "Sara",
    "Hugo",
    "Kai",
    "Ruby",
    "Amir",
    "Elsa",
    "Felix",
    "Tara",
]
_LAST = [
    "Stone",
    "Rivera",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Kowalski",
    "Brooks",
    "Haddad",
    "Fischer",
    "Novak",
    "Quinn",
    "Adeyemi",
    "Silva",
    "Park",
    "Walsh",
]
_STREETS = ["St", "Ave", "Rd", "Blvd"]
_MUSIC_GENRES = ["Rock", "Pop", "Hip-Hop/Rap", "Country", "Electronic", "Jazz", "Alternative"]
_SPORTS = [  # (sg type, tm genre, nicknames)
    ("nba", "Basketball", ["Comets", "Titans", "Storm", "Kings", "Flyers"]),
    ("nhl", "Hockey", ["Blizzard", "Wolves", "Blades", "Frost", "Rangers"]),
    ("mlb", "Baseball", ["Mariners", "Pioneers", "Sluggers", "Hawks", "Miners"]),
    ("mls", "Soccer", ["United", "FC", "Athletic", "City", "Rovers"]),
]
_SHOWS = [
    "Hamilton",
    "Wicked",
    "The Lion King",
    "Les Miserables",
    "Chicago",
    "Hadestown",
    "Moulin Rouge!",
    "The Book of Mormon",
    "Six",
    "Swan Lake",
    "The Nutcracker",
    "Mamma Mia!",
    "Dear Evan Hansen",
    "Come From Away",
    "Aladdin",
    "Frozen",
]
_FAMILY = [
    "Disney On Ice: Frozen & Encanto",
    "PAW Patrol Live!",
    "Cirque du Soleil: Kooza",
    "Sesame Street Live!",
    "Monster Jam",
    "Harlem Globetrotters",
    "Bluey's Big Play",
    "Peppa Pig's Adventure",
    "Marvel Universe Live",
    "Blippi Live",
]
_TOPICS = [
    "PyData",
    "Rust",
    "JavaScript",
    "DevOps",
    "AI & ML",
    "Startup Founders",
    "Go",
    "Kubernetes",
    "Women in Tech",
    "Product Managers",
    "Data Engineering",
    "Linux Users",
]
_TALKS = [
    "Monthly Meetup",
    "Lightning Talks",
    "Hack Night",
    "Workshop: Getting Started",
    "Speaker Night",
    "Coffee & Code",
    "Open Source Sprint",
    "Career Panel",
]
_EB_CATEGORY = {
    "music": "103",
    "sports": "108",
    "arts": "105",
    "family": "115",
    "comedy": "105",
    "community": "102",
}


def rid(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


def slugify(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(p for p in out.split("-") if p)


@dataclass(slots=True)
class Venue:
    idx: int
    name: str
    city: City
    address: str
    postal_code: str
    lat: float
    lon: float
    capacity: int
    tm_id: str
    sg_id: int
    eb_id: str
    sg_name: str  # provider-specific spellings of the same venue, for the dedup to cope with
    eb_name: str


@dataclass(slots=True)
class Performer:
    idx: int
    name: str
    short_name: str
    category: str
    genre: str  # TM genre name / SG type
    home_city: City | None
    tm_id: str
    sg_id: int
    spotify_id: str | None
    tm_links_spotify: bool  # whether TM exposes externalLinks.spotify for this attraction
    score: float


@dataclass(slots=True)
class Artist:
    """A Spotify artist; same-name decoys exist to make name matching ambiguous."""

    id: str
    name: str
    popularity: int
    followers: int | None
    genres: list[str]
    image_seed: str


@dataclass(slots=True)
class Rec:
    """One provider's listing of a performance (or of an add-on that looks like one)."""

    provider: str
    ext_id: str
    perf: Performance
    title: str
    changed: datetime
    created: datetime
    addon: str | None = None  # "parking", "pregame", "vip": not the same performance
    offset_min: int = 0  # add-ons start a bit before the show
    price_factor: float = 1.0
    tm_tz_missing: bool = False
    tm_price_missing: bool = False
    tm_status_empty: bool = False
    tm_date_flag: str | None = None  # "TBA" / "TBD": hidden unless includeTBA/includeTBD=yes
    eb_cancel_reads: str | None = None  # a cancelled EB event may keep reading live/completed
    mu_token: str = ""
    mu_recurring: bool = False
    previous_ids: list[str] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return self.perf.start - timedelta(minutes=self.offset_min)


@dataclass(slots=True)
class Group:
    """A Meetup group (and the Eventbrite organization it maps to when both exist)."""

    id: str
    name: str
    urlname: str
    city: City


@dataclass(slots=True)
class Performance:
    pid: str
    category: str
    genre: str
    title: str
    performers: list[Performer]
    venue: Venue
    start: datetime  # aware, UTC; the local wall time comes from venue.city.tz
    duration_min: int
    time_tbd: bool
    price: tuple[float, float] | None
    status: str  # scheduled, cancelled, postponed, rescheduled
    created: datetime
    online: bool = False
    group: Group | None = None
    eb_org: str = ""
    listing_count: int = 0
    recs: dict[str, Rec] = field(default_factory=dict)
    addons: list[Rec] = field(default_factory=list)

    @property
    def tz(self) -> str:
        return self.venue.city.tz

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


class World:
    """All performances, provider listings, indexes and the simulated clock."""

    def __init__(self, seed: int = 42, events: int = 2000, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.seed = seed
        self.n_events = events
        self.start = start.astimezone(UTC)
        self.now = self.start
        self.step = 0
        # Not for security: a seeded generator is the whole point (same seed, same world).
        self.rng = random.Random(seed)  # noqa: S311
        self.venues: list[Venue] = []
        self.performers: list[Performer] = []
        self.artists: list[Artist] = []
        self.artists_by_id: dict[str, Artist] = {}
        self.groups: list[Group] = []
        self.groups_by_urlname: dict[str, Group] = {}
        self.eb_orgs: dict[str, str] = {}  # org id -> name
        self.eb_org_tz: dict[str, str] = {}  # org id -> the zone of its home city
        self.perfs: list[Performance] = []
        self.by_id: dict[str, dict[str, Rec]] = {p: {} for p in PROVIDERS}
        self.index: dict[str, list[Rec]] = {}
        self.index_ts: dict[str, list[float]] = {}
        self.eb_by_org: dict[str, list[Rec]] = {}
        self.eb_by_venue: dict[str, list[Rec]] = {}
        self.mu_by_group: dict[str, list[Rec]] = {}
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}  # rendered bodies, cleared on change
        self._used_ids: set[str] = set()
        self._venue_city: dict[str, list[Venue]] = {}
        self._sg_next = 5_100_000
        self._pid_next = 0
        self._build()

    # ---------- ids ----------
    def _unique(self, make: Any) -> str:
        while True:
            value: str = make()
            if value not in self._used_ids:
                self._used_ids.add(value)
                return value

    def _tm_id(self) -> str:
        return self._unique(lambda: "vvG1" + rid(self.rng, self.rng.randint(12, 16)))

    def _sg_id(self) -> int:
        self._sg_next += self.rng.randint(1, 40)
        return self._sg_next

    def _digits(self, n: int) -> str:
        return self._unique(lambda: str(self.rng.randint(10 ** (n - 1), 10**n - 1)))

    # ---------- generation ----------
    def _build(self) -> None:
        rng = self.rng
        for city in CITIES:
            for j in range(rng.randint(4, 7)):
                self._make_venue(city, j)
            if rng.random() < 0.8:
                # One Eventbrite organization per city that runs community events.
                org = self._digits(12)
                self.eb_orgs[org] = f"{city.name} Community Events"
                self.eb_org_tz[org] = city.tz
            for topic in rng.sample(_TOPICS, 3):
                name = f"{topic} {city.name}"
                group = Group(self._digits(8), name, slugify(name), city)
                self.groups.append(group)
                self.groups_by_urlname[group.urlname] = group
        self._org_ids = sorted(self.eb_orgs)
        self._make_performers(min(800, max(60, self.n_events // 15)))
        for _ in range(self.n_events):
            self._make_performance(self.start + timedelta(days=-14), 194)
        self._reindex()

    def _make_venue(self, city: City, j: int) -> None:
        rng = self.rng
        if city.name == "Los Angeles" and j == 0:
            name = "Crypto.com Arena"
        else:
            pattern = rng.choice(
                [
                    "{s} Arena",
                    "{s} Stadium",
                    "{c} Theatre",
                    "The {a} Room",
                    "{c} Music Hall",
                    "{s} Center",
                    "{c} Convention Centre",
                    "The {a} Lounge",
                    "{s} Pavilion",
                ]
            )
            name = pattern.format(s=rng.choice(_SPONSORS), c=city.name, a=rng.choice(_ADJ))
        sg_name = name if rng.random() < 0.6 else f"{name} - {city.name}"
        eb_name = name if rng.random() < 0.5 else f"{name}, {city.name}"
        self._venue_city.setdefault(city.name, [])
        self.venues.append(
            Venue(
                idx=len(self.venues),
                name=name,
                city=city,
                address=f"{rng.randint(1, 2500)} {rng.choice(_LAST)} {rng.choice(_STREETS)}",
                postal_code=str(rng.randint(10000, 99999)),
                lat=round(city.lat + rng.uniform(-0.08, 0.08), 6),
                lon=round(city.lon + rng.uniform(-0.08, 0.08), 6),
                capacity=rng.choice([300, 800, 2500, 5000, 18000, 45000]),
                tm_id=self._unique(lambda: "KovZ" + rid(self.rng, 8)),
                sg_id=self.rng.randint(100, 999_999),
                eb_id=self._digits(8),
                sg_name=sg_name,
                eb_name=eb_name,
            )
        )
        self._venue_city[city.name].append(self.venues[-1])

    def _add_performer(
        self, name: str, short: str, category: str, genre: str, home: City | None
    ) -> Performer:
        rng = self.rng
        spotify_id = None
        if category in ("music", "comedy") and rng.random() < 0.85:
            spotify_id = self._unique(lambda: rid(self.rng, 22))
            genres = [genre.lower()] if rng.random() < 0.6 else []
            self._add_artist(
                Artist(
                    spotify_id,
                    name,
                    rng.randint(20, 95),
                    rng.randint(1000, 5_000_000) if rng.random() < 0.9 else None,
                    genres,
                    rid(rng, 10),
                )
            )
            if rng.random() < 0.25:
                # Same-name artist: ambiguity for anyone matching Spotify by name only.
                self._add_artist(
                    Artist(
                        self._unique(lambda: rid(self.rng, 22)),
                        name,
                        rng.randint(0, 25),
                        rng.randint(0, 900),
                        [],
                        rid(rng, 10),
                    )
                )
        p = Performer(
            idx=len(self.performers),
            name=name,
            short_name=short,
            category=category,
            genre=genre,
            home_city=home,
            tm_id=self._unique(lambda: "K8vZ9" + rid(self.rng, 6)),
            sg_id=self.rng.randint(1, 999_999),
            spotify_id=spotify_id,
            tm_links_spotify=spotify_id is not None and rng.random() < 0.7,
            score=round(rng.uniform(0.2, 0.95), 3),
        )
        self.performers.append(p)
        return p

    def _add_artist(self, artist: Artist) -> None:
        self.artists.append(artist)
        self.artists_by_id[artist.id] = artist

    def _make_performers(self, n_artists: int) -> None:
        rng = self.rng
        self.teams: dict[str, list[Performer]] = {}
        for sport, genre, nicks in _SPORTS:
            teams = []
            for city in CITIES[:15] if sport != "mls" else CITIES[:22]:
                nick = rng.choice(nicks)
                name = f"{city.name} {nick}"
                if city.name == "Los Angeles" and sport == "nba":
                    name, nick = "Los Angeles Lakers", "Lakers"
                if city.name == "Boston" and sport == "nba":
                    name, nick = "Boston Celtics", "Celtics"
                teams.append(self._add_performer(name, nick, "sports", genre, city))
            self.teams[sport] = teams
        self.music: list[Performer] = []
        names: set[str] = set()
        while len(self.music) < n_artists:
            name = rng.choice(
                [
                    f"{rng.choice(_ADJ)} {rng.choice(_NOUN)}",
                    f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                    f"The {rng.choice(_NOUN)}",
                    f"DJ {rng.choice(_FIRST)}",
                    f"{rng.choice(_FIRST)} & the {rng.choice(_NOUN)}",
                ]
            )
            if name not in names:
                names.add(name)
                genre = rng.choice(_MUSIC_GENRES)
                self.music.append(self._add_performer(name, name, "music", genre, None))
        self.comics = [
            self._add_performer(f"{f} {last}", f"{f} {last}", "comedy", "Comedy", None)
            for f, last in {(rng.choice(_FIRST), rng.choice(_LAST)) for _ in range(40)}
        ]
        self.comics.sort(key=lambda p: p.name)
        self.shows = [self._add_performer(s, s, "arts", "Theatre", None) for s in _SHOWS]
        self.family = [self._add_performer(s, s, "family", "Family", None) for s in _FAMILY]

    def _new_pid(self) -> str:
        self._pid_next += 1
        return f"perf-{self._pid_next:07d}"

    def _make_performance(self, base: datetime, span_days: int) -> Performance:
        rng = self.rng
        category = rng.choices(CATEGORIES, _CATEGORY_WEIGHTS)[0]
        performers: list[Performer]
        group = None
        if category == "sports":
            sport, genre, _ = rng.choice(_SPORTS)
            home, away = rng.sample(self.teams[sport], 2)
            performers = [home, away]
            city = home.home_city or CITIES[0]
        else:
            if category == "community":
                group = rng.choice(self.groups)
                city, genre, performers = group.city, "Community", []
            else:
                pool = {
                    "music": self.music,
                    "arts": self.shows,
                    "family": self.family,
                    "comedy": self.comics,
                }[category]
                performers = [rng.choice(pool)]
                if category == "music" and rng.random() < 0.3:
                    performers.append(rng.choice(self.music))  # a support act
                    if performers[1] is performers[0]:
                        performers.pop()
                city, genre = rng.choice(CITIES), performers[0].genre
            sport = genre
        venue = rng.choice(self._venues_in(city))
        day = (base + timedelta(days=rng.randrange(span_days))).astimezone(zone(city.tz)).date()
        hour, minute = rng.choice(
            {
                "sports": [(19, 0), (19, 30), (13, 5), (16, 0)],
                "community": [(18, 30), (19, 0)],
                "family": [(11, 0), (14, 0), (17, 30)],
            }.get(category, [(19, 30), (20, 0), (21, 0)])
        )
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone(city.tz))
        time_tbd = category != "community" and rng.random() < 0.04
        free = category == "community" and rng.random() < 0.7
        low = round(rng.uniform(15, 120), 2)
        price = None if free else (low, round(low * rng.uniform(1.5, 6), 2))
        title = self._canonical_title(category, performers, group)
        perf = Performance(
            pid=self._new_pid(),
            category=category,
            genre=genre if category != "sports" else sport,
            title=title,
            performers=performers,
            venue=venue,
            start=local.astimezone(UTC),
            duration_min=rng.choice([90, 120, 150, 180]),
            time_tbd=time_tbd,
            price=price,
            status="scheduled",
            created=self.now - timedelta(days=rng.randint(1, 200), minutes=rng.randint(0, 1439)),
            online=category == "community" and rng.random() < 0.12,
            group=group,
            listing_count=0 if rng.random() < 0.15 else rng.randint(5, 900),
        )
        r = rng.random()
        if r < 0.01 and category != "community":
            perf.status = "cancelled"
        elif r < 0.015 and category != "community":
            perf.status = "postponed"
        orgs = self._org_ids
        perf.eb_org = orgs[_CITY_INDEX[city.name] % len(orgs)] if orgs else ""
        self._list(perf)
        self.perfs.append(perf)
        return perf

    def _venues_in(self, city: City) -> list[Venue]:
        return self._venue_city[city.name]

    def _canonical_title(self, category: str, ps: list[Performer], group: Group | None) -> str:
        if category == "sports":
            return f"{ps[0].name} vs. {ps[1].name}"
        if category == "community" and group is not None:
            return f"{group.name}: {self.rng.choice(_TALKS)} #{self.rng.randint(2, 120)}"
        if category == "music" and len(ps) > 1:
            return f"{ps[0].name} with {ps[1].name}"
        return ps[0].name

    def _title_for(self, perf: Performance, provider: str) -> str:
        """Provider wording differs for the same performance; dedup has to see through it."""
        rng, ps, t = self.rng, perf.performers, perf.title
        if perf.category == "sports":
            home, away = ps
            return {
                TM: f"{home.name} vs. {away.name}",
                SG: f"{away.name} at {home.name}",
                EB: f"{home.short_name} vs {away.short_name}",
            }.get(provider, t)
        if perf.category == "community":
            if provider == EB and perf.group is not None:
                head, _, tail = t.partition(": ")
                return f"{tail} | {head}"
            return t
        r = rng.random()
        if provider == SG and perf.category == "music" and r < 0.35:
            return f"{ps[0].name} - World Tour 2027"
        if provider == SG and perf.category in ("arts", "family") and r < 0.5:
            return f"{t} - {perf.venue.city.name}"
        if provider == TM and perf.category == "arts" and r < 0.3:
            return f"{t} (Touring)"
        if provider == EB:
            return f"{t} Live" if r < 0.5 else t
        if r > 0.9:
            return f"{t} (18+)"
        return t

    def _providers_for(self, category: str) -> list[str]:
        r = self.rng.random()
        if category == "community":
            if r < 0.42:
                return [MU]
            if r < 0.72:
                return [EB]
            return [MU, EB] if r < 0.97 else [TM, EB, MU]
        if r < 0.33:
            return [TM]
        if r < 0.55:
            return [SG]
        if r < 0.92:
            return [TM, SG]
        if r < 0.96:
            return [TM, SG, EB]
        return [SG, EB] if r < 0.98 else [EB]

    def _new_rec(self, perf: Performance, provider: str, addon: str | None = None) -> Rec:
        rng = self.rng
        if provider == TM:
            ext = self._tm_id()
        elif provider == SG:
            ext = str(self._sg_id())
        elif provider == EB:
            ext = self._digits(12)
        else:
            ext = self._digits(9)
        rec = Rec(provider, ext, perf, self._title_for(perf, provider), self.now, perf.created)
        rec.price_factor = round(rng.uniform(0.9, 1.15), 3)
        rec.tm_tz_missing = rng.random() < 0.1
        rec.tm_price_missing = rng.random() < 0.5
        rec.tm_status_empty = rng.random() < 0.02
        d = rng.random()
        rec.tm_date_flag = "TBA" if d < 0.01 else "TBD" if d < 0.02 else None
        rec.eb_cancel_reads = rng.choice(["live", "completed", None])
        if provider == MU:
            rec.mu_token = self._unique(lambda: rid(self.rng, 13, string.ascii_lowercase))
            rec.mu_recurring = rng.random() < 0.3
        if addon:
            rec.addon = addon
            rec.offset_min = {"parking": 90, "pregame": 60, "vip": 120}[addon]
            base = rec.title
            rec.title = {
                "parking": f"Parking: {base}"
                if provider == TM
                else f"Parking Passes Only - {base}",
                "pregame": f"Pre-game Pass: {base}",
                "vip": f"{base} - VIP Upgrade Package",
            }[addon]
        self.by_id[provider][ext] = rec
        return rec

    def _list(self, perf: Performance) -> None:
        for provider in self._providers_for(perf.category):
            perf.recs[provider] = self._new_rec(perf, provider)
        if perf.category in ("sports", "music") and self.rng.random() < 0.1:
            # Add-ons only exist on the ticket marketplaces.
            marketplaces = [p for p in (TM, SG) if p in perf.recs]
            if marketplaces:
                kind = (
                    "pregame"
                    if perf.category == "sports" and self.rng.random() < 0.4
                    else (
                        "parking"
                        if perf.category == "sports"
                        else self.rng.choice(["vip", "parking"])
                    )
                )
                perf.addons.append(self._new_rec(perf, self.rng.choice(marketplaces), kind))

    # ---------- indexes ----------
    def all_recs(self) -> list[Rec]:
        out: list[Rec] = []
        for perf in self.perfs:
            out.extend(perf.recs.values())
            out.extend(perf.addons)
        return out

    def _reindex(self) -> None:
        self.cache.clear()
        buckets: dict[str, list[Rec]] = {p: [] for p in PROVIDERS}
        for rec in self.all_recs():
            # SeatGeek drops cancelled events entirely: they are absent from its lists.
            if rec.provider == SG and rec.perf.cancelled:
                continue
            buckets[rec.provider].append(rec)
        self.eb_by_org, self.eb_by_venue, self.mu_by_group = {}, {}, {}
        for provider, recs in buckets.items():
            recs.sort(key=lambda r: (r.start, r.ext_id))
            self.index[provider] = recs
            self.index_ts[provider] = [r.start.timestamp() for r in recs]
        for rec in self.index[EB]:
            self.eb_by_org.setdefault(rec.perf.eb_org, []).append(rec)
            if not rec.perf.online:
                self.eb_by_venue.setdefault(rec.perf.venue.eb_id, []).append(rec)
        for rec in self.index[MU]:
            if rec.perf.group is not None:
                self.mu_by_group.setdefault(rec.perf.group.urlname, []).append(rec)

    def window(self, provider: str, lo: datetime | None, hi: datetime | None) -> list[Rec]:
        """Records with lo <= start <= hi, sorted by start (bisect on the sorted index)."""
        ts = self.index_ts[provider]
        a = 0 if lo is None else bisect.bisect_left(ts, lo.timestamp())
        b = len(ts) if hi is None else bisect.bisect_right(ts, hi.timestamp())
        return self.index[provider][a:b]

    # ---------- clock ----------
    def advance(self, hours: float) -> dict[str, int]:
        """Move the clock; deterministically change, reschedule, cancel and create events."""
        self.step += 1
        self.now += timedelta(hours=hours)
        # A per-step generator: the outcome depends on (seed, step, hours), not on request order.
        self.rng = rng = random.Random(f"{self.seed}:{self.step}:{hours}")  # noqa: S311
        live = [p for p in self.perfs if p.start > self.now and not p.cancelled]
        scale = max(hours, 0.0) / 24

        def count(rate: float) -> int:
            return min(len(live), max(1, round(self.n_events * rate * scale))) if hours > 0 else 0

        summary = {"changed": 0, "rescheduled": 0, "cancelled": 0, "created": 0, "reissued": 0}
        picked = rng.sample(live, min(len(live), count(0.02) + count(0.005) + count(0.005)))
        n_change, n_resched = count(0.02), count(0.005)
        for i, perf in enumerate(picked):
            if i < n_change:
                self._change(perf)
                summary["changed"] += 1
            elif i < n_change + n_resched:
                summary["reissued"] += self._reschedule(perf)
                summary["rescheduled"] += 1
            else:
                self._cancel(perf)
                summary["cancelled"] += 1
        for _ in range(count(0.01)):
            perf = self._make_performance(self.now + timedelta(days=1), 120)
            perf.created = self.now
            perf.status = "scheduled"  # brand-new listings start out on sale
            for rec in [*perf.recs.values(), *perf.addons]:
                rec.created = rec.changed = self.now
            summary["created"] += 1
        summary["repriced"] = self._market(live, hours)
        self._reindex()
        return summary

    def trade(self, hours: float) -> int:
        """Markets move as ``hours`` of trading would move them, the clock and the rest of the
        world staying put: prices and listings change, nothing is rescheduled or cancelled.
        Returns the performances repriced."""
        self.step += 1
        live = [p for p in self.perfs if p.start > self.now and not p.cancelled]
        moved = self._market(live, hours)
        self._reindex()
        return moved

    def _market(self, live: list[Performance], hours: float) -> int:
        """Prices drift and listings sell down as the date nears: a share of the priced, listed
        performances (8 % a day) move. A generator of its own, so the other changes of a step
        are those they were before markets moved."""
        if hours <= 0:
            return 0
        rng = random.Random(f"{self.seed}:{self.step}:{hours}:market")  # noqa: S311
        priced = [p for p in live if p.price is not None and p.listing_count > 0]
        n = min(len(priced), max(1, round(len(priced) * 0.08 * hours / 24)))
        for perf in rng.sample(priced, n):
            assert perf.price is not None
            days_left = max((perf.start - self.now).total_seconds() / 86400, 0.0)
            # Nearer dates sell faster: 5-10 % of what is left, up to a third in the last days.
            share = rng.uniform(0.05, 0.1) + 0.25 / (1 + days_left / 3)
            sold = max(1, round(perf.listing_count * share))
            perf.listing_count = max(0, perf.listing_count - sold)
            f = 1 + rng.uniform(-0.04, 0.1)
            perf.price = (round(perf.price[0] * f, 2), round(perf.price[1] * f, 2))
            self._touch(perf)
        return n

    def _touch(self, perf: Performance) -> None:
        for rec in [*perf.recs.values(), *perf.addons]:
            rec.changed = self.now

    def _change(self, perf: Performance) -> None:
        rng = self.rng
        what = rng.choice(["price", "title", "time"])
        if what == "price" and perf.price is not None:
            f = rng.uniform(0.8, 1.3)
            perf.price = (round(perf.price[0] * f, 2), round(perf.price[1] * f, 2))
            perf.listing_count = rng.randint(0, 900)
        elif what == "title" and perf.recs:
            rec = perf.recs[rng.choice(sorted(perf.recs))]
            rec.title = rec.title + rng.choice(
                [
                    " - Added Show",
                    " (Rescheduled Date Pending)",
                    " - Second Show",
                    " [New Venue Layout]",
                ]
            )
        else:
            perf.start += timedelta(minutes=rng.choice([-30, 30, 60]))
            perf.time_tbd = False
        self._touch(perf)

    def _reschedule(self, perf: Performance) -> int:
        rng = self.rng
        perf.start += timedelta(days=rng.randint(7, 60))
        perf.status = "rescheduled"
        reissued = 0
        sg = perf.recs.get(SG)
        if sg is not None and rng.random() < 0.5:
            # SeatGeek sometimes re-lists a rescheduled event under a brand-new id.
            del self.by_id[SG][sg.ext_id]
            sg.previous_ids.append(sg.ext_id)
            sg.ext_id = str(self._sg_id())
            self.by_id[SG][sg.ext_id] = sg
            reissued = 1
        mu = perf.recs.get(MU)
        if mu is not None and mu.mu_recurring:
            # Meetup ids of recurring events change; the token stays.
            del self.by_id[MU][mu.ext_id]
            mu.previous_ids.append(mu.ext_id)
            mu.ext_id = self._digits(9)
            self.by_id[MU][mu.ext_id] = mu
        self._touch(perf)
        return reissued

    def _cancel(self, perf: Performance) -> None:
        perf.status = "cancelled"
        self._touch(perf)

    # ---------- truth ----------
    def ground_truth(self) -> list[dict[str, Any]]:
        out = []
        for perf in self.perfs:
            out.append(
                {
                    "performance_id": perf.pid,
                    "title": perf.title,
                    "category": perf.category,
                    "status": perf.status,
                    "start_utc": perf.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "timezone": perf.tz,
                    "time_tbd": perf.time_tbd,
                    "venue": perf.venue.name if not perf.online else None,
                    "records": [self._truth_rec(r) for r in perf.recs.values()],
                    "addons": [{**self._truth_rec(r), "kind": r.addon} for r in perf.addons],
                }
            )
        return out

    def _truth_rec(self, rec: Rec) -> dict[str, Any]:
        listed = not (rec.provider == SG and rec.perf.cancelled)
        return {
            "provider": rec.provider,
            "external_id": rec.ext_id,
            "title": rec.title,
            "listed": listed,
            "previous_ids": list(rec.previous_ids),
        }
