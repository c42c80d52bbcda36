"""Meetup GraphQL: root-field detection, Relay cursor paging, errors[] with HTTP 200."""

from __future__ import annotations

from typing import Any

import httpx

from deploy.sandbox.world import MU, World
from tests.unit.sandbox.conftest import MU_AUTH, MakeClient

URL = "/meetup/gql-ext"
GROUP_Q = """query($urlname: String!, $first: Int, $after: String) {
  groupByUrlname(urlname: $urlname) { id name events(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id token title } } } } }"""
SEARCH_Q = "query($query: String!) { eventSearch(filter: {query: $query}) { totalCount } }"


async def _gql(client: httpx.AsyncClient, doc: str, /, **variables: Any) -> httpx.Response:
    return await client.post(URL, json={"query": doc, "variables": variables}, headers=MU_AUTH)


def _busy_group(world: World) -> str:
    counts = {
        u: len(recs)
        for u, recs in world.mu_by_group.items()
        if any(r.start >= world.now for r in recs)
    }
    return max(counts, key=lambda u: counts[u])


async def test_auth_is_http_401(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        r = await client.post(URL, json={"query": GROUP_Q})
        assert r.status_code == 401
        assert r.json()["errors"]


async def test_group_cursor_paging(world: World, make_client: MakeClient) -> None:
    urlname = _busy_group(world)
    async with make_client(world) as (client, _):
        nodes: list[dict[str, Any]] = []
        after = None
        total = None
        while True:
            r = await _gql(client, GROUP_Q, urlname=urlname, first=3, after=after)
            assert r.status_code == 200
            assert "errors" not in r.json()
            conn = r.json()["data"]["groupByUrlname"]["events"]
            total = conn["totalCount"]
            nodes.extend(e["node"] for e in conn["edges"])
            if not conn["pageInfo"]["hasNextPage"]:
                break
            after = conn["pageInfo"]["endCursor"]
        assert len(nodes) == total == len(world.mu_by_group[urlname])
        assert len({n["token"] for n in nodes}) == total
        node = nodes[0]
        assert {
            "token",
            "id",
            "dateTime",
            "endTime",
            "duration",
            "status",
            "eventType",
            "venues",
            "feeSettings",
            "eventUrl",
            "featuredEventPhoto",
        } <= set(node)
        assert node["dateTime"][-6] in "+-"  # an offset, never a naive time
        unknown = await _gql(client, GROUP_Q, urlname="no-such-group")
        assert unknown.json() == {"data": {"groupByUrlname": None}}


async def test_event_search(world: World, make_client: MakeClient) -> None:
    async with make_client(world) as (client, _):
        r = await _gql(
            client, SEARCH_Q, query="PyData", first=5, afterDateTime="2026-11-01T00:00:00+00:00"
        )
        conn = r.json()["data"]["eventSearch"]
        assert conn["totalCount"] > 0
        assert all("PyData" in e["node"]["title"] for e in conn["edges"])
        city = next(r for r in world.index[MU] if not r.perf.online).perf.venue.city
        near = await _gql(client, SEARCH_Q, lat=city.lat, lon=city.lon, radius=30, first=50)
        assert all(
            e["node"]["venues"][0]["city"] == city.name
            for e in near.json()["data"]["eventSearch"]["edges"]
        )


async def test_validation_errors_come_with_200(world: World, make_client: MakeClient) -> None:
    urlname = _busy_group(world)
    async with make_client(world) as (client, _):
        cases = [
            ({"status": "UPCOMING"}, "Invalid input for enum 'EventStatus'"),
            ({"beforeDateTime": "2023-01-01"}, "as ZonedDateTime"),
            ({"beforeDateTime": "2023-01-01T12:00:00"}, "as ZonedDateTime"),
            ({"first": "ten"}, "Variable 'first'"),
        ]
        for variables, text in cases:
            r = await _gql(client, GROUP_Q, urlname=urlname, **variables)
            assert r.status_code == 200
            err = r.json()["errors"][0]
            assert text in err["message"]
            assert err["extensions"]["classification"] == "ValidationError"
        r = await _gql(client, "query { self { id } }")
        assert r.status_code == 200
        assert "undefined" in r.json()["errors"][0]["message"]
        r = await _gql(client, GROUP_Q, urlname=urlname, status="CANCELLED")
        assert "errors" not in r.json()


async def test_points_throttle_is_200_with_rate_limited(
    world: World, make_client: MakeClient
) -> None:
    urlname = _busy_group(world)
    async with make_client(world, meetup_points=10) as (client, clock):
        bodies = [(await _gql(client, GROUP_Q, urlname=urlname, first=20)).json() for _ in range(4)]
        assert "data" in bodies[0]
        assert bodies[0]["data"]["groupByUrlname"]
        limited = bodies[-1]
        assert limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        clock.t += 61
        again = (await _gql(client, GROUP_Q, urlname=urlname)).json()
        assert "errors" not in again
        stats = (await client.get("/_sandbox/stats")).json()["providers"][MU]
        assert stats["throttled"] >= 1
        assert stats["status"] == {"200": stats["calls"]}
