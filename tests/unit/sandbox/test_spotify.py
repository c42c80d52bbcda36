"""Spotify: client-credentials tokens that expire, rolling-window 429s and the daily quota."""

from __future__ import annotations

import httpx

from deploy.sandbox.world import World
from tests.unit.sandbox.conftest import SP_BASIC, MakeClient

TOKEN = "/spotify/accounts/api/token"


async def _token(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post(TOKEN, data={"grant_type": "client_credentials"}, auth=SP_BASIC)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    return {"Authorization": f"Bearer {body['access_token']}"}


async def test_token_errors_and_expiry(world: World, make_client: MakeClient) -> None:
    async with make_client(world, spotify_token_ttl_s=60) as (client, clock):
        bad = await client.post(TOKEN, data={"grant_type": "client_credentials"}, auth=("x", "y"))
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_client"
        r = await client.post(TOKEN, data={"grant_type": "client_credentials"}, auth=SP_BASIC)
        assert r.json()["expires_in"] == 60
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        artist = world.artists[0]
        ok = await client.get(f"/spotify/v1/artists/{artist.id}", headers=headers)
        assert ok.status_code == 200
        assert ok.json()["name"] == artist.name
        clock.t += 61
        expired = await client.get(f"/spotify/v1/artists/{artist.id}", headers=headers)
        assert expired.status_code == 401
        assert expired.json() == {"error": {"status": 401, "message": "The access token expired"}}
        none = await client.get(f"/spotify/v1/artists/{artist.id}")
        assert none.status_code == 401
        fresh = await _token(client)
        missing = await client.get("/spotify/v1/artists/" + "A" * 22, headers=fresh)
        assert missing.status_code == 404


async def test_search_finds_same_name_artists(world: World, make_client: MakeClient) -> None:
    names: dict[str, int] = {}
    for a in world.artists:
        names[a.name] = names.get(a.name, 0) + 1
    dup = next(n for n, c in names.items() if c > 1)
    async with make_client(world) as (client, _):
        headers = await _token(client)
        r = await client.get(
            "/spotify/v1/search", params={"q": dup, "type": "artist", "limit": 50}, headers=headers
        )
        body = r.json()["artists"]
        assert sum(1 for a in body["items"] if a["name"] == dup) >= 2
        assert {"href", "items", "limit", "next", "offset", "previous", "total"} == set(body)
        r = await client.get("/spotify/v1/search", params={"q": dup}, headers=headers)
        assert r.status_code == 400


async def test_rolling_window_429_with_retry_after(world: World, make_client: MakeClient) -> None:
    async with make_client(world, spotify_window_requests=2) as (client, clock):
        headers = await _token(client)
        url = f"/spotify/v1/artists/{world.artists[0].id}"
        codes = [(await client.get(url, headers=headers)).status_code for _ in range(2)]
        clock.t += 10
        r = await client.get(url, headers=headers)
        assert codes == [200, 200]
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "20"
        clock.t += 21
        assert (await client.get(url, headers=headers)).status_code == 200


async def test_daily_quota_says_quota_exceeded(world: World, make_client: MakeClient) -> None:
    async with make_client(world, spotify_daily_quota=1) as (client, _):
        headers = await _token(client)
        url = f"/spotify/v1/artists/{world.artists[0].id}"
        assert (await client.get(url, headers=headers)).status_code == 200
        r = await client.get(url, headers=headers)
        assert r.status_code == 429
        assert "Retry-After" not in r.headers
        assert r.json()["error"]["reason"] == "QUOTA_EXCEEDED"
