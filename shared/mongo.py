"""MongoDB helpers: the async client (PyMongo's AsyncMongoClient), indexes, capability probe."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import ASCENDING, DESCENDING, GEOSPHERE, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from pymongo.write_concern import WriteConcern

from shared.search import DAY, GEO, TERMS, WHEN
from shared.series import PRICE_SERIES, RETENTION_DAYS
from shared.settings import MongoSettings

Document = dict[str, Any]

EXTERNAL_EVENTS = "external_events"
EVENTS = "events"
CATEGORIES = "categories"
LOCAL_EVENTS = "local_events"
CHECKPOINTS = "checkpoints"
LEASES = "leases"

EXPORTS = "exports"  # the API's CSV export: a row per exported record
IMPORTS = "imports"  # the importer's claims: one per imported event
# The API's record of who asked for which import and when ("my imports" reads it per user).
IMPORT_REQUESTS = "api_import_requests"
# Outside subscribers' webhooks for canonical changes (API writes, importer and notifier read).
WEBHOOK_SUBSCRIPTIONS = "webhook_subscriptions"
# Spotify artists matched to providers' performers (the normalizer writes, recommendations read).
ARTISTS = "artists"
FEED_TOKENS = "feed_tokens"  # the API's revocable tokens for feed and widget URLs


def _search_indexes() -> list[IndexModel]:
    """What the API's listings run on (shared/search.py fields; services/api/catalogue.py says
    which leads). Each index is paid on every normalizer write, so there are only these: a
    word and a day, a range of instants, a circle. Provider, category, status and the rest are
    checked on the matches of a window."""
    return [
        # A word and a day: a range of days is a set of exact keys ({day: {$in: [...]}}), read
        # exactly on any server (a multikey index may apply only one bound of a range on its
        # second field: SecantusDB keeps one, so (terms, when) read a word to its end).
        IndexModel([(TERMS, ASCENDING), (DAY, ASCENDING)], name="terms_day"),
        IndexModel([(WHEN, ASCENDING), ("_id", ASCENDING)], name="when_id"),
        # The version stated: the server records it, and a request without it would then differ.
        IndexModel([(GEO, GEOSPHERE)], name="geo", **{"2dsphereIndexVersion": 3}),
    ]


INDEXES: dict[str, list[IndexModel]] = {
    EXTERNAL_EVENTS: [
        IndexModel(
            [("source", ASCENDING), ("external_id", ASCENDING)],
            unique=True,
            name="source_external_id_unique",
        ),
        IndexModel([("updated_at", ASCENDING), ("_id", ASCENDING)], name="updated_id"),
        *_search_indexes(),
    ],
    EVENTS: [
        # Where the normalizer finds candidate events: its members' blocks (multikey).
        IndexModel([("blocks", ASCENDING)], name="blocks"),
        # The change feed and sort=updated.
        IndexModel([("updated_at", ASCENDING), ("_id", ASCENDING)], name="change_feed"),
        *_search_indexes(),
    ],
    CATEGORIES: [
        IndexModel(
            [("name", ASCENDING), ("source", ASCENDING)], unique=True, name="name_source_unique"
        ),
    ],
    LOCAL_EVENTS: [
        IndexModel(
            [("source", ASCENDING), ("external_event_id", ASCENDING)], name="source_external_event"
        ),
        # The organizer's own local events in start order (GET /feeds/local-events.ics).
        IndexModel([("created_by", ASCENDING), ("start", ASCENDING)], name="created_by_start"),
    ],
    CHECKPOINTS: [
        IndexModel(
            [("provider", ASCENDING), ("stream", ASCENDING), ("partition", ASCENDING)],
            unique=True,
            name="provider_stream_partition_unique",
        ),
    ],
    EXPORTS: [IndexModel([("at", ASCENDING), ("_id", ASCENDING)], name="at_id")],
    IMPORTS: [IndexModel([("created_at", ASCENDING)], name="created_at")],
    IMPORT_REQUESTS: [
        IndexModel(
            [("requested_by", ASCENDING), ("requested_at", DESCENDING)], name="requested_by_at"
        )
    ],
    WEBHOOK_SUBSCRIPTIONS: [
        # "My webhooks" in creation order, and every subscription (admins) in the same order.
        IndexModel(
            [("owner", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)],
            name="owner_created_id",
        ),
        IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)], name="created_id"),
        # What the importer's matcher loads every few seconds.
        IndexModel([("active", ASCENDING)], name="active"),
    ],
    # Recommendations resolve liked artists by Spotify id or by name (services/api/recommend.py).
    ARTISTS: [
        IndexModel([("spotify_id", ASCENDING)], name="spotify_id"),
        IndexModel([("name_key", ASCENDING)], name="name_key"),
    ],
    # Scheduler slots: each document names its own expiry, so old slots go away by themselves.
    LEASES: [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl")],
    # Price and listing series (shared/series.py): a record's buckets by day, and retention.
    PRICE_SERIES: [
        IndexModel([("key", ASCENDING), ("day", ASCENDING)], name="key_day"),
        IndexModel([("day", ASCENDING)], expireAfterSeconds=RETENTION_DAYS * 86400, name="day_ttl"),
    ],
    # A caller's feed tokens, newest first (GET /feeds/tokens); a token itself is read by _id.
    FEED_TOKENS: [
        IndexModel([("owner", ASCENDING), ("created_at", DESCENDING)], name="owner_created")
    ],
}


def make_client(settings: MongoSettings, *, appname: str = "marquee") -> AsyncMongoClient[Document]:
    """A client whose datetimes come back timezone-aware in UTC."""
    return AsyncMongoClient(
        settings.url.get_secret_value(),
        appname=appname,
        tz_aware=True,
        tzinfo=UTC,
        serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
        socketTimeoutMS=settings.socket_timeout_ms,
    )


def get_database(
    client: AsyncMongoClient[Document], settings: MongoSettings, name: str | None = None
) -> AsyncDatabase[Document]:
    """The database with journaled writes: an acknowledged write has reached the journal."""
    return client.get_database(
        name or settings.database,
        codec_options=CodecOptions(tz_aware=True, tzinfo=UTC),
        write_concern=WriteConcern(w=settings.write_concern_w, j=settings.journal),
    )


# Indexes earlier versions created and no query uses any more: each still costs every write.
RETIRED: dict[str, list[str]] = {
    EXTERNAL_EVENTS: ["terms_when"],
    EVENTS: ["terms_when"],
}


async def ensure_indexes(db: AsyncDatabase[Document]) -> dict[str, list[str]]:
    """Create every index Marquee relies on that is missing and drop retired ones; returns the
    names per collection."""
    ensured: dict[str, list[str]] = {}
    for collection, indexes in INDEXES.items():
        # createIndexes is idempotent for an identical definition.
        ensured[collection] = await db[collection].create_indexes(indexes)
    for collection, names in RETIRED.items():
        present = {index["name"] async for index in await db[collection].list_indexes()}
        for name in present.intersection(names):
            await db[collection].drop_index(name)
    return ensured


DUPLICATE_KEY = 11000


def duplicates_only(err: BulkWriteError) -> list[int]:
    """The indexes of an unordered bulk's operations that hit a duplicate key; re-raises ``err``
    when anything else failed. (An unordered bulk carries on past each error, so every other
    operation was applied.)"""
    errors = err.details.get("writeErrors") or []
    if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise err
    return [int(e["index"]) for e in errors]


async def ping(client: AsyncMongoClient[Document]) -> None:
    await client.admin.command("ping")


# --------------------------------------------------------------------------- capability probe

MIN_WIRE_VERSION = 9  # MongoDB 4.4: what PyMongo 4.x and the aggregation stages below need


class StoreCapabilityError(RuntimeError):
    """The MongoDB-wire server lacks something Marquee relies on; the message names both."""


@dataclass(frozen=True, slots=True)
class StoreCapabilities:
    server: str  # "MongoDB 7.0.14" or "SecantusDB 0.5.3-beta.196 (MongoDB 8.2.11 wire)"
    wire_version: int
    checked: tuple[str, ...]


def _stages(plan: Any) -> set[str]:
    """Every ``stage`` named anywhere in an explain plan (nested input stages included)."""
    found: set[str] = set()
    if isinstance(plan, dict):
        if isinstance(plan.get("stage"), str):
            found.add(plan["stage"])
        for value in plan.values():
            found |= _stages(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _stages(value)
    return found


def uses_index(explain: Document) -> bool:
    """Whether an explain()'s winning plan reads through an index rather than a collection scan."""
    planner = explain.get("queryPlanner", explain)
    stages = _stages(planner.get("winningPlan", planner))
    return "COLLSCAN" not in stages and bool(stages & {"IXSCAN", "IDHACK", "EXPRESS_IXSCAN"})


async def probe_capabilities(db: AsyncDatabase[Document]) -> StoreCapabilities:
    """Check the server does what the code relies on; raise StoreCapabilityError naming what not.

    Run at stack start, by the test fixtures and by ``shared.bootstrap``: a server that lacks a
    feature fails there with one clear sentence instead of deep inside a service. It works in a
    scratch collection of ``db`` (the rights a service has already), dropped afterwards.
    """
    client = db.client
    hello = await client.admin.command("hello")
    build = await client.admin.command("buildInfo")
    version = str(build.get("version", "?"))
    server = (
        f"SecantusDB {build['secantusVersion']} (MongoDB {version} wire)"
        if "secantusVersion" in build
        else f"MongoDB {version}"
    )
    wire = int(hello.get("maxWireVersion", 0))

    def missing(feature: str, detail: str = "") -> StoreCapabilityError:
        extra = f": {detail}" if detail else ""
        return StoreCapabilityError(f"{server} at the configured MONGO_URL lacks {feature}{extra}")

    if wire < MIN_WIRE_VERSION:
        raise missing(f"wire version {MIN_WIRE_VERSION}+", f"it speaks {wire}")
    col = db[f"_capability_probe_{uuid.uuid4().hex[:8]}"]
    checked = [f"wire version {wire}"]
    try:
        await col.create_indexes(
            [
                IndexModel([("k", ASCENDING), ("n", ASCENDING)], unique=True, name="k_n"),
                IndexModel([("loc", GEOSPHERE)], name="loc_2dsphere"),
            ]
        )
        await col.insert_many(
            [
                {"k": f"k{i % 10}", "n": i, "loc": {"type": "Point", "coordinates": [i / 100, 0]}}
                for i in range(200)
            ]
        )
        try:
            await col.insert_one({"k": "k0", "n": 0})
        except Exception as err:
            if getattr(err, "code", None) != 11000:
                raise missing("unique indexes", f"a duplicate gave {err!r}") from err
        else:
            raise missing("unique indexes", "a duplicate key was accepted")
        checked.append("unique index")
        plan = await col.find({"k": "k3", "n": {"$gte": 50}}).sort("n", 1).explain()
        if not uses_index(plan):
            raise missing("index reads", "a compound-index query was planned as a scan")
        found = await col.find({"k": "k3", "n": {"$gte": 50}}).sort("n", 1).to_list()
        if [d["n"] for d in found] != list(range(53, 200, 10)):
            raise missing("compound index reads", "a range query answered wrongly")
        checked.append("compound index reads")
        cursor = await col.aggregate(
            [
                {"$match": {"k": {"$in": ["k1", "k2"]}}},
                {
                    "$facet": {
                        "by_k": [{"$group": {"_id": "$k", "avg": {"$avg": "$n"}}}],
                        "total": [{"$count": "n"}],
                    }
                },
            ]
        )
        facets = await cursor.to_list()
        averages = {g["_id"]: g["avg"] for g in facets[0]["by_k"]} if facets else {}
        if averages != {"k1": 96.0, "k2": 97.0} or facets[0]["total"] != [{"n": 40}]:
            raise missing("$facet with $group/$avg", f"answered {facets!r}")
        checked.append("$facet, $group/$avg")
        near = await col.find(
            {
                "loc": {
                    "$near": {
                        "$geometry": {"type": "Point", "coordinates": [0.5, 0]},
                        "$maxDistance": 1_200,
                    }
                }
            }
        ).to_list()
        if [d["n"] for d in near][:1] != [50] or len(near) != 3:
            raise missing("2dsphere $near", f"answered {[d['n'] for d in near]}")
        checked.append("2dsphere $near")
    except StoreCapabilityError:
        raise
    except Exception as err:
        raise missing("a feature Marquee relies on", f"{type(err).__name__}: {err}") from err
    finally:
        await col.drop()
    return StoreCapabilities(server, wire, tuple(checked))
