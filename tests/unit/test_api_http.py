"""The API over HTTP in process, with fakes for the store and the importer (no Kafka, no Mongo):
the authorization matrix, error shapes, rate limit, cache, imports, export."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from services.api.app import create_app
from services.api.auth import Authenticator, mint
from services.api.deps import Services
from services.api.export import CsvExporter
from services.api.imports import Importer
from services.api.limits import RateLimiter, ResponseCache
from services.api.metrics import ApiMetrics
from services.api.readmodel import ReadModel
from services.api.replies import Replies
from shared.contracts import Contract, ImportRequest, ImportResult, ImportStatus
from shared.metrics import ServiceMetrics
from shared.settings import ApiSettings
from tests.unit.test_api_index import canonical, external

SECRET = "unit-test-secret-0123456789abcdef0123"


class FakeStore:
    """The Store interface over dicts."""

    def __init__(self) -> None:
        self.externals: dict[str, dict[str, Any]] = {}
        self.canonicals: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}

    async def external(self, key: str) -> dict[str, Any] | None:
        return self.externals.get(key)

    async def canonical(self, cid: str) -> dict[str, Any] | None:
        return self.canonicals.get(cid)

    async def local_event(self, local_id: str) -> dict[str, Any] | None:
        return self.locals.get(local_id)

    async def active_claims(self, ids: list[str]) -> list[dict[str, Any]]:
        return [self.claims[i] for i in ids if i in self.claims]

    async def import_result(self, request_id: str) -> dict[str, Any] | None:
        return self.results.get(request_id)

    async def import_request(self, request_id: str) -> dict[str, Any] | None:
        return self.requests.get(request_id)

    async def record_import_request(self, doc: dict[str, Any]) -> None:
        self.requests[doc["_id"]] = doc

    async def provider_stats(self) -> list[dict[str, Any]]:
        return [{"_id": "ticketmaster", "calls": 10, "errors": 1, "success_rate": 0.9}]

    async def categories(self) -> list[dict[str, Any]]:
        return [
            {"name": "music", "source": "marquee"},
            {"name": "rock", "source": "marquee", "parent": "music"},
        ]


Answer = Callable[[ImportRequest], ImportResult | None]


class FakeImporter:
    """Answers import requests the way the importer would, through the Replies object."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.sent: list[ImportRequest] = []
        self.answer: Answer = self.imported
        self.replies: Replies[ImportResult] = Replies(
            None,  # type: ignore[arg-type]  # never run: answers are dispatched by hand
            "import.results",
            ImportResult,
            lambda r: r.request_id,
        )

    def imported(self, request: ImportRequest) -> ImportResult | None:
        local = f"le_{request.external_id}"
        self.store.locals[local] = {"_id": local, "title": "x", "created_by": request.requested_by}
        return ImportResult(
            request_id=request.request_id, status=ImportStatus.IMPORTED, local_event_id=local
        )

    async def send(self, topic: str, key: bytes, message: Contract) -> None:
        assert isinstance(message, ImportRequest)
        assert topic == "import.requests"
        assert key == message.key().encode()
        self.sent.append(message)
        result = self.answer(message)
        if result is not None:
            await self.replies._dispatch(result.to_json_bytes())


def token(role: str | None, sub: str = "alice", **kw: Any) -> str:
    return mint(sub, role, secret=SECRET, **kw)


def auth(role: str | None, sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, sub)}"}


def build(
    tmp_path: Path, *, per_minute: int = 0, cache_s: float = 0, ready: bool = True
) -> tuple[Services, FakeStore, FakeImporter]:
    store = FakeStore()
    model = ReadModel()
    docs = [
        external("ticketmaster:1", "Electric Giants", days=2, canonical="c1"),
        external("seatgeek:1", "Electric Giants live", days=1, canonical="c1"),
        external("meetup:7", "Python Meetup", days=3, category="community", sub="tech"),
    ]
    for doc in docs:
        model.apply_external(doc)
        store.externals[doc["_id"]] = doc
    recently = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    model.apply_canonical({**canonical("c1", 1), "updated_at": recently})
    model.externals.seal()
    model.canonicals.seal()
    model.load.state = "ready" if ready else "loading"
    fake = FakeImporter(store)
    settings = ApiSettings(import_wait_s=0.2, feed_settle_s=0)
    services = Services(
        settings=settings,
        model=model,
        store=store,  # type: ignore[arg-type]
        auth=Authenticator(algorithm="HS256", secret=SECRET),
        limiter=RateLimiter(per_minute, 5),
        cache=ResponseCache(cache_s, 100),
        metrics=ApiMetrics(ServiceMetrics("api_unit")),
        exporter=CsvExporter(tmp_path),
        importer=Importer(
            store,  # type: ignore[arg-type]
            model,
            fake.replies,
            fake.send,
            topic="import.requests",
            wait_s=0.2,
        ),
    )
    return services, store, fake


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Services, FakeImporter]]:
    services, _store, fake = build(tmp_path)
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client, services, fake


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
}
RANK = {"user": 1, "organizer": 2, "admin": 3}
BODIES = {"/imports/bulk": {"items": [{"source": "meetup", "external_id": "7"}]}}


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


def test_matrix_lists_every_endpoint(tmp_path: Path) -> None:
    services, _, _ = build(tmp_path)
    app = create_app(services)
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path not in {"/healthz", "/readyz", "/metrics"}
        for method in operations
    }
    assert routes == set(ENDPOINTS)


async def call(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]
) -> httpx.Response:
    body = BODIES.get(url.split("?")[0])
    return await client.request(method, url, headers=headers, json=body)


async def test_authorization_matrix(
    api: tuple[httpx.AsyncClient, Services, FakeImporter],
) -> None:
    client, _, _ = api
    for (method, _path), (least, url) in ENDPOINTS.items():
        for role in ("user", "organizer", "admin"):
            response = await call(client, method, url, auth(role))
            if RANK[role] < RANK[least]:
                assert response.status_code == 403, (method, url, role, response.text)
                assert response.json()["error"].startswith("Requires the")
            else:
                assert response.status_code not in (401, 403), (method, url, role, response.text)
        for name, header in bad_tokens().items():
            headers = {"Authorization": header} if header else {}
            response = await call(client, method, url, headers)
            expected = 403 if name in ("role-less", "unknown role") else 401
            assert response.status_code == expected, (method, url, name, response.text)
            assert response.headers["content-type"] == "application/json"
            assert isinstance(response.json()["error"], str)


async def test_search_shapes_and_errors(
    api: tuple[httpx.AsyncClient, Services, FakeImporter],
) -> None:
    client, _, _ = api
    user = auth("user")
    missing = await client.get("/external-events/search", headers=user)
    assert missing.status_code == 400
    assert missing.json() == {"error": "Search query is required"}
    found = await client.get("/external-events/search?q=elec&limit=1", headers=user)
    body = found.json()
    assert set(body) == {"events", "imported_events", "total_count", "next_cursor"}
    assert body["total_count"] == 2
    assert body["events"][0]["id"] == "seatgeek:1"
    page2 = await client.get(
        f"/external-events/search?q=elec&limit=1&cursor={body['next_cursor']}", headers=user
    )
    assert page2.json()["events"][0]["id"] == "ticketmaster:1"
    assert page2.json()["next_cursor"] is None
    deduped = await client.get("/external-events/search?q=elec&dedupe=true", headers=user)
    assert [e["id"] for e in deduped.json()["events"]] == ["c1"]
    invalid = await client.get(
        "/external-events/search?q=x&source=myspace&status=gone&lat=1", headers=user
    )
    assert invalid.status_code == 400
    fields = {d["field"] for d in invalid.json()["details"]}
    assert fields == {"source", "status", "radius_km"}
    naive = await client.get("/external-events/search?q=x&date_from=2027-01-01T10:00", headers=user)
    assert naive.json()["details"][0]["code"] == "naive"
    typed = await client.get("/external-events/search?q=x&limit=1000", headers=user)
    assert typed.status_code == 422
    assert typed.json()["details"][0]["field"] == "query.limit"
    cursor = await client.get("/external-events/search?q=x&cursor=abc", headers=user)
    assert cursor.status_code == 400
    assert cursor.json()["details"][0]["field"] == "cursor"


async def test_detail_events_and_feed(
    api: tuple[httpx.AsyncClient, Services, FakeImporter],
) -> None:
    client, _, _ = api
    user = auth("user")
    event = (await client.get("/external-events/ticketmaster/1", headers=user)).json()
    assert event["title"] == "Electric Giants"
    assert event["canonical_id"] == "c1"
    gone = await client.get("/external-events/ticketmaster/404", headers=user)
    assert gone.status_code == 404
    assert gone.json() == {"error": "Event not found"}
    assert (await client.get("/events/c1", headers=user)).json()["id"] == "c1"
    assert (await client.get("/events/zz", headers=user)).status_code == 404
    feed = (await client.get("/events/changes", headers=user)).json()
    assert [c["canonical_id"] for c in feed["changes"]] == ["c1"]
    assert feed["changes"][0]["op"] == "created"
    again = (await client.get(f"/events/changes?after={feed['next_after']}", headers=user)).json()
    assert again["changes"] == []
    assert again["next_after"] == feed["next_after"]
    tree = (await client.get("/categories", headers=user)).json()["categories"]
    assert tree[0]["name"] == "music"
    assert tree[0]["children"][0]["name"] == "rock"
    assert tree[0]["count"] == 2


async def test_import_answers_201_then_400_and_202_when_slow(
    api: tuple[httpx.AsyncClient, Services, FakeImporter],
) -> None:
    client, services, fake = api
    organizer = auth("organizer", "olga")
    created = await client.post("/external-events/meetup/7/import", headers=organizer)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["message"] == "Event imported successfully"
    assert body["local_event_url"] == f"http://api/local-events/{body['local_event_id']}"
    assert fake.sent[0].requested_by == "olga"
    local = await client.get(f"/local-events/{body['local_event_id']}", headers=organizer)
    assert local.status_code == 200
    # Someone else's local event does not exist for another organiser; an admin sees it.
    other = auth("organizer", "oscar")
    assert (
        await client.get(f"/local-events/{body['local_event_id']}", headers=other)
    ).status_code == 404
    admin = await client.get(f"/local-events/{body['local_event_id']}", headers=auth("admin"))
    assert admin.status_code == 200
    # The importer's claim now exists: the API refuses before sending anything.
    store: Any = services.store
    store.claims["meetup:7"] = {"_id": "meetup:7", "local_event_id": body["local_event_id"]}
    again = await client.post("/external-events/meetup/7/import", headers=organizer)
    assert again.status_code == 400
    assert again.json()["error"] == "Event already imported"
    assert len(fake.sent) == 1
    # The importer says so itself (a race the claim check did not see).
    fake.answer = lambda r: ImportResult(
        request_id=r.request_id, status=ImportStatus.REJECTED, message="Event already imported"
    )
    raced = await client.post("/external-events/ticketmaster/1/import", headers=organizer)
    assert raced.status_code == 400
    assert raced.json()["error"] == "Event already imported"
    # No answer within the wait: 202 and a status URL that says pending, then the result.
    fake.answer = lambda r: None
    slow = await client.post("/external-events/seatgeek/1/import", headers=organizer)
    assert slow.status_code == 202
    status_url = slow.json()["status_url"]
    pending = await client.get(status_url, headers=organizer)
    assert pending.json()["status"] == "pending"
    assert (await client.get(status_url, headers=other)).status_code == 404
    request_id = slow.json()["request_id"]
    store.results[request_id] = {
        "_id": request_id,
        "status": "imported",
        "local_event_id": "le_x",
        "decided_at": datetime.now(UTC),
        "emitted": True,
    }
    done = (await client.get(status_url, headers=organizer)).json()
    assert done["status"] == "imported"
    assert done["local_event_url"].endswith("/local-events/le_x")
    unknown = await client.post("/external-events/meetup/999/import", headers=organizer)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Event not found"}


async def test_bulk_import_reports_each_item(
    api: tuple[httpx.AsyncClient, Services, FakeImporter],
) -> None:
    client, _, _fake = api
    items = [
        {"source": "meetup", "external_id": "7"},
        {"source": "ticketmaster", "external_id": "404"},
    ]
    response = await client.post("/imports/bulk", headers=auth("organizer"), json={"items": items})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 404]
    empty = await client.post("/imports/bulk", headers=auth("organizer"), json={"items": []})
    assert empty.status_code == 422
    assert empty.json()["details"][0]["field"] == "body.items"


async def test_rate_limit_429_with_retry_after(tmp_path: Path) -> None:
    services, _, _ = build(tmp_path, per_minute=60)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
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


async def test_loading_is_503_with_retry_after(tmp_path: Path) -> None:
    services, _, _ = build(tmp_path, ready=False)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/external-events/search?q=x", headers=auth("user"))
        assert response.status_code == 503
        assert response.json()["retry_after"] == 5
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["read_model"]["state"] == "loading"


async def test_cache_serves_repeats_until_the_catalogue_changes(tmp_path: Path) -> None:
    services, _, _ = build(tmp_path, cache_s=60)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        url = "/external-events/search?q=python"
        first = await client.get(url, headers=auth("user"))
        await client.get(url, headers=auth("user"))
        assert services.cache.hits == 1
        services.model.apply_external(
            external("meetup:7", "Python Meetup renamed", days=3, version=2)
        )
        changed = await client.get(url, headers=auth("user"))
        assert services.cache.hits == 1
        assert first.json()["events"][0]["title"] == "Python Meetup"
        assert changed.json()["events"][0]["title"] == "Python Meetup renamed"


async def test_csv_export_appends_only_new_rows(
    api: tuple[httpx.AsyncClient, Services, FakeImporter],
) -> None:
    client, services, _ = api
    admin = auth("admin")
    first = (await client.post("/external-events/export?q=electric", headers=admin)).json()
    assert first["appended"] == 2
    again = (await client.post("/external-events/export?q=elec", headers=admin)).json()
    assert again["appended"] == 0
    more = (await client.post("/external-events/export?q=python", headers=admin)).json()
    assert more == {**more, "appended": 1, "total_rows": 3}
    csv = await client.get("/external-events/export.csv", headers=admin)
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("id,source,external_id")
    assert sorted(line.split(",")[0] for line in lines[1:]) == [
        "meetup:7",
        "seatgeek:1",
        "ticketmaster:1",
    ]
    analytics = (await client.get("/external-events/analytics", headers=admin)).json()
    assert {s["source"]: s["count"] for s in analytics["source_stats"]}["meetup"] == 1
    assert analytics["import_stats"] == {
        "total_events": 3,
        "imported_events": 0,
        "import_rate": 0.0,
    }
    assert analytics["source_performance"][0]["success_rate"] == 0.9
    assert services.exporter.path.exists()


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
