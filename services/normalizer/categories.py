"""The canonical category taxonomy and the mapping of each provider's categories onto it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.contracts import Category, ExternalEvent, Provider, ProviderCategory

MARQUEE = "marquee"

# The canonical tree: top-level category -> subcategories. Names are unique over the whole tree
# because the categories collection is unique on (name, source).
TREE: dict[str, tuple[str, ...]] = {
    "music": (
        "rock",
        "pop",
        "hip-hop",
        "r&b",
        "jazz",
        "blues",
        "classical",
        "electronic",
        "country",
        "folk",
        "alternative",
        "metal",
        "latin",
        "reggae",
        "world",
    ),
    "sports": (
        "basketball",
        "baseball",
        "football",
        "soccer",
        "hockey",
        "tennis",
        "golf",
        "motorsports",
        "combat sports",
        "wrestling",
        "rugby",
        "cricket",
        "fitness",
    ),
    "arts & theatre": (
        "theatre",
        "musical",
        "comedy",
        "dance",
        "opera",
        "magic",
        "visual arts",
        "spoken word",
    ),
    "family": ("kids shows", "circus", "ice shows", "education"),
    "community": (
        "tech",
        "meetup",
        "workshop",
        "networking",
        "conference",
        "business",
        "food & drink",
        "charity",
        "culture",
        "wellness",
    ),
    "film": (),
    "other": (),
}

CANONICAL: list[Category] = [
    *(Category(name=top, source=MARQUEE) for top in TREE),
    *(Category(name=sub, source=MARQUEE, parent=top) for top, subs in TREE.items() for sub in subs),
]

_PARENT: dict[str, str] = {sub: top for top, subs in TREE.items() for sub in subs}

Match = tuple[str | None, str | None]


def _sub(name: str) -> tuple[str, str]:
    return _PARENT[name], name


# Provider names (lower-cased) -> canonical (category, subcategory). One table serves
# Ticketmaster segments/genres/subGenres, SeatGeek taxonomies and event types, and performer
# genres, because the vocabularies overlap ("Rock", "comedy", "theater"…).
_BY_NAME: dict[str, tuple[str, str | None]] = {
    # top levels
    "music": ("music", None),
    "concert": ("music", None),
    "concerts": ("music", None),
    "music_festival": ("music", None),
    "sports": ("sports", None),
    "arts & theatre": ("arts & theatre", None),
    "theater": _sub("theatre"),
    "theatre": _sub("theatre"),
    "film": ("film", None),
    "movie": ("film", None),
    "family": ("family", None),
    "community": ("community", None),
    "community/civic": ("community", None),
    "conference": _sub("conference"),
    "miscellaneous": ("other", None),
    # music genres
    "rock": _sub("rock"),
    "pop": _sub("pop"),
    "hip-hop/rap": _sub("hip-hop"),
    "hip-hop": _sub("hip-hop"),
    "hip hop": _sub("hip-hop"),
    "rap": _sub("hip-hop"),
    "r&b": _sub("r&b"),
    "jazz": _sub("jazz"),
    "blues": _sub("blues"),
    "classical": _sub("classical"),
    "electronic": _sub("electronic"),
    "dance/electronic": _sub("electronic"),
    "edm": _sub("electronic"),
    "country": _sub("country"),
    "folk": _sub("folk"),
    "alternative": _sub("alternative"),
    "indie": _sub("alternative"),
    "metal": _sub("metal"),
    "latin": _sub("latin"),
    "reggae": _sub("reggae"),
    "world": _sub("world"),
    # sports (Ticketmaster genres, SeatGeek taxonomies and event types)
    "basketball": _sub("basketball"),
    "nba": _sub("basketball"),
    "wnba": _sub("basketball"),
    "ncaa_basketball": _sub("basketball"),
    "baseball": _sub("baseball"),
    "mlb": _sub("baseball"),
    "minor_league_baseball": _sub("baseball"),
    "football": _sub("football"),
    "nfl": _sub("football"),
    "ncaa_football": _sub("football"),
    "soccer": _sub("soccer"),
    "mls": _sub("soccer"),
    "hockey": _sub("hockey"),
    "nhl": _sub("hockey"),
    "tennis": _sub("tennis"),
    "golf": _sub("golf"),
    "pga": _sub("golf"),
    "motorsports/racing": _sub("motorsports"),
    "auto_racing": _sub("motorsports"),
    "nascar": _sub("motorsports"),
    "boxing": _sub("combat sports"),
    "mixed martial arts": _sub("combat sports"),
    "mma": _sub("combat sports"),
    "wrestling": _sub("wrestling"),
    "wwe": _sub("wrestling"),
    "rugby": _sub("rugby"),
    "cricket": _sub("cricket"),
    # arts & theatre
    "miscellaneous theatre": _sub("theatre"),
    "broadway_tickets_national": _sub("musical"),
    "broadway": _sub("musical"),
    "musical": _sub("musical"),
    "comedy": _sub("comedy"),
    "dance": _sub("dance"),
    "dance_performance_tour": _sub("dance"),
    "ballet": _sub("dance"),
    "opera": _sub("opera"),
    "magic & illusion": _sub("magic"),
    "fine art": _sub("visual arts"),
    "spoken word": _sub("spoken word"),
    # family
    "children's theatre": _sub("kids shows"),
    "circus & specialty acts": _sub("circus"),
    "circus": _sub("circus"),
    "ice shows": _sub("ice shows"),
}

# Eventbrite's own category ids (GET /v3/categories/): id -> (name, canonical match).
EVENTBRITE_CATEGORIES: dict[str, tuple[str, tuple[str, str | None]]] = {
    "101": ("Business & Professional", _sub("business")),
    "102": ("Science & Technology", _sub("tech")),
    "103": ("Music", ("music", None)),
    "104": ("Film, Media & Entertainment", ("film", None)),
    "105": ("Performing & Visual Arts", ("arts & theatre", None)),
    "106": ("Fashion & Beauty", ("other", None)),
    "107": ("Health & Wellness", _sub("wellness")),
    "108": ("Sports & Fitness", ("sports", None)),
    "109": ("Travel & Outdoor", ("other", None)),
    "110": ("Food & Drink", _sub("food & drink")),
    "111": ("Charity & Causes", _sub("charity")),
    "112": ("Government & Politics", ("community", None)),
    "113": ("Community & Culture", _sub("culture")),
    "114": ("Religion & Spirituality", ("community", None)),
    "115": ("Family & Education", ("family", None)),
    "116": ("Seasonal & Holiday", ("other", None)),
    "117": ("Home & Lifestyle", ("other", None)),
    "118": ("Auto, Boat & Air", ("other", None)),
    "119": ("Hobbies & Special Interest", ("community", None)),
    "120": ("School Activities", _sub("education")),
    "199": ("Other", ("other", None)),
}

# Eventbrite music subcategories (3xxx, children of 103).
EVENTBRITE_SUBCATEGORIES: dict[str, tuple[str, tuple[str, str | None]]] = {
    "3001": ("Alternative", _sub("alternative")),
    "3002": ("Blues & Jazz", _sub("jazz")),
    "3003": ("Classical", _sub("classical")),
    "3004": ("Country", _sub("country")),
    "3006": ("EDM / Electronic", _sub("electronic")),
    "3007": ("Folk", _sub("folk")),
    "3008": ("Hip Hop / Rap", _sub("hip-hop")),
    "3009": ("Indie", _sub("alternative")),
    "3010": ("Latin", _sub("latin")),
    "3011": ("Metal", _sub("metal")),
    "3012": ("Opera", _sub("opera")),
    "3013": ("Pop", _sub("pop")),
    "3014": ("R&B", _sub("r&b")),
    "3015": ("Reggae", _sub("reggae")),
    "3017": ("Rock", _sub("rock")),
    "3018": ("Top 40", _sub("pop")),
}

# Eventbrite formats (format_id) that say what kind of community event it is.
EVENTBRITE_FORMATS: dict[str, tuple[str, str | None]] = {
    "1": ("Conference", "conference"),
    "2": ("Seminar or Talk", None),
    "3": ("Tradeshow, Consumer Show, or Expo", None),
    "4": ("Convention", "conference"),
    "5": ("Festival or Fair", None),
    "6": ("Concert or Performance", None),
    "7": ("Screening", None),
    "8": ("Dinner or Gala", None),
    "9": ("Class, Training, or Workshop", "workshop"),
    "10": ("Meeting or Networking Event", "networking"),
    "11": ("Party or Social Gathering", None),
    "12": ("Rally", None),
    "13": ("Tournament", None),
    "14": ("Game or Competition", None),
    "15": ("Race or Endurance Event", None),
    "16": ("Tour", None),
    "17": ("Attraction", None),
    "18": ("Camp, Trip, or Retreat", None),
    "19": ("Appearance or Signing", None),
    "100": ("Other", None),
}


def match_name(name: str) -> tuple[str, str | None] | None:
    """The canonical (category, subcategory) for one provider category or genre name."""
    return _BY_NAME.get(" ".join(name.lower().split()))


def _combine(matches: Iterable[tuple[str, str | None] | None], *, deepest: bool) -> Match:
    """Fold matches ordered general -> specific into one (category, subcategory).

    A subcategory brings its category along. ``deepest``: a later subcategory replaces an
    earlier one (SeatGeek: theater -> comedy); otherwise the first stays (Ticketmaster: the
    genre beats the looser subGenre). A bare category only fills a gap, and "other"
    (Ticketmaster's Miscellaneous segment) is the weakest.
    """
    category: str | None = None
    sub: str | None = None
    for match in matches:
        if match is None:
            continue
        cat, sub_match = match
        if sub_match is not None and (sub is None or deepest):
            category, sub = cat, sub_match
        elif sub_match is None and sub is None and category in (None, "other"):
            category = cat
    return category, sub


def canonical_category(
    provider: Provider | str, provider_categories: Sequence[ProviderCategory]
) -> Match:
    """Map a provider's own categories onto the canonical (category, subcategory).

    Ticketmaster segment/genre/subGenre and SeatGeek taxonomies are matched by name; Eventbrite
    by its category, subcategory and format ids; Meetup has none and is always community/meetup.
    """
    source = Provider(provider)
    if source is Provider.MEETUP:
        return "community", "meetup"
    if source is Provider.EVENTBRITE:
        return _eventbrite(provider_categories)
    deepest = source is Provider.SEATGEEK
    category, sub = _combine((match_name(pc.name) for pc in provider_categories), deepest=deepest)
    if deepest and any(pc.level == "type" and pc.name == "family" for pc in provider_categories):
        # SeatGeek lists a family show under "theater" and says so only in its type: the type
        # decides the category; a family subcategory (circus, ice shows) is kept.
        return "family", sub if category == "family" else None
    return category, sub


def _eventbrite(provider_categories: Sequence[ProviderCategory]) -> Match:
    by_level = {pc.level: pc.external_id for pc in provider_categories if pc.external_id}
    category: str | None = None
    sub: str | None = None
    top = EVENTBRITE_CATEGORIES.get(by_level.get("category") or "")
    if top is not None:
        category, sub = top[1]
    child = EVENTBRITE_SUBCATEGORIES.get(by_level.get("subcategory") or "")
    if child is not None and category in (None, "music", child[1][0]):
        category, sub = child[1]
    fmt = EVENTBRITE_FORMATS.get(by_level.get("format") or "")
    if fmt is not None and fmt[1] is not None and category in (None, "community") and sub is None:
        category, sub = "community", fmt[1]
    return category, sub


# Which level is the parent of which, for the provider's own hierarchy in the collection.
_PARENT_LEVEL = {"genre": "segment", "subgenre": "genre", "subcategory": "category"}


def provider_category_docs(event: ExternalEvent) -> list[Category]:
    """The event's provider categories as Category documents (source = the provider).

    Parents: Ticketmaster genre -> segment, subGenre -> genre; Eventbrite subcategory ->
    category; a SeatGeek taxonomy -> the taxonomy listed before it (SeatGeek lists root first).
    Unique on (name, source), like the collection.
    """
    out: dict[str, Category] = {}
    last_at: dict[str, str] = {}
    previous_taxonomy: str | None = None
    for pc in event.provider_categories:
        level = (pc.level or "").lower()
        parent: str | None = None
        if level in _PARENT_LEVEL:
            parent = last_at.get(_PARENT_LEVEL[level])
        elif level == "taxonomy":
            parent = previous_taxonomy
            previous_taxonomy = pc.name
        last_at[level] = pc.name
        if pc.name not in out:
            out[pc.name] = Category(
                name=pc.name, source=event.source.value, external_id=pc.external_id, parent=parent
            )
    return list(out.values())
