"""``GET /events/stream`` in a real API process against the real store: filtered live changes
(each ``id`` the change's feed cursor, each ``data`` the item ``/events/changes`` lists), resume
with ``Last-Event-ID`` or ``after`` (exactly the missed changes, then live, no duplicate),
heartbeats and the retry hint, 401 without a token, 4xx on bad filters, the connection cap."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.api.params import encode_cursor
from shared.mongo import EVENTS, ensure_indexes, get_database, make_client
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_api import (
    RunningApi,
    api_env,
    api_topics,
    canonical,
    create_topics,
    free_port,
    record,
    start_api,
)

NASHVILLE = (36.16, -86.78)


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]
    received: float  # time.time() when it arrived


@dataclass
class Stream:
    """One open SSE response read in the background: events and comments as they arrive."""

    response: httpx.Response
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        fields: dict[str, str] = {}
        async for line in self.response.aiter_lines():
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line == "":
                if "data" in fields:
                    self.events.put_nowait(
                        Event(
                            fields.get("id"),
                            fields.get("event", "message"),
                            orjson.loads(fields["data"]),
                            time.time(),
                        )
                    )
                fields = {}
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "retry":
                    self.retry = int(value)
                else:
                    fields[name] = value

    async def next(self, timeout_s: float = 10) -> Event:
        return await asyncio.wait_for(self.events.get(), timeout_s)

    async def take(self, n: int, timeout_s: float = 10) -> list[Event]:
        return [await self.next(timeout_s) for _ in range(n)]

    async def none_within(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            got = await asyncio.wait_for(self.events.get(), seconds)
            raise AssertionError(f"unexpected event {got}")


@contextlib.asynccontextmanager
async def open_stream(
    url: str, headers: dict[str, str], params: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    """An open stream, once the server has sent its first bytes (it is subscribed then)."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None)) as http,
        http.stream("GET", "/events/stream", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, (await response.aread())[:500]
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        stream.task = asyncio.create_task(stream.read())
        deadline = time.monotonic() + 10
        while "connected" not in stream.comments:
            assert time.monotonic() < deadline, "no first bytes from the stream"
            await asyncio.sleep(0.02)
        try:
            yield stream
        finally:
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await stream.task


def event_doc(
    canonical_id: str, provider: str = "ticketmaster", *, version: int = 1, **kw: Any
) -> dict[str, Any]:
    """A canonical event as the normalizer stores it, modified now."""
    member = record(
        provider, f"x-{canonical_id}", kw.pop("title", canonical_id), canonical_id, **kw
    )
    return canonical(canonical_id, [member], version=version, modified=datetime.now(UTC))


@pytest.fixture(scope="module")
async def streaming(
    stack: Any, kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path_factory: Any
) -> AsyncIterator[tuple[RunningApi, Any]]:
    unique = os.urandom(5).hex()
    topics = api_topics(f"sse-{unique}")
    await create_topics(kafka_settings, topics)
    database = f"sse_{unique}"
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, database)
    await ensure_indexes(db)
    env = {
        **api_env(stack, topics, database, free_port()),
        "API_STREAM_HEARTBEAT_S": "1",
        "API_STREAM_MAX_CLIENTS": "6",
    }
    log = tmp_path_factory.mktemp("sse") / "api.log"
    try:
        async with start_api(env, log) as url:
            yield RunningApi(url, env, topics, database, log), db
    finally:
        await client.drop_database(database)
        await client.close()


async def test_filtered_changes_arrive_live_with_their_cursor_and_feed_item(
    streaming: tuple[RunningApi, Any],
) -> None:
    api, db = streaming
    auth = api.headers("user")
    async with (
        open_stream(api.url, auth) as everything,
        open_stream(api.url, auth, {"source": "meetup"}) as meetup,
        open_stream(api.url, auth, {"category": "jazz"}) as jazz,
        open_stream(api.url, auth, {"near": f"{NASHVILLE[0]},{NASHVILLE[1]},10"}) as near,
    ):
        assert everything.retry == 3000
        rock = event_doc("f-rock", "ticketmaster")
        talk = event_doc("f-talk", "meetup", category="community", subcategory="tech")
        jazz_far = event_doc("f-jazz", "eventbrite", subcategory="jazz")
        jazz_far["venue"] = {**jazz_far["venue"], "city": "New York", "lat": 40.71, "lon": -74.0}
        for doc in (rock, talk, jazz_far):
            await db[EVENTS].insert_one(doc)
        got = await everything.take(3)
        # In feed order: (modified to the millisecond, id).
        written = [rock, talk, jazz_far]
        written.sort(key=lambda d: (int(d["updated_at"].timestamp() * 1000), d["_id"]))
        assert [e.data["canonical_id"] for e in got] == [d["_id"] for d in written]
        assert all(e.event == "change" and e.data["op"] == "created" for e in got)
        # Each id is the feed cursor, each data the item /events/changes lists for it.
        async with httpx.AsyncClient(base_url=api.url, headers=auth, timeout=30) as http:
            feed = (await http.get("/events/changes", params={"limit": 1000})).json()
        items = {c["canonical_id"]: c for c in feed["changes"]}
        for e, doc in zip(got, written, strict=True):
            assert e.id == encode_cursor((doc["updated_at"], doc["_id"]))
            assert e.data == items[e.data["canonical_id"]]
        assert [e.data["canonical_id"] for e in await meetup.take(1)] == ["f-talk"]
        assert [e.data["canonical_id"] for e in await jazz.take(1)] == ["f-jazz"]
        assert sorted(e.data["canonical_id"] for e in await near.take(2)) == ["f-rock", "f-talk"]
        # "music" is the parent of jazz: the subtree matches, as in the listings.
        async with open_stream(api.url, auth, {"category": "music"}) as music:
            update = event_doc("f-jazz", "eventbrite", version=2, subcategory="jazz")
            update["venue"] = jazz_far["venue"]
            await db[EVENTS].replace_one({"_id": "f-jazz"}, update)
            changed = await music.next()
            assert (changed.data["canonical_id"], changed.data["op"]) == ("f-jazz", "updated")
        for stream in (meetup, near):
            await stream.none_within(1.5)
        # Heartbeats while idle (every second here; 15 s by default).
        await asyncio.sleep(1.5)
        assert "heartbeat" in everything.comments


async def test_resume_with_last_event_id_returns_exactly_the_missed_changes(
    streaming: tuple[RunningApi, Any],
) -> None:
    api, db = streaming
    auth = api.headers("user")
    async with open_stream(api.url, auth) as first:
        for i in range(3):
            await db[EVENTS].insert_one(event_doc(f"r-{i}"))
        seen = await first.take(3)
    assert [e.data["canonical_id"] for e in seen] == ["r-0", "r-1", "r-2"]
    # Disconnected after r-0 (as if r-1 and r-2 were lost in flight), then more changes.
    for i in range(3, 6):
        await db[EVENTS].insert_one(event_doc(f"r-{i}"))
    last = seen[0].id
    assert last is not None
    async with open_stream(api.url, {**auth, "Last-Event-ID": last}) as resumed:
        missed = await resumed.take(5)
        assert [e.data["canonical_id"] for e in missed] == [f"r-{i}" for i in range(1, 6)]
        await db[EVENTS].insert_one(event_doc("r-6"))
        live = await resumed.next()
        assert live.data["canonical_id"] == "r-6"
        await resumed.none_within(1.0)  # nothing twice
    # ?after= does the same (a client that keeps the cursor itself); the header wins over it.
    async with open_stream(api.url, auth, {"after": missed[-2].id or ""}) as after:
        assert [e.data["canonical_id"] for e in await after.take(2)] == ["r-5", "r-6"]
        await after.none_within(1.0)
    async with open_stream(
        api.url, {**auth, "Last-Event-ID": missed[-1].id or ""}, {"after": last}
    ) as both:
        assert (await both.next()).data["canonical_id"] == "r-6"
        await both.none_within(1.0)


async def test_without_a_token_401_and_bad_filters_4xx(streaming: tuple[RunningApi, Any]) -> None:
    api, _ = streaming
    auth = api.headers("user")
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            answer = await http.get("/events/stream", headers=headers)
            assert answer.status_code == 401
            assert answer.headers["content-type"] == "application/json"
            assert answer.json()["error"]
        cases = [
            ({"near": "999,0"}, {}, 422, "query.near"),
            ({"near": "36.1"}, {}, 422, "query.near"),
            ({"source": "nope"}, {}, 400, "source"),
            ({"after": "not-a-cursor"}, {}, 400, "after"),
            ({"date_from": "2026-01-01"}, {}, 400, "date_from"),
            ({}, {"Last-Event-ID": "garbage"}, 400, "header.Last-Event-ID"),
        ]
        for params, extra, status, field_name in cases:
            answer = await http.get("/events/stream", params=params, headers={**auth, **extra})
            assert answer.status_code == status, (params, answer.text)
            assert answer.headers["content-type"] == "application/json"
            assert [d["field"] for d in answer.json()["details"]] == [field_name]
        # The page's stream takes the web cookie, not a Bearer header from elsewhere.
        assert (await http.get("/web/changes/stream")).status_code == 401


async def test_connection_cap_answers_503_and_frees_on_disconnect(
    streaming: tuple[RunningApi, Any], tmp_path: Path
) -> None:
    api, _ = streaming
    env = {**api.env, "API_HTTP_PORT": str(free_port()), "API_STREAM_MAX_CLIENTS": "2"}
    auth = api.headers("user")
    async with (
        start_api(env, tmp_path / "api-cap.log") as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        async with open_stream(url, auth), open_stream(url, auth):
            refused = await http.get("/events/stream", headers=auth)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/json"
            assert refused.headers["retry-after"] == "5"
            metrics = (await http.get("/metrics")).text
            assert "marquee_api_stream_clients 2.0" in metrics
            assert 'marquee_api_stream_refused_total{reason="full"} 1.0' in metrics
        # The two left: their places are free again at once.
        deadline = time.monotonic() + 5
        while "marquee_api_stream_clients 0.0" not in (await http.get("/metrics")).text:
            assert time.monotonic() < deadline, "the streams were not released"
            await asyncio.sleep(0.1)
        async with open_stream(url, auth):
            pass
