"""Control endpoints: health, truth, stats, clock, limits, reset and every fault kind."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from deploy.sandbox.world import World
from tests.unit.sandbox.conftest import SG_AUTH, TM_AUTH, MakeClient

TM_EVENTS = "/ticketmaster/discovery/v2/events.json"
SG_EVENTS = "/seatgeek/2/events"


async def test_health_truth_and_limits(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        health = (await client.get("/_sandbox/health")).json()
        assert health["status"] == "ok"
        assert health["performances"] == 2000
        truth = (await client.get("/_sandbox/truth")).json()
        assert len(truth["clusters"]) == 2000
        assert {"performance_id", "records", "addons"} <= set(truth["clusters"][0])
        r = await client.post("/_sandbox/limits", json={"tm_daily_quota": 1})
        assert r.json()["tm_daily_quota"] == 1
        assert (await client.post("/_sandbox/limits", json={"nope": 1})).status_code == 400
        assert (
            await client.post("/_sandbox/limits", json={"tm_per_second": -1})
        ).status_code == 400
        assert (await client.get(TM_EVENTS, params=TM_AUTH)).status_code == 200
        assert (await client.get(TM_EVENTS, params=TM_AUTH)).status_code == 429
        reset = (await client.post("/_sandbox/reset")).json()
        assert reset["limits"]["tm_daily_quota"] == 0  # back to what the app started with
        assert (await client.get(TM_EVENTS, params=TM_AUTH)).status_code == 200
        stats = (await client.get("/_sandbox/stats")).json()
        assert stats["providers"]["ticketmaster"]["calls"] == 1


async def test_clock_advance_endpoint(make_client: MakeClient) -> None:
    w = World(seed=9, events=600)
    async with make_client(w) as (client, _):
        r = await client.post("/_sandbox/clock/advance", params={"hours": 24})
        body = r.json()
        assert body["now"] == "2026-11-24T00:00:00Z"
        assert body["changed"] > 0
        assert body["created"] > 0
        assert (
            await client.post("/_sandbox/clock/advance", params={"hours": "x"})
        ).status_code == 400


async def test_market_trade_moves_prices_and_listings_only(make_client: MakeClient) -> None:
    w = World(seed=9, events=600)
    before = {p.pid: (p.price, p.listing_count, p.start, p.cancelled) for p in w.perfs}
    now = w.now
    async with make_client(w) as (client, _):
        body = (await client.post("/_sandbox/market/trade", params={"hours": 24})).json()
        assert body["repriced"] > 0
        assert (await client.post("/_sandbox/market/trade", params={"hours": 0})).status_code == 400
    after = {p.pid: (p.price, p.listing_count, p.start, p.cancelled) for p in w.perfs}
    assert w.now == now  # the clock stays put
    assert set(after) == set(before)  # nothing created
    moved = [pid for pid in before if before[pid][:2] != after[pid][:2]]
    assert len(moved) == body["repriced"]
    assert all(before[pid][2:] == after[pid][2:] for pid in before)  # no reschedule, no cancel
    assert all(after[pid][1] < before[pid][1] for pid in moved)  # listings sell down


async def test_5xx_burst_then_recovery(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        r = await client.post(
            "/_sandbox/faults", json={"provider": "ticketmaster", "kind": "5xx_burst", "count": 3}
        )
        assert r.status_code == 200
        # Other providers are untouched.
        assert (await client.get(SG_EVENTS, params=SG_AUTH)).status_code == 200
        codes = [(await client.get(TM_EVENTS, params=TM_AUTH)).status_code for _ in range(4)]
        assert codes == [503, 502, 500, 200]
        stats = (await client.get("/_sandbox/stats")).json()
        assert stats["providers"]["ticketmaster"]["faults"] == {"5xx_burst": 3}
        assert stats["faults_injected_total"] == 3


async def test_malformed_and_truncated(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        await client.post("/_sandbox/faults", json={"provider": "*", "kind": "malformed_json"})
        await client.post("/_sandbox/faults", json={"provider": "seatgeek", "kind": "truncated"})
        r = await client.get(SG_EVENTS, params=SG_AUTH)
        assert r.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(r.content)
        r = await client.get(SG_EVENTS, params=SG_AUTH)
        assert r.status_code == 200
        assert r.content.startswith(b'{"events":[')
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(r.content)
        full = await client.get(SG_EVENTS, params=SG_AUTH)
        assert len(r.content) == len(full.content) // 2
        assert orjson.loads(full.content)["events"]


async def test_slow_timeout_and_clear(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        await client.post(
            "/_sandbox/faults", json={"provider": "seatgeek", "kind": "slow", "delay_ms": 150}
        )
        t0 = time.perf_counter()
        r = await client.get(SG_EVENTS, params=SG_AUTH)
        assert r.status_code == 200
        assert time.perf_counter() - t0 >= 0.14
        await client.post("/_sandbox/faults", json={"provider": "seatgeek", "kind": "timeout"})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get(SG_EVENTS, params=SG_AUTH), 0.2)
        await client.post(
            "/_sandbox/faults", json={"provider": "*", "kind": "5xx_burst", "count": 5}
        )
        listed = (await client.get("/_sandbox/faults")).json()["faults"]
        assert listed[-1]["remaining"] == 5
        assert (await client.delete("/_sandbox/faults")).json() == {"faults": []}
        assert (await client.get(SG_EVENTS, params=SG_AUTH)).status_code == 200
        bad = await client.post("/_sandbox/faults", json={"provider": "x", "kind": "slow"})
        assert bad.status_code == 400
        bad = await client.post("/_sandbox/faults", json={"kind": "explode"})
        assert bad.status_code == 400
