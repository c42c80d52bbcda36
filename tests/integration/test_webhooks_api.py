"""``/webhooks`` over HTTP in process, over the real store (a private database on the test
stack): create, list (paged), get, delete; roles; validation; others' ids; the secret."""

from __future__ import annotations

from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from services.api.webhooks import Webhooks
from shared.mongo import WEBHOOK_SUBSCRIPTIONS, Document, ensure_indexes, uses_index
from tests.integration.test_api_http import auth, client_of, services_over

SECRET = "whsec-0123456789abcdef"
BODY: dict[str, Any] = {
    "url": "https://hooks.example.com/marquee",
    "secret": SECRET,
    "filters": {
        "source": "ticketmaster",
        "category": "music",
        "near": {"lat": 41.88, "lon": -87.63, "radius_km": 25},
        "types": ["created", "cancelled"],
    },
    "description": "Chicago music",
}


def api(db: AsyncDatabase[Document]) -> httpx.AsyncClient:
    services, _fake = services_over(db)
    return client_of(services)


async def test_create_list_get_delete_and_who_may(mongo_db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(mongo_db)
    async with api(mongo_db) as http:
        assert (await http.post("/webhooks", json=BODY)).status_code == 401
        assert (await http.get("/webhooks")).status_code == 401
        refused = await http.post("/webhooks", json=BODY, headers=auth("user"))
        assert refused.status_code == 403
        assert refused.json()["error"].startswith("Requires the organizer role")
        made = await http.post("/webhooks", json=BODY, headers=auth("organizer", "alice"))
        assert made.status_code == 201, made.text
        hook = made.json()
        assert hook["id"].startswith("wh_")
        assert made.headers["location"] == f"/webhooks/{hook['id']}"
        assert hook["url"] == BODY["url"]
        assert hook["filters"] == BODY["filters"]
        assert hook["active"] is True
        assert hook["owner"] == "alice"
        assert hook["created_at"].endswith("Z")
        assert "secret" not in hook
        assert SECRET not in made.text
        # Stored with its secret (the notifier signs with it), and with its owner.
        stored = await mongo_db[WEBHOOK_SUBSCRIPTIONS].find_one({"_id": hook["id"]})
        assert stored is not None
        assert stored["secret"] == SECRET
        plain = {**BODY, "filters": {}}
        more = [
            (await http.post("/webhooks", json=plain, headers=auth("organizer", who))).json()
            for who in ("alice", "alice", "bob")
        ]
        # Own ones, oldest first, paged by cursor.
        pages, cursor = [], None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = await http.get("/webhooks", params=params, headers=auth("organizer", "alice"))
            assert page.status_code == 200, page.text
            assert SECRET not in page.text
            pages.append([h["id"] for h in page.json()["webhooks"]])
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert pages == [[hook["id"], more[0]["id"]], [more[1]["id"]]]
        everyone = await http.get("/webhooks", headers=auth("admin", "root"))
        assert [h["id"] for h in everyone.json()["webhooks"]] == [
            hook["id"],
            *(m["id"] for m in more),
        ]
        # One at a time: its owner or an admin; anyone else gets 404 (never "it exists").
        one = await http.get(f"/webhooks/{hook['id']}", headers=auth("organizer", "alice"))
        assert one.status_code == 200
        assert one.json() == hook
        assert (
            await http.get(f"/webhooks/{hook['id']}", headers=auth("admin", "root"))
        ).status_code == 200
        theirs = await http.get(f"/webhooks/{hook['id']}", headers=auth("organizer", "bob"))
        assert theirs.status_code == 404
        assert theirs.json() == {"error": "Webhook subscription not found"}
        unknown = await http.get("/webhooks/wh_nope", headers=auth("organizer", "bob"))
        assert unknown.json() == theirs.json()
        gone = await http.delete(f"/webhooks/{hook['id']}", headers=auth("organizer", "bob"))
        assert gone.status_code == 404
        assert (
            await http.delete(f"/webhooks/{hook['id']}", headers=auth("user", "alice"))
        ).status_code == 403
        deleted = await http.delete(f"/webhooks/{hook['id']}", headers=auth("organizer", "alice"))
        assert deleted.status_code == 204
        assert (
            await http.get(f"/webhooks/{hook['id']}", headers=auth("organizer", "alice"))
        ).status_code == 404
        assert (
            await http.delete(f"/webhooks/{hook['id']}", headers=auth("organizer", "alice"))
        ).status_code == 404
        # An admin deletes anyone's.
        assert (
            await http.delete(f"/webhooks/{more[2]['id']}", headers=auth("admin", "root"))
        ).status_code == 204
        left = await http.get("/webhooks", headers=auth("admin", "root"))
        assert [h["id"] for h in left.json()["webhooks"]] == [more[0]["id"], more[1]["id"]]
    # A deleted subscription is inactive and its secret erased at once.
    stored = await mongo_db[WEBHOOK_SUBSCRIPTIONS].find_one({"_id": hook["id"]})
    assert stored is not None
    assert stored["active"] is False
    assert "secret" not in stored
    # The listing reads an index, the owner's and everyone's.
    hooks = Webhooks(mongo_db)
    for owner in ("alice", None):
        query, sort = hooks.page_query(owner, None)
        plan = await mongo_db[WEBHOOK_SUBSCRIPTIONS].find(query).sort(sort).explain()
        assert uses_index(plan), plan


async def test_validation(mongo_db: AsyncDatabase[Document]) -> None:
    services, _fake = services_over(mongo_db)
    async with client_of(services) as http:
        org = auth("organizer")

        async def refused(body: dict[str, Any], field: str) -> dict[str, Any]:
            got = await http.post("/webhooks", json=body, headers=org)
            assert got.status_code == 422, got.text
            assert got.json()["error"] == "Validation failed"
            assert any(d["field"].startswith(field) for d in got.json()["details"]), got.json()
            return dict(got.json())

        short = await refused({**BODY, "secret": "short-secret"}, "body.secret")
        assert "short-secret" not in str(short)  # the secret is never echoed back
        await refused({**BODY, "secret": None}, "body.secret")
        await refused({k: v for k, v in BODY.items() if k != "secret"}, "body.secret")
        await refused({**BODY, "url": "ftp://hooks.example.com/"}, "body.url")
        await refused({**BODY, "url": "not a url"}, "body.url")
        await refused({**BODY, "filters": {"categroy": "music"}}, "body.filters.categroy")
        await refused({**BODY, "filters": {"types": ["exploded"]}}, "body.filters.types")
        await refused({**BODY, "filters": {"source": "myspace"}}, "body.filters.source")
        await refused({**BODY, "filters": {"near": {"lat": 91, "lon": 0}}}, "body.filters.near")
        await refused({**BODY, "filters": {"category": " , "}}, "body.filters.category")
        await refused({**BODY, "extra": 1}, "body.extra")
        # Loopback is fine in dev and test, refused in production, with the reason.
        local = {**BODY, "url": "http://127.0.0.1:9000/hook"}
        assert (await http.post("/webhooks", json=local, headers=org)).status_code == 201
        services.settings.environment = "prod"
        got = await refused(local, "body.url")
        assert "loopback or private" in got["details"][0]["message"]
        got = await refused({**BODY, "url": "http://localhost/hook"}, "body.url")
        assert "local name" in got["details"][0]["message"]
        bad_json = await http.post(
            "/webhooks", content=b"{nope", headers={**org, "content-type": "application/json"}
        )
        assert bad_json.status_code in (400, 422)
        assert "error" in bad_json.json()
        huge = {**BODY, "description": "x" * (1024 * 1024 + 10)}
        too_big = await http.post("/webhooks", json=huge, headers=org)
        assert too_big.status_code == 413
        assert "error" in too_big.json()
        paging = await http.get("/webhooks", params={"cursor": "nope"}, headers=org)
        assert paging.status_code == 422
