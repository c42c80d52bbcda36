"""The API over HTTP in process, over the real store (a private database on the test stack) with
a fake importer standing in for the Kafka round trip (tests/integration/test_api_e2e.py runs the
real one): the authorization matrix, search and error shapes, detail, listings and the change
feed, imports, rate limit, cache, CSV export shared between replicas."""

from __future__ import annotations

import csv
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cachetools import TTLCache
from pymongo.asynchronous.database import AsyncDatabase

from services.api.app import create_app
from services.api.auth import Authenticator, mint
from services.api.catalogue import HIDDEN, Catalogue, Query
from services.api.deps import Services
from services.api.export import Exports
from services.api.imports import Importer
from services.api.limits import RateLimiter, ResponseCache
from services.api.metrics import ApiMetrics
from services.api.replies import Replies
from services.api.store import IMPORT_RESULTS, PROVIDER_STATS, Store
from shared.contracts import Contract, ImportRequest, ImportResult, ImportStatus
from shared.metrics import ServiceMetrics
from shared.mongo import (
    CATEGORIES,
    EVENTS,
    EXPORTS,
    EXTERNAL_EVENTS,
    IMPORTS,
    LOCAL_EVENTS,
    Document,
    ensure_indexes,
)
from shared.search import ADDON, ADDON_REFUSED, with_search_fields
from shared.settings import ApiSettings

SECRET = "unit-test-secret-0123456789abcdef0123"
CHICAGO = (41.88, -87.63)


def external(
    key: str,
    title: str,
    now: datetime,
    *,
    days: float,
    canonical: str,
    category: str = "music",
    sub: str | None = "rock",
    lat: float = CHICAGO[0],
    lon: float = CHICAGO[1],
) -> Document:
    """A per-source record as the normalizer stores it (search fields added when seeded)."""
    source, external_id = key.split(":", 1)
    start = now + timedelta(days=days)
    return {
        "_id": key,
        "source": source,
        "external_id": external_id,
        "title": title,
        "category": category,
        "subcategory": sub,
        "status": "EventScheduled",
        "start": {"utc": start, "local": start.replace(tzinfo=None).isoformat(), "timezone": "UTC"},
        "venue": {
            "name": "Vertex Arena",
            "city": "Chicago",
            "country": "US",
            "lat": lat,
            "lon": lon,
        },
        "canonical_id": canonical,
        "version": 1,
        "content_hash": "x",
        "updated_at": now - timedelta(minutes=10),
    }


def canonical(members: list[Document], *, updated_at: datetime) -> Document:
    """The canonical event of ``members`` (the first one's fields), as the normalizer stores it."""
    lead = members[0]
    return {
        **{k: v for k, v in lead.items() if k not in ("source", "external_id", "canonical_id")},
        "_id": lead["canonical_id"],
        "sources": [{"source": m["source"], "external_id": m["external_id"]} for m in members],
        "duplicate_of": None,
        "updated_at": updated_at,
    }


async def seed(db: AsyncDatabase[Document]) -> None:
    """Three upcoming records (two of them one canonical event) and one that already started."""
    now = datetime.now(UTC).replace(microsecond=0)
    tm1 = external("ticketmaster:1", "Electric Giants", now, days=2, canonical="c1")
    # A little north of the others: nearest-first puts it after ticketmaster:1.
    sg1 = external("seatgeek:1", "Electric Giants live", now, days=1, canonical="c1", lat=41.9)
    mu7 = external(
        "meetup:7", "Python Meetup", now, days=3, canonical="c7", category="community", sub="tech"
    )
    past = external(
        "eventbrite:9", "Electric Past", now, days=-2, canonical="c9", category="comedy", sub=None
    )
    externals = [tm1, sg1, mu7, past]
    canonicals = [
        canonical([past], updated_at=now - timedelta(minutes=3)),
        canonical([tm1, sg1], updated_at=now - timedelta(minutes=2)),
        canonical([mu7], updated_at=now - timedelta(minutes=1)),
    ]
    with_search_fields(externals)
    with_search_fields(canonicals)
    await ensure_indexes(db)
    await db[EXTERNAL_EVENTS].insert_many(externals)
    await db[EVENTS].insert_many(canonicals)
    await db[CATEGORIES].insert_many(
        [
            {"name": "music", "source": "marquee"},
            {"name": "rock", "source": "marquee", "parent": "music"},
            {"name": "Music", "source": "ticketmaster", "external_id": "KZFzniwnSyZfZ7v7nJ"},
        ]
    )
    await db[PROVIDER_STATS].insert_one(
        {"_id": "ticketmaster", "calls": 10, "errors": 1, "success_rate": 0.9, "updated_at": now}
    )


Answer = Callable[[ImportRequest], Awaitable[ImportResult | None]]


class FakeImporter:
    """Answers import requests the way the importer service would (its writes to the store, then
    its answer through the Replies object), without the Kafka round trip."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sent: list[ImportRequest] = []
        self.answer: Answer = self.imported
        self.replies: Replies[ImportResult] = Replies(
            None,  # type: ignore[arg-type]  # never run: answers are dispatched by hand
            "import.results",
            ImportResult,
            lambda r: r.request_id,
        )

    async def imported(self, request: ImportRequest) -> ImportResult | None:
        """The importer's effects: local event, claim, result, the catalogue's import flags."""
        assert request.provider is not None  # the API names a record, not a canonical id
        db = self.store.db
        key = f"{request.provider.value}:{request.external_id}"
        record = await self.store.external(key)
        assert record is not None
        local = f"le_{request.external_id}"
        now = datetime.now(UTC)
        await db[LOCAL_EVENTS].insert_one(
            {
                "_id": local,
                "title": record["title"],
                "start": record["start"]["utc"],
                "created_by": request.requested_by,
                "created_at": now,
            }
        )
        claim_id = record.get("canonical_id") or key
        await db[IMPORTS].insert_one(
            {
                "_id": claim_id,
                "local_event_id": local,
                "request_id": request.request_id,
                "requested_by": request.requested_by,
                "source": request.provider.value,
                "external_id": request.external_id,
                "canonical_id": record.get("canonical_id"),
                "state": "active",
                "created_at": now,
            }
        )
        result = ImportResult(
            request_id=request.request_id, status=ImportStatus.IMPORTED, local_event_id=local
        )
        await db[IMPORT_RESULTS].insert_one(
            {
                "_id": request.request_id,
                "status": "imported",
                "local_event_id": local,
                "decided_at": result.decided_at,
                "emitted": True,
            }
        )
        mark = {"$set": {"is_imported": True, "imported_event": local}}
        await db[EXTERNAL_EVENTS].update_one({"_id": key}, mark)
        await db[EVENTS].update_one({"_id": claim_id}, mark)
        return result

    async def send(self, topic: str, key: bytes, message: Contract) -> None:
        assert isinstance(message, ImportRequest)
        assert topic == "import.requests"
        assert key == message.key().encode()
        self.sent.append(message)
        result = await self.answer(message)
        if result is not None:
            await self.replies._dispatch(result.to_json_bytes())


def token(role: str | None, sub: str = "alice", **kw: Any) -> str:
    return mint(sub, role, secret=SECRET, **kw)


def auth(role: str | None, sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, sub)}"}


def services_over(
    db: AsyncDatabase[Document], *, per_minute: int = 0, cache_s: float = 0
) -> tuple[Services, FakeImporter]:
    """One API replica's services over ``db``."""
    store = Store(db)
    fake = FakeImporter(store)
    settings = ApiSettings(import_wait_s=0.2, feed_settle_s=0)
    services = Services(
        settings=settings,
        catalogue=Catalogue(db),
        store=store,
        auth=Authenticator(algorithm="HS256", secret=SECRET),
        limiter=RateLimiter(per_minute, 5),
        cache=ResponseCache(cache_s, 100),
        metrics=ApiMetrics(ServiceMetrics("api_http")),
        exporter=Exports(db),
        importer=Importer(store, fake.replies, fake.send, topic="import.requests", wait_s=0.2),
    )
    return services, fake


async def build(
    db: AsyncDatabase[Document], *, per_minute: int = 0, cache_s: float = 0
) -> tuple[Services, FakeImporter]:
    await seed(db)
    return services_over(db, per_minute=per_minute, cache_s=cache_s)


def client_of(services: Services) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(services))
    return httpx.AsyncClient(transport=transport, base_url="http://api")


@dataclass
class Api:
    client: httpx.AsyncClient
    services: Services
    fake: FakeImporter
    db: AsyncDatabase[Document]


@pytest.fixture
async def api(mongo_db: AsyncDatabase[Document]) -> AsyncIterator[Api]:
    services, fake = await build(mongo_db)
    async with client_of(services) as client:
        yield Api(client, services, fake, mongo_db)


# A datetime written with an offset (or Z); a local time without one is written as is.
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")


def instants(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in instants(v)]
    if isinstance(value, list):
        return [s for v in value for s in instants(v)]
    return [value] if isinstance(value, str) and INSTANT.match(value) else []


def assert_z(response: httpx.Response) -> None:
    """Every instant in the body is UTC written with ``Z`` (and there is at least one)."""
    found = instants(response.json())
    assert found, response.text
    assert all(s.endswith("Z") for s in found), found
    assert "+00:00" not in response.text


# Every endpoint (method, path) and the least role that may use it.
ENDPOINTS: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/external-events/search"): ("user", "/external-events/search?q=electric"),
    ("GET", "/external-events/analytics"): ("admin", "/external-events/analytics"),
    ("POST", "/external-events/export"): ("admin", "/external-events/export"),
    ("GET", "/external-events/export.csv"): ("admin", "/external-events/export.csv"),
    ("GET", "/external-events/{source}/{external_id}"): ("user", "/external-events/meetup/7"),
    ("POST", "/external-events/{source}/{external_id}/import"): (
        "organizer",
        "/external-events/meetup/7/import",
    ),
    ("GET", "/events"): ("user", "/events"),
    ("GET", "/events/changes"): ("user", "/events/changes"),
    ("GET", "/events/{event_id}"): ("user", "/events/c1"),
    ("POST", "/imports/bulk"): ("organizer", "/imports/bulk"),
    ("GET", "/imports/{request_id}"): ("organizer", "/imports/nope"),
    ("GET", "/local-events/{local_id}"): ("organizer", "/local-events/nope"),
    ("GET", "/categories"): ("user", "/categories"),
    # The dashboard's figures (tests/integration/test_analytics.py).
    ("GET", "/analytics/catalogue"): ("user", "/analytics/catalogue"),
    ("GET", "/analytics/venues"): ("user", "/analytics/venues"),
    ("GET", "/analytics/imports"): ("admin", "/analytics/imports"),
    ("GET", "/analytics/providers"): ("admin", "/analytics/providers"),
    # Webhook subscriptions (tests/integration/test_webhooks_api.py).
    ("POST", "/webhooks"): ("organizer", "/webhooks"),
    ("GET", "/webhooks"): ("organizer", "/webhooks"),
    ("GET", "/webhooks/{subscription_id}"): ("organizer", "/webhooks/wh_nope"),
    ("DELETE", "/webhooks/{subscription_id}"): ("organizer", "/webhooks/wh_nope"),
    # Artist recommendations (tests/integration/test_recommendations.py).
    ("GET", "/recommendations"): ("user", "/recommendations?artists=sp1&near=36.16,-86.78"),
    # Price and listing history (tests/integration/test_prices_api.py).
    ("GET", "/events/{event_id}/prices"): ("user", "/events/c1/prices"),
    ("GET", "/external-events/{source}/{external_id}/prices"): (
        "user",
        "/external-events/meetup/7/prices",
    ),
    # Marketing: feeds, JSON-LD, widgets (tests/integration/test_feeds.py).
    ("GET", "/feeds/search.ics"): ("user", "/feeds/search.ics?q=electric"),
    ("GET", "/feeds/venues/{venue}.ics"): ("user", "/feeds/venues/Vertex%20Arena.ics"),
    ("GET", "/feeds/artists/{artist}.ics"): ("user", "/feeds/artists/Electric.ics"),
    ("GET", "/feeds/local-events.ics"): ("organizer", "/feeds/local-events.ics"),
    ("GET", "/feeds/search.atom"): ("user", "/feeds/search.atom"),
    ("GET", "/feeds/search.rss"): ("user", "/feeds/search.rss"),
    ("GET", "/events/{event_id}/jsonld"): ("user", "/events/c1/jsonld"),
    ("GET", "/widgets/venues/{venue}"): ("user", "/widgets/venues/Vertex%20Arena"),
    ("GET", "/widgets/artists/{artist}"): ("user", "/widgets/artists/Electric"),
    ("POST", "/feeds/tokens"): ("user", "/feeds/tokens"),
    ("GET", "/feeds/tokens"): ("user", "/feeds/tokens"),
    ("DELETE", "/feeds/tokens/{token_id}"): ("user", "/feeds/tokens/nope"),
}
# A stream never ends, so a role's call cannot be awaited here: tests/integration/test_stream.py
# checks its 401s and its filters against a real API process.
STREAMS = {("GET", "/events/stream")}
RANK = {"user": 1, "organizer": 2, "admin": 3}
BODIES = {
    "/imports/bulk": {"items": [{"source": "meetup", "external_id": "7"}]},
    "/webhooks": {"url": "https://hooks.example.com/h", "secret": "0123456789abcdef"},
}


def bad_tokens() -> dict[str, str]:
    now = time.time()
    unsigned = jwt.encode({"sub": "x", "role": "admin", "exp": now + 60}, "", algorithm="none")
    return {
        "missing": "",
        "not a bearer": "Basic YWxpY2U6cHc=",
        "garbage": "Bearer not-a-jwt",
        "expired": f"Bearer {token('admin', ttl_s=-10)}",
        "wrong signature": "Bearer "
        + mint("x", "admin", secret="another-secret-0123456789abcdef01234"),
        "alg none": f"Bearer {unsigned}",
        "no exp": "Bearer " + jwt.encode({"sub": "x", "role": "admin"}, SECRET, algorithm="HS256"),
        "role-less": f"Bearer {token(None)}",
        "unknown role": f"Bearer {token('superuser')}",
    }


async def test_matrix_lists_every_endpoint(mongo_db: AsyncDatabase[Document]) -> None:
    services, _ = services_over(mongo_db)
    app = create_app(services)
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path not in {"/healthz", "/readyz", "/metrics"}
        for method in operations
    }
    assert routes == set(ENDPOINTS) | STREAMS


async def call(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]
) -> httpx.Response:
    body = BODIES.get(url.split("?")[0])
    return await client.request(method, url, headers=headers, json=body)


async def test_authorization_matrix(api: Api) -> None:
    client = api.client
    for (method, _path), (least, url) in ENDPOINTS.items():
        for role in ("user", "organizer", "admin"):
            response = await call(client, method, url, auth(role))
            if RANK[role] < RANK[least]:
                assert response.status_code == 403, (method, url, role, response.text)
                assert response.json()["error"].startswith("Requires the")
            else:
                assert response.status_code not in (401, 403), (method, url, role, response.text)
                assert response.status_code < 500, (method, url, role, response.text)
        for name, header in bad_tokens().items():
            headers = {"Authorization": header} if header else {}
            response = await call(client, method, url, headers)
            expected = 403 if name in ("role-less", "unknown role") else 401
            assert response.status_code == expected, (method, url, name, response.text)
            assert response.headers["content-type"] == "application/json"
            assert isinstance(response.json()["error"], str)


async def test_search_shapes_and_errors(api: Api) -> None:
    client = api.client
    user = auth("user")
    missing = await client.get("/external-events/search", headers=user)
    assert missing.status_code == 400
    assert missing.json()["error"] == "Search query is required"
    assert [d["field"] for d in missing.json()["details"]] == ["q"]
    found = await client.get("/external-events/search?q=elec&limit=1", headers=user)
    assert found.status_code == 200, found.text
    body = found.json()
    assert set(body) == {"events", "imported_events", "total_count", "total_exact", "next_cursor"}
    assert body["total_count"] == 2
    assert body["events"][0]["id"] == "seatgeek:1"
    assert_z(found)
    page2 = await client.get(
        f"/external-events/search?q=elec&limit=1&cursor={body['next_cursor']}", headers=user
    )
    assert page2.json()["events"][0]["id"] == "ticketmaster:1"
    assert page2.json()["next_cursor"] is None
    whole = (await client.get("/external-events/search?q=elec", headers=user)).json()
    assert [e["id"] for e in whole["events"]] == ["seatgeek:1", "ticketmaster:1"]
    assert (whole["total_count"], whole["total_exact"], whole["next_cursor"]) == (2, True, None)
    for item in whole["events"]:
        # The stored document's import flags, and none of the stored search bookkeeping.
        assert (item["is_imported"], item["imported_event"]) == (False, None)
        assert not set(HIDDEN) & set(item)
    assert whole["imported_events"] == []
    # dedupe: one per-source record per canonical event, in the same shape.
    deduped = await client.get("/external-events/search?q=elec&dedupe=true", headers=user)
    assert deduped.status_code == 200, deduped.text
    assert set(deduped.json()) == set(whole)
    [one] = deduped.json()["events"]
    assert one["id"] == "ticketmaster:1"
    assert one["canonical_id"] == "c1"
    assert set(one) == {*whole["events"][0]} == {*whole["events"][1]}
    assert_z(deduped)
    # Upcoming only, unless the past is asked for.
    past = (await client.get("/external-events/search?q=past", headers=user)).json()
    assert (past["events"], past["total_count"]) == ([], 0)
    included = await client.get(
        "/external-events/search?q=electric&include_past=true", headers=user
    )
    ids = [e["id"] for e in included.json()["events"]]
    assert ids == ["eventbrite:9", "seatgeek:1", "ticketmaster:1"]
    since = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    dated = await client.get(f"/external-events/search?q=electric&date_from={since}", headers=user)
    assert [e["id"] for e in dated.json()["events"]] == ids
    # Nearest first, each with its distance.
    lat, lon = CHICAGO
    near = await client.get(
        f"/external-events/search?q=elec&near={lat},{lon},50&sort=distance",
        headers=user,
    )
    assert near.status_code == 200, near.text
    items = near.json()["events"]
    assert [e["id"] for e in items] == ["ticketmaster:1", "seatgeek:1"]
    assert items[0]["distance_km"] == 0
    assert 2 < items[1]["distance_km"] < 2.5
    far = await client.get(
        "/external-events/search?q=elec&near=48.85,2.35&sort=distance", headers=user
    )
    assert far.json()["events"] == []
    # Errors.
    invalid = await client.get(
        "/external-events/search?q=x&source=myspace&status=gone", headers=user
    )
    assert invalid.status_code == 400
    fields = {d["field"] for d in invalid.json()["details"]}
    assert fields == {"source", "status"}
    for point in ("1", "91,0", "0,181", "0,0,0", "0,0,20001", "a,b"):
        bad = await client.get(f"/external-events/search?q=x&near={point}", headers=user)
        assert bad.status_code == 422, point
        assert [d["field"] for d in bad.json()["details"]] == ["query.near"]
    wordless = await client.get("/external-events/search?q=!!!", headers=user)
    assert wordless.status_code == 400
    assert [d["field"] for d in wordless.json()["details"]] == ["q"]
    repeated = await client.get("/external-events/search?q=a&q=b", headers=user)
    assert repeated.status_code == 400
    assert [d["field"] for d in repeated.json()["details"]] == ["q"]
    # Without a point every distance is equal: start order.
    distance = await client.get("/external-events/search?q=elec&sort=distance", headers=user)
    assert [e["id"] for e in distance.json()["events"]] == ["seatgeek:1", "ticketmaster:1"]
    naive = await client.get("/external-events/search?q=x&date_from=2027-01-01T10:00", headers=user)
    assert naive.json()["details"][0]["code"] == "naive"
    typed = await client.get("/external-events/search?q=x&limit=1000", headers=user)
    assert typed.status_code == 422
    assert typed.json()["details"][0]["field"] == "query.limit"
    cursor = await client.get("/external-events/search?q=x&cursor=abc", headers=user)
    assert cursor.status_code == 400
    assert cursor.json()["details"][0]["field"] == "cursor"
    # A cursor is a position: from it, the other direction lists what came before.
    back = await client.get(
        f"/external-events/search?q=elec&sort=-start&cursor={page2.json()['events'][0]['id']}",
        headers=user,
    )
    assert back.status_code == 400  # an id alone is not a position


async def test_detail_events_and_feed(api: Api) -> None:
    client = api.client
    user = auth("user")
    detail = await client.get("/external-events/ticketmaster/1", headers=user)
    event = detail.json()
    assert event["title"] == "Electric Giants"
    assert event["canonical_id"] == "c1"
    assert (event["is_imported"], event["imported_event"]) == (False, None)
    assert not set(HIDDEN) & set(event)
    assert_z(detail)
    gone = await client.get("/external-events/ticketmaster/404", headers=user)
    assert gone.status_code == 404
    assert gone.json() == {"error": "Event not found"}
    one = await client.get("/events/c1", headers=user)
    assert one.json()["id"] == "c1"
    assert [s["source"] for s in one.json()["sources"]] == ["ticketmaster", "seatgeek"]
    assert_z(one)
    assert (await client.get("/events/zz", headers=user)).status_code == 404
    listed = await client.get("/events", headers=user)
    assert [e["id"] for e in listed.json()["events"]] == ["c1", "c7"]
    assert (listed.json()["total_count"], listed.json()["total_exact"]) == (2, True)
    assert_z(listed)
    with_past = (await client.get("/events?include_past=true", headers=user)).json()
    assert [e["id"] for e in with_past["events"]] == ["c9", "c1", "c7"]
    # The change feed: (modified, id) order, paged by next_after, and empty at the end.
    first = await client.get("/events/changes?limit=2", headers=user)
    feed = first.json()
    assert [c["canonical_id"] for c in feed["changes"]] == ["c9", "c1"]
    assert [c["op"] for c in feed["changes"]] == ["created", "created"]
    assert feed["has_more"] is True
    assert_z(first)
    rest = (
        await client.get(f"/events/changes?limit=2&after={feed['next_after']}", headers=user)
    ).json()
    assert [c["canonical_id"] for c in rest["changes"]] == ["c7"]
    assert rest["has_more"] is False
    again = (await client.get(f"/events/changes?after={rest['next_after']}", headers=user)).json()
    assert again["changes"] == []
    assert again["next_after"] == rest["next_after"]
    bad_after = await client.get("/events/changes?after=nonsense", headers=user)
    assert bad_after.status_code == 400
    assert bad_after.json()["details"][0]["field"] == "after"
    tree = (await client.get("/categories", headers=user)).json()["categories"]
    assert [node["name"] for node in tree] == ["music"]
    assert tree[0]["children"][0]["name"] == "rock"
    assert tree[0]["count"] == 2
    assert tree[0]["children"][0]["count"] == 2
    provider = (await client.get("/categories?source=ticketmaster", headers=user)).json()
    assert [node["name"] for node in provider["categories"]] == ["Music"]
    bogus = await client.get("/categories?source=bogus", headers=user)
    assert bogus.status_code == 400
    assert bogus.json()["details"][0]["field"] == "source"


async def test_import_answers_201_then_400_and_202_when_slow(api: Api) -> None:
    client, services, fake = api.client, api.services, api.fake
    organizer = auth("organizer", "olga")
    created = await client.post("/external-events/meetup/7/import", headers=organizer)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["message"] == "Event imported successfully"
    assert body["local_event_url"] == f"http://api/local-events/{body['local_event_id']}"
    assert fake.sent[0].requested_by == "olga"
    local = await client.get(f"/local-events/{body['local_event_id']}", headers=organizer)
    assert local.status_code == 200
    assert_z(local)
    # Someone else's local event does not exist for another organiser; an admin sees it.
    other = auth("organizer", "oscar")
    assert (
        await client.get(f"/local-events/{body['local_event_id']}", headers=other)
    ).status_code == 404
    admin = await client.get(f"/local-events/{body['local_event_id']}", headers=auth("admin"))
    assert admin.status_code == 200
    # The request and its result, as stored.
    status = await client.get(f"/imports/{body['request_id']}", headers=organizer)
    assert status.json()["status"] == "imported"
    assert status.json()["local_event_id"] == body["local_event_id"]
    assert_z(status)
    # Search shows the record's stored import flags.
    found = (await client.get("/external-events/search?q=python", headers=auth("user"))).json()
    assert (found["events"][0]["is_imported"], found["events"][0]["imported_event"]) == (
        True,
        body["local_event_id"],
    )
    assert found["imported_events"] == [
        {
            "id": "meetup:7",
            "source": "meetup",
            "external_id": "7",
            "local_event_id": body["local_event_id"],
            "local_event_url": body["local_event_url"],
        }
    ]
    # The importer's claim now exists: the API refuses before sending anything.
    assert [c["_id"] for c in await services.store.active_claims(["meetup:7", "c7"])] == ["c7"]
    again = await client.post("/external-events/meetup/7/import", headers=organizer)
    assert again.status_code == 400
    assert again.json()["error"] == "Event already imported"
    assert again.json()["local_event_id"] == body["local_event_id"]
    # Another organizer learns the event is on the platform, not an id it could not read.
    elsewhere = await client.post("/external-events/meetup/7/import", headers=other)
    assert elsewhere.status_code == 400
    assert elsewhere.json() == {
        "error": "Event already imported",
        "message": "This event is already on the platform.",
    }
    bulk = await client.post(
        "/imports/bulk", json={"items": [{"source": "meetup", "external_id": "7"}]}, headers=other
    )
    assert bulk.json()["results"][0]["status"] == 400, bulk.text
    assert "local_event_id" not in bulk.json()["results"][0]
    assert len(fake.sent) == 1

    # The importer says so itself (a race the claim check did not see).
    async def rejected(r: ImportRequest) -> ImportResult | None:
        return ImportResult(
            request_id=r.request_id, status=ImportStatus.REJECTED, message="Event already imported"
        )

    fake.answer = rejected
    raced = await client.post("/external-events/ticketmaster/1/import", headers=organizer)
    assert raced.status_code == 400
    assert raced.json()["error"] == "Event already imported"

    # No answer within the wait: 202 and a status URL that says pending, then the result.
    async def silent(_r: ImportRequest) -> ImportResult | None:
        return None

    fake.answer = silent
    slow = await client.post("/external-events/seatgeek/1/import", headers=organizer)
    assert slow.status_code == 202
    status_url = slow.json()["status_url"]
    pending = await client.get(status_url, headers=organizer)
    assert pending.json()["status"] == "pending"
    assert_z(pending)
    assert (await client.get(status_url, headers=other)).status_code == 404
    request_id = slow.json()["request_id"]
    await api.db[IMPORT_RESULTS].insert_one(
        {
            "_id": request_id,
            "status": "imported",
            "local_event_id": "le_x",
            "decided_at": datetime.now(UTC),
            "emitted": True,
        }
    )
    done_response = await client.get(status_url, headers=organizer)
    done = done_response.json()
    assert done["status"] == "imported"
    assert done["local_event_url"].endswith("/local-events/le_x")
    assert_z(done_response)
    unknown = await client.post("/external-events/meetup/999/import", headers=organizer)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Event not found"}


async def test_bulk_import_reports_each_item(api: Api) -> None:
    client, fake = api.client, api.fake
    items = [
        {"source": "meetup", "external_id": "7"},
        {"source": "ticketmaster", "external_id": "404"},
    ]
    response = await client.post("/imports/bulk", headers=auth("organizer"), json={"items": items})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 404]

    # Imported now (the claim is stored): refused before anything is sent; a pending item
    # makes the whole answer 202.
    async def silent(_r: ImportRequest) -> ImportResult | None:
        return None

    fake.answer = silent
    items = [{"source": "meetup", "external_id": "7"}, {"source": "seatgeek", "external_id": "1"}]
    second = await client.post("/imports/bulk", headers=auth("organizer"), json={"items": items})
    assert second.status_code == 202
    assert [r["status"] for r in second.json()["results"]] == [400, 202]
    assert len(fake.sent) == 2
    empty = await client.post("/imports/bulk", headers=auth("organizer"), json={"items": []})
    assert empty.status_code == 422
    assert empty.json()["details"][0]["field"] == "body.items"


async def test_rate_limit_429_with_retry_after(mongo_db: AsyncDatabase[Document]) -> None:
    services, _ = await build(mongo_db, per_minute=60)
    async with client_of(services) as client:
        codes = [
            (await client.get("/external-events/meetup/7", headers=auth("user"))).status_code
            for _ in range(7)
        ]
        assert codes[:5] == [200] * 5
        assert codes[-1] == 429
        limited = await client.get("/external-events/meetup/7", headers=auth("user"))
        assert limited.json()["error"] == "Rate limit exceeded"
        assert limited.json()["retry_after"] >= 1
        assert limited.headers["Retry-After"] == str(limited.json()["retry_after"])
        # Another client has its own bucket.
        assert (
            await client.get("/external-events/meetup/7", headers=auth("user", "bob"))
        ).status_code == 200


async def test_the_ttl_cache_serves_repeats(mongo_db: AsyncDatabase[Document]) -> None:
    services, _ = await build(mongo_db, cache_s=60)
    clock = [0.0]
    services.cache._cache = TTLCache(100, 60, timer=lambda: clock[0])
    async with client_of(services) as client:
        url = "/external-events/search?q=python"
        first = await client.get(url, headers=auth("user"))
        repeat = await client.get(url, headers=auth("user"))
        assert (services.cache.hits, services.cache.misses) == (1, 1)
        assert repeat.content == first.content
        # The record changes in the store: a repeat within the TTL is still the cached answer.
        doc = await mongo_db[EXTERNAL_EVENTS].find_one({"_id": "meetup:7"})
        assert doc is not None
        doc.update(title="Python Meetup renamed", version=2)
        with_search_fields([doc])
        await mongo_db[EXTERNAL_EVENTS].replace_one({"_id": "meetup:7"}, doc)
        clock[0] = 59
        cached = await client.get(url, headers=auth("user"))
        assert services.cache.hits == 2
        assert cached.json()["events"][0]["title"] == "Python Meetup"
        # Another query is not a repeat; after the TTL the same one is read afresh.
        other = await client.get(f"{url}&limit=5", headers=auth("user"))
        assert other.json()["events"][0]["title"] == "Python Meetup renamed"
        clock[0] = 61
        expired = await client.get(url, headers=auth("user"))
        assert services.cache.hits == 2
        assert expired.json()["events"][0]["title"] == "Python Meetup renamed"
        assert first.json()["events"][0]["title"] == "Python Meetup"


async def test_csv_export_appends_only_new_rows(api: Api) -> None:
    client, services = api.client, api.services
    admin = auth("admin")
    nothing = await client.get("/external-events/export.csv", headers=admin)
    assert nothing.status_code == 404
    first = (await client.post("/external-events/export?q=electric", headers=admin)).json()
    assert first["appended"] == 2  # the past one is not listed, so not exported
    again = (await client.post("/external-events/export?q=elec", headers=admin)).json()
    assert again["appended"] == 0
    more = (await client.post("/external-events/export?q=python", headers=admin)).json()
    assert more == {
        "appended": 1,
        "total_rows": 3,
        "download_url": "http://api/external-events/export.csv",
    }
    csv = await client.get("/external-events/export.csv", headers=admin)
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("id,source,external_id")
    rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert sorted(rows) == ["meetup:7", "seatgeek:1", "ticketmaster:1"]
    start_utc = lines[0].split(",").index("start_utc")
    assert all(row[start_utc].endswith("Z") for row in rows.values())
    # Another replica (its own Exports over the same store) serves the same file and appends
    # only what no replica exported before.
    replica, _ = services_over(api.db)
    assert replica.exporter is not services.exporter
    async with client_of(replica) as other:
        same = await other.get("/external-events/export.csv", headers=admin)
        assert same.content == csv.content
        repeat = (await other.post("/external-events/export?q=electric", headers=admin)).json()
        assert (repeat["appended"], repeat["total_rows"]) == (0, 3)
        past = await other.post(
            "/external-events/export?q=electric&include_past=true", headers=admin
        )
        assert (past.json()["appended"], past.json()["total_rows"]) == (1, 4)
    assert await Exports(api.db).append(services.catalogue, Query(words=["giants"])) == (0, 4)
    final = (await client.get("/external-events/export.csv", headers=admin)).text
    assert final.startswith(csv.text)
    assert final.strip().splitlines()[-1].startswith("eventbrite:9,")
    response = await client.get("/external-events/analytics", headers=admin)
    analytics = response.json()
    assert {s["source"]: s["count"] for s in analytics["source_stats"]}["meetup"] == 1
    assert analytics["import_stats"] == {
        "total_events": 4,
        "imported_events": 0,
        "import_rate": 0.0,
    }
    assert analytics["source_performance"][0]["success_rate"] == 0.9
    assert_z(response)


async def test_rs256_tokens_from_a_jwks() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from services.api.auth import JwksKeys

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    fetched: list[str] = []

    async def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return {"keys": [jwk]}

    auth_ = Authenticator(algorithm="RS256", jwks=JwksKeys("http://jwks", 300, fetch))
    good = mint("ann", "organizer", private_key=key, algorithm="RS256", kid="k1")
    principal = await auth_.authenticate(good)
    assert principal.subject == "ann"
    assert principal.role.name == "ORGANIZER"
    from services.api.errors import ApiError

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = mint("ann", "admin", private_key=other, algorithm="RS256", kid="k1")
    with pytest.raises(ApiError) as err:
        await auth_.authenticate(forged)
    assert err.value.status == 401
    hs = mint("ann", "admin", secret=SECRET)  # HS256 where RS256 is configured
    with pytest.raises(ApiError):
        await auth_.authenticate(hs)
    assert fetched == ["http://jwks"]


async def test_csv_export_neutralises_spreadsheet_formulas(api: Api) -> None:
    """A provider's text that a spreadsheet would run as a formula is written as text; a
    negative number stays a number."""
    admin = auth("admin")
    now = datetime.now(UTC)
    row = ["x:1", "x", "1", None, '=HYPERLINK("http://evil","click")', "+1 show", "@sum", "-5"]
    await api.db[EXPORTS].insert_one({"_id": "x:1", "at": now, "row": [*row, -73.9]})
    text = (await api.client.get("/external-events/export.csv", headers=admin)).text
    cells = next(csv.reader(text.splitlines()[1:]))
    assert cells == [
        "x:1",
        "x",
        "1",
        "",
        '\'=HYPERLINK("http://evil","click")',
        "'+1 show",
        "'@sum",
        "'-5",
        "-73.9",
    ]


async def test_addons_are_listed_only_when_asked_and_never_imported(api: Api) -> None:
    """A parking pass sold beside a performance is not a performance: searches leave it out
    unless include_addons=true, and importing it is refused with a 400 saying why."""
    client, user = api.client, auth("user")
    now = datetime.now(UTC).replace(microsecond=0)
    parking = external("seatgeek:77", "Parking Pass Electric Giants", now, days=2, canonical="c77")
    parking[ADDON] = True
    event = canonical([parking], updated_at=now)
    with_search_fields([parking, event])
    await api.db[EXTERNAL_EVENTS].insert_one(parking)
    await api.db[EVENTS].insert_one(event)
    for path in ("/external-events/search", "/events"):
        plain = (await client.get(f"{path}?q=electric", headers=user)).json()["events"]
        assert plain
        assert not {e["id"] for e in plain} & {"seatgeek:77", "c77"}
        shown = await client.get(f"{path}?q=electric&include_addons=true", headers=user)
        addons = [e for e in shown.json()["events"] if e["id"] in {"seatgeek:77", "c77"}]
        assert len(addons) == 1, shown.text
        assert addons[0]["addon"] is True
    refused = await client.post(
        "/external-events/seatgeek/77/import", headers=auth("organizer", "olga")
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == ADDON_REFUSED
    assert refused.json()["details"][0]["code"] == "addon"
    assert api.fake.sent == []
