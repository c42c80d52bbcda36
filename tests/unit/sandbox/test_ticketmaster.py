"""Ticketmaster Discovery v2: auth, HAL paging, the deep-paging cap, quotas and headers."""

from __future__ import annotations

from typing import Any

from deploy.sandbox.world import TM, World
from tests.unit.sandbox.conftest import TM_AUTH, MakeClient

BASE = "/ticketmaster/discovery/v2"


async def test_bad_key_gets_the_apigee_fault(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        for params in ({}, {"apikey": "nope"}):
            r = await client.get(f"{BASE}/events.json", params=params)
            assert r.status_code == 401
            fault = r.json()["fault"]
            assert fault["detail"]["errorcode"] == "oauth.v2.InvalidApiKey"
            assert fault["faultstring"]


async def test_paging_links_and_true_total(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        r = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 200})
        assert r.status_code == 200
        body = r.json()
        total = body["page"]["totalElements"]
        assert total > 1000  # the true total, beyond what paging can reach
        assert body["page"] == {
            "size": 200,
            "totalElements": total,
            "totalPages": -(-total // 200),
            "number": 0,
        }
        assert "page=1" in body["_links"]["next"]["href"]
        events = body["_embedded"]["events"]
        starts = [e["dates"]["start"].get("dateTime", "") for e in events]
        dated = [s for s in starts if s]
        assert dated == sorted(dated)
        r1 = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 200, "page": 1})
        assert {e["id"] for e in events}.isdisjoint(
            e["id"] for e in r1.json()["_embedded"]["events"]
        )
        assert "prev" in r1.json()["_links"]
        # size is clamped to 200 here (500 on the real API).
        r = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 500})
        assert r.json()["page"]["size"] == 200


async def test_deep_paging_cap_is_an_error(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        ok = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 200, "page": 4})
        assert ok.status_code == 200
        r = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 200, "page": 5})
        assert r.status_code == 400
        err = r.json()["errors"][0]
        assert err["code"] == "DIS1035"
        assert err["status"] == "400"
        assert "Max paging depth exceeded" in err["detail"]
        assert "Rate-Limit" not in r.headers  # the quota is off here: no quota headers


async def test_date_window_filters_and_empty_result(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        params: dict[str, Any] = {
            **TM_AUTH,
            "startDateTime": "2026-12-01T00:00:00Z",
            "endDateTime": "2026-12-02T00:00:00Z",
            "size": 200,
        }
        r = await client.get(f"{BASE}/events.json", params=params)
        body = r.json()
        n = body["page"]["totalElements"]
        assert 0 < n < 100
        for e in body["_embedded"]["events"]:
            if "dateTime" in e["dates"]["start"]:
                assert (
                    "2026-12-01T00:00:00Z"
                    <= e["dates"]["start"]["dateTime"]
                    <= "2026-12-02T00:00:00Z"
                )
        r = await client.get(f"{BASE}/events.json", params={**params, "keyword": "zzzqqq"})
        body = r.json()
        assert "_embedded" not in body
        assert body["page"]["totalElements"] == 0
        bad = await client.get(
            f"{BASE}/events.json", params={**TM_AUTH, "startDateTime": "2026-12-01"}
        )
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["code"] == "DIS1015"
        music = await client.get(
            f"{BASE}/events.json", params={**params, "classificationName": "music"}
        )
        assert all(
            e["classifications"][0]["segment"]["name"] == "Music"
            for e in music.json().get("_embedded", {}).get("events", [])
        )


async def test_tba_events_need_include_flags(world: World, make_client: MakeClient) -> None:
    tba = [r for r in world.index[TM] if r.tm_date_flag == "TBA"]
    assert tba
    async with make_client(world) as (client, _):
        default = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 1})
        inc = await client.get(
            f"{BASE}/events.json", params={**TM_AUTH, "size": 1, "includeTBA": "yes"}
        )
        assert inc.json()["page"]["totalElements"] > default.json()["page"]["totalElements"]


async def test_event_by_id_and_404(world: World, make_client: MakeClient) -> None:
    rec = world.index[TM][0]
    async with make_client(world) as (client, _):
        r = await client.get(f"{BASE}/events/{rec.ext_id}.json", params=TM_AUTH)
        assert r.status_code == 200
        ev = r.json()
        assert ev["id"] == rec.ext_id
        loc = ev["_embedded"]["venues"][0]["location"]
        assert isinstance(loc["latitude"], str)
        assert isinstance(loc["longitude"], str)
        r = await client.get(f"{BASE}/events/nope.json", params=TM_AUTH)
        assert r.status_code == 404
        err = r.json()["errors"][0]
        assert err["code"] == "DIS1004"
        assert err["status"] == "404"
        assert "id=nope" in err["detail"]
        for path in ("venues.json", "attractions.json", "classifications.json"):
            r = await client.get(f"{BASE}/{path}", params=TM_AUTH)
            assert r.status_code == 200
            assert r.json()["_embedded"]


async def test_quirks_present_somewhere(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        r = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 200})
        events = r.json()["_embedded"]["events"]
    assert any("timezone" not in e["dates"] for e in events)
    assert any("priceRanges" not in e for e in events)
    assert any("priceRanges" in e for e in events)
    attractions = [a for e in events for a in e["_embedded"].get("attractions", [])]
    assert any("spotify" in a.get("externalLinks", {}) for a in attractions)
    codes = {e["dates"]["status"].get("code") for e in events}
    assert "onsale" in codes


async def test_rate_limit_headers_quota_and_spike(world: World, make_client: MakeClient) -> None:
    async with make_client(world, tm_daily_quota=3) as (client, clock):
        seen = []
        for _ in range(3):
            r = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 1})
            assert r.status_code == 200
            seen.append(int(r.headers["Rate-Limit-Available"]))
            assert r.headers["Rate-Limit"] == "3"
        assert seen == [2, 1, 0]
        r = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 1})
        assert r.status_code == 429
        assert "Retry-After" not in r.headers
        assert r.json()["fault"]["detail"]["errorcode"] == "policies.ratelimit.QuotaViolation"
        assert r.headers["Rate-Limit-Over"] == "1"
        reset_ms = int(r.headers["Rate-Limit-Reset"])
        assert reset_ms == int((clock.t - 0) * 1000) + 86_400_000
        clock.t += 86_401  # the daily window rolls over
        r = await client.get(f"{BASE}/events.json", params={**TM_AUTH, "size": 1})
        assert r.status_code == 200
    async with make_client(world, tm_per_second=2) as (client, clock):
        codes = [
            (await client.get(f"{BASE}/events.json", params=TM_AUTH)).status_code for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        r = await client.get(f"{BASE}/events.json", params=TM_AUTH)
        assert r.json()["fault"]["detail"]["errorcode"] == "policies.ratelimit.SpikeArrestViolation"
        clock.t += 1.01
        assert (await client.get(f"{BASE}/events.json", params=TM_AUTH)).status_code == 200
        stats = (await client.get("/_sandbox/stats")).json()
        assert stats["providers"][TM]["throttled"] == 2
