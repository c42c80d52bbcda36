"""SeatGeek v2: client_id auth, paging, the 406 throttle, cancelled events vanishing."""

from __future__ import annotations

import base64
from typing import Any

from deploy.sandbox.world import SG, World
from tests.unit.sandbox.conftest import SG_AUTH, MakeClient

BASE = "/seatgeek/2"


async def test_auth_by_query_or_basic(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        r = await client.get(f"{BASE}/events")
        assert r.status_code == 403
        assert r.json()["status"] == 403
        assert r.json()["error"]
        bad = await client.get(f"{BASE}/events", params={**SG_AUTH, "client_secret": "wrong"})
        assert bad.status_code == 403
        ok = await client.get(
            f"{BASE}/events", params={**SG_AUTH, "client_secret": "sandbox-sg-secret"}
        )
        assert ok.status_code == 200
        basic = base64.b64encode(b"sandbox-sg-id:sandbox-sg-secret").decode()
        r = await client.get(f"{BASE}/events", headers={"Authorization": f"Basic {basic}"})
        assert r.status_code == 200


async def test_listing_shape_paging_and_filters(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        params: dict[str, Any] = {
            **SG_AUTH,
            "datetime_utc.gte": "2026-12-01T00:00:00",
            "datetime_utc.lte": "2026-12-31T23:59:59",
            "per_page": 100,
            "sort": "datetime_utc.asc",
        }
        r = await client.get(f"{BASE}/events", params=params)
        body = r.json()
        assert body["meta"]["per_page"] == 50  # clamped to the current maximum
        assert body["meta"]["page"] == 1
        assert body["meta"]["geolocation"] is None
        total = body["meta"]["total"]
        assert total > 50
        ev = body["events"][0]
        assert isinstance(ev["id"], int)
        assert not ev["datetime_utc"].endswith("Z")
        assert "+" not in ev["datetime_local"]
        assert isinstance(ev["venue"]["location"]["lat"], float)
        assert all(
            "2026-12-01T00:00:00" <= e["datetime_utc"] <= "2026-12-31T23:59:59"
            for e in body["events"]
        )
        seen = {e["id"] for e in body["events"]}
        r2 = await client.get(f"{BASE}/events", params={**params, "page": 2})
        assert seen.isdisjoint(e["id"] for e in r2.json()["events"])
        nba = await client.get(f"{BASE}/events", params={**SG_AUTH, "taxonomies.name": "nba"})
        assert all(any(t["name"] == "nba" for t in e["taxonomies"]) for e in nba.json()["events"])
        deep = await client.get(f"{BASE}/events", params={**SG_AUTH, "per_page": 50, "page": 201})
        assert deep.status_code == 200
        assert deep.json()["events"] == []
        assert deep.json()["meta"]["total"] == 0
        for path, key in (
            ("venues", "venues"),
            ("performers", "performers"),
            ("taxonomies", "taxonomies"),
        ):
            r = await client.get(f"{BASE}/{path}", params=SG_AUTH)
            assert r.status_code == 200
            assert r.json()[key]


async def test_tbd_time_shows_0330_and_null_stats(world: World, make_client: MakeClient) -> None:
    tbd = next(r for r in world.index[SG] if r.perf.time_tbd)
    empty = next(r for r in world.index[SG] if r.perf.listing_count == 0)
    async with make_client(world) as (client, _):
        ev = (await client.get(f"{BASE}/events/{tbd.ext_id}", params=SG_AUTH)).json()
        assert ev["time_tbd"] is True
        assert ev["datetime_local"].endswith("T03:30:00")
        ev = (await client.get(f"{BASE}/events/{empty.ext_id}", params=SG_AUTH)).json()
        assert ev["stats"]["lowest_price"] is None
        assert ev["stats"]["listing_count"] == 0


async def test_throttle_is_406(world: World, make_client: MakeClient) -> None:
    async with make_client(world, sg_per_second=3) as (client, clock):
        codes = [(await client.get(f"{BASE}/events", params=SG_AUTH)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 406]
        clock.t += 1.5
        assert (await client.get(f"{BASE}/events", params=SG_AUTH)).status_code == 200


async def test_cancelled_vanish_and_404(make_client: MakeClient) -> None:
    w = World(seed=5, events=1200)
    async with make_client(w) as (client, _):
        assert (await client.get(f"{BASE}/events/999", params=SG_AUTH)).status_code == 404
        listed = {r.ext_id for r in w.index[SG]}
        r = await client.post("/_sandbox/clock/advance", params={"hours": 72})
        assert r.json()["cancelled"] > 0
        truth = (await client.get("/_sandbox/truth")).json()["clusters"]
        gone = [
            rec["external_id"]
            for c in truth
            if c["status"] == "cancelled"
            for rec in c["records"]
            if rec["provider"] == SG
        ]
        gone = [g for g in gone if g in listed]
        assert gone
        r = await client.get(f"{BASE}/events/{gone[0]}", params=SG_AUTH)
        assert r.status_code == 404
        assert r.json()["status"] == 404
        all_ids: set[int] = set()
        page = 1
        while True:
            r = await client.get(f"{BASE}/events", params={**SG_AUTH, "per_page": 50, "page": page})
            events = r.json()["events"]
            if not events:
                break
            all_ids.update(e["id"] for e in events)
            page += 1
        assert not {int(g) for g in gone} & all_ids
        # Reissued ids: the old one 404s, the new one resolves.
        reissued = [
            rec
            for c in truth
            for rec in c["records"]
            if rec["provider"] == SG and rec["previous_ids"] and c["status"] != "cancelled"
        ]
        for rec in reissued[:3]:
            old = await client.get(f"{BASE}/events/{rec['previous_ids'][0]}", params=SG_AUTH)
            new = await client.get(f"{BASE}/events/{rec['external_id']}", params=SG_AUTH)
            assert old.status_code == 404
            assert new.status_code == 200
