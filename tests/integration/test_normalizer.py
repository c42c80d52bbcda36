"""The normalizer's faust worker against a real broker and MongoDB-wire server."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo.asynchronous.database import AsyncDatabase

from deploy.sandbox import World, render
from shared.contracts import (
    CanonicalChange,
    ChangeOp,
    Entity,
    EventStatus,
    Provider,
    RawRecord,
)
from shared.kafka import make_producer
from shared.mongo import (
    CATEGORIES,
    EVENTS,
    EXTERNAL_EVENTS,
    Document,
    get_database,
    make_client,
)
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_api import api_env, api_topics, free_port, poll, start_api
from tests.kafka_read import read_topic
from tests.stack import ROOT

EXPAND = {"venue", "ticket_availability", "event_sales_status", "category"}


def sandbox_records(events: int = 300) -> tuple[list[RawRecord], dict[str, str]]:
    """Raw records as the ingestor publishes them, and each key's true performance."""
    world = World(seed=5, events=events)
    out, truth = [], {}
    for provider, listed in world.by_id.items():
        for rec in listed.values():
            if provider == "ticketmaster":
                body = render.tm_event(world, rec)
            elif provider == "seatgeek":
                body = render.sg_event(world, rec)
            elif provider == "eventbrite":
                body = render.eb_event(world, rec, EXPAND)
            elif provider == "meetup":
                body = render.mu_node(world, rec)
            else:
                continue
            raw = RawRecord(
                provider=Provider(provider),
                external_id=str(body.get("token") or body["id"]),
                payload=body,
            )
            out.append(raw)
            truth[raw.key()] = f"{rec.perf.pid}/{rec.addon}" if rec.addon else rec.perf.pid
    return out, truth


class Worker:
    """``python -m services.normalizer`` with its own topics, group and database."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.normalizer", cwd=ROOT, env=self.env,
            stdout=out, stderr=out,
        )  # fmt: skip

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(sig)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def topics(kafka_settings: KafkaSettings, unique: str) -> dict[str, str]:
    names = {
        "input": f"raw.events.n-{unique}",
        "changes": f"events.canonical.n-{unique}",
        "dlq": f"raw.events.dlq.n-{unique}",
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(n, 2, 1) for n in names.values()])
    await admin.close()
    return names


def worker_env(
    stack: Any, topics: dict[str, str], app_id: str, tmp_path: Path, **extra: str
) -> dict[str, str]:
    """A worker with its own topics, consumer group and state directory."""
    return {
        **os.environ,
        **stack.env(),
        "MARQUEE_ENV": "test",
        "NORMALIZER_APP_ID": app_id,
        "NORMALIZER_INPUT_TOPIC": topics["input"],
        "NORMALIZER_CHANGES_TOPIC": topics["changes"],
        "NORMALIZER_DLQ_TOPIC": topics["dlq"],
        "NORMALIZER_DATA_DIR": str(tmp_path / "faust"),
        "NORMALIZER_HTTP_PORT": "0",
        "NORMALIZER_BATCH_SIZE": "100",
        **extra,
    }


@pytest.fixture
async def worker(
    topics: dict[str, str], stack: Any, unique: str, tmp_path: Path, mongo_settings: MongoSettings
) -> AsyncIterator[Worker]:
    env = worker_env(
        stack, topics, f"normalizer-{unique}", tmp_path, MONGO_DATABASE=f"norm_{unique}"
    )
    process = Worker(env, tmp_path / "worker.log")
    await process.start()
    yield process
    await process.stop()
    client = make_client(mongo_settings)
    await client.drop_database(f"norm_{unique}")
    await client.close()


async def publish(kafka: KafkaSettings, topic: str, records: Sequence[RawRecord | bytes]) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        for record in records:
            if isinstance(record, bytes):
                await producer.send(topic, record, key=b"bad:1")
            else:
                await producer.send(topic, record.to_json_bytes(), key=record.key().encode())
        await producer.flush()
    finally:
        await producer.stop()


def artist_record(spotify_id: str, name: str, genres: list[str], popularity: int) -> RawRecord:
    """A Spotify artist as the ingestor publishes it."""
    return RawRecord(
        provider=Provider.SPOTIFY,
        entity=Entity.PERFORMER,
        external_id=spotify_id,
        payload={
            "id": spotify_id,
            "name": name,
            "genres": genres,
            "popularity": popularity,
            "type": "artist",
        },
    )


async def publish_artist(
    kafka: KafkaSettings, topic: str, artist: RawRecord, match: dict[str, bytes]
) -> None:
    """``artist`` with the ingestor's ``ce_match*`` headers (the performer it was matched to)."""
    producer = make_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            artist.to_json_bytes(),
            key=artist.key().encode(),
            headers=[(f"ce_match{name}", value) for name, value in match.items()],
        )
    finally:
        await producer.stop()


async def read_all(kafka: KafkaSettings, topic: str) -> list[Any]:
    return await read_topic(kafka, topic, 2)


def split_performances(externals: list[Document], truth: dict[str, str]) -> tuple[int, int]:
    """How many true performances ended up in more than one canonical event, of how many."""
    by_truth: dict[str, set[str]] = {}
    for doc in externals:
        by_truth.setdefault(truth[doc["_id"]], set()).add(doc["canonical_id"])
    return sum(1 for ids in by_truth.values() if len(ids) > 1), len(by_truth)


async def wait_for(db: AsyncDatabase[Document], count: int, worker: Worker) -> None:
    deadline = asyncio.get_running_loop().time() + 180
    while await db[EXTERNAL_EVENTS].count_documents({}) < count:
        assert worker.proc is not None
        assert worker.proc.returncode is None, worker.log.read_text()[-3000:]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("worker too slow:\n" + worker.log.read_text()[-3000:])
        await asyncio.sleep(1)


async def test_raw_records_become_one_catalogue(
    worker: Worker,
    topics: dict[str, str],
    kafka_settings: KafkaSettings,
    mongo_settings: MongoSettings,
    unique: str,
) -> None:
    records, truth = sandbox_records()
    # A Spotify artist the ingestor matched to a Ticketmaster performer, sent before events.
    tm = next(
        r for r in records
        if r.provider is Provider.TICKETMASTER and r.payload.get("_embedded", {}).get("attractions")
    )  # fmt: skip
    attraction = tm.payload["_embedded"]["attractions"][0]
    artist = artist_record("0C0XlULifJtAgn6ZNCW2eu", attraction["name"], ["indie"], 77)
    match = {"provider": b"ticketmaster", "id": str(attraction["id"]).encode()}
    await publish_artist(
        kafka_settings,
        topics["input"],
        artist,
        {**match, "method": b"search", "confidence": b"0.910"},
    )
    await asyncio.sleep(3)  # the artist is stored before the events that name the performer
    poison = b'{"provider": "ticketmaster", "external_id": ""}'
    await publish(kafka_settings, topics["input"], [*records[:50], poison, *records[50:]])
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, f"norm_{unique}")
    try:
        await wait_for(db, len(records), worker)
        externals = await db[EXTERNAL_EVENTS].find({}).to_list()
        assert {d["_id"] for d in externals} == {r.key() for r in records}
        canon = await db[EVENTS].find({}).to_list()
        # Same performance on two providers: one canonical event for both (mostly).
        split, total = split_performances(externals, truth)
        assert split <= total * 0.02, f"{split} performances split across events"
        live = [d for d in canon if not d.get("duplicate_of")]
        assert len(live) == len({d["canonical_id"] for d in externals})
        # The poison message went to the DLQ with its reason; the stream went on.
        dead = await read_all(kafka_settings, topics["dlq"])
        assert len(dead) == 1
        headers = dict(dead[0].headers)
        assert headers["dlq_error_class"] == b"ValidationError"
        assert headers["dlq_source_offset"]
        changes = [
            CanonicalChange.model_validate_json(r.value)
            for r in await read_all(kafka_settings, topics["changes"])
        ]
        assert {c.canonical_id for c in changes} == {d["_id"] for d in canon}
        assert ChangeOp.CREATED in {c.op for c in changes}
        assert all(c.version >= 1 for c in changes)

        # Redelivery of the same records writes nothing new and announces nothing.
        before = len(changes)
        await publish(kafka_settings, topics["input"], records[:40])
        await asyncio.sleep(8)
        again = await read_all(kafka_settings, topics["changes"])
        assert len(again) == before
        assert await db[EVENTS].count_documents({}) == len(canon)

        # A tombstone cancels: the canonical event of a single-source record says so.
        lonely = next(
            d for d in externals
            if sum(1 for e in externals if e["canonical_id"] == d["canonical_id"]) == 1
        )  # fmt: skip
        provider, external_id = lonely["_id"].split(":", 1)
        gone = RawRecord(provider=Provider(provider), external_id=external_id, tombstone=True)
        await publish(kafka_settings, topics["input"], [gone])
        for _ in range(60):
            event = await db[EVENTS].find_one({"_id": lonely["canonical_id"]})
            if event and event["status"] == EventStatus.CANCELLED.value:
                break
            await asyncio.sleep(1)
        assert event is not None
        assert event["status"] == EventStatus.CANCELLED.value
        assert event["version"] >= 2

        # The matched Spotify artist is joined onto the performer of the canonical event.
        tm_doc = next(d for d in externals if d["_id"] == tm.key())
        joined = await db[EVENTS].find_one({"_id": tm_doc["canonical_id"]})
        assert joined is not None
        named = [p for p in joined["performers"] if p["name"] == attraction["name"]]
        assert named
        assert named[0]["popularity"] == 77
        assert named[0]["match_confidence"] == 0.91

        # Categories: the canonical taxonomy and the providers' own, once each.
        sources = set(await db[CATEGORIES].distinct("source"))
        assert {"marquee", "ticketmaster", "seatgeek"} <= sources

        # replay-dlq feeds the dead letter back; still unreadable, it lands in the DLQ again.
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.normalizer", "replay-dlq", cwd=ROOT, env=worker.env,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await replay.communicate()
        assert replay.returncode == 0
        assert b"replayed 1 dead-lettered records" in out
        for _ in range(60):
            dead = await read_all(kafka_settings, topics["dlq"])
            if len(dead) == 2:
                break
            await asyncio.sleep(1)
        assert len(dead) == 2
    finally:
        await client.close()


def shifted(value: str, hours: int) -> str:
    return (datetime.fromisoformat(value) + timedelta(hours=hours)).isoformat()


def again(record: RawRecord, payload: dict[str, Any]) -> RawRecord:
    """A later fetch of the same record with another payload."""
    return RawRecord(provider=record.provider, external_id=record.external_id, payload=payload)


async def changes_until(
    kafka: KafkaSettings, topic: str, done: Callable[[list[CanonicalChange]], bool]
) -> list[CanonicalChange]:
    for _ in range(90):
        changes = [
            CanonicalChange.model_validate_json(r.value) for r in await read_all(kafka, topic)
        ]
        if done(changes):
            return changes
        await asyncio.sleep(1)
    raise AssertionError(f"changes never arrived: {[(c.op, c.canonical_id) for c in changes]}")


async def test_catalogue_follows_merges_splits_and_late_artists(
    worker: Worker,
    topics: dict[str, str],
    kafka_settings: KafkaSettings,
    mongo_settings: MongoSettings,
    unique: str,
) -> None:
    records, truth = sandbox_records()
    by_key = {r.key(): r for r in records}
    tm = next(
        r for r in records
        if r.provider is Provider.TICKETMASTER
        and r.payload.get("_embedded", {}).get("attractions")
        and any(k.startswith("seatgeek:") and t == truth[r.key()] for k, t in truth.items())
    )  # fmt: skip
    sg = next(
        by_key[k] for k, t in truth.items() if k.startswith("seatgeek:") and t == truth[tm.key()]
    )
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, f"norm_{unique}")
    try:
        # SeatGeek first lists the show four hours off: no match, two canonical events.
        early = copy.deepcopy(sg.payload)
        early["datetime_utc"] = shifted(early["datetime_utc"], 4)
        early["datetime_local"] = shifted(early["datetime_local"], 4)
        await publish(kafka_settings, topics["input"], [tm, again(sg, early)])
        changes = await changes_until(kafka_settings, topics["changes"], lambda c: len(c) >= 2)
        assert [c.op for c in changes] == [ChangeOp.CREATED, ChangeOp.CREATED]
        tm_id = next(
            c.canonical_id for c in changes if c.event.sources[0].source is Provider.TICKETMASTER
        )
        sg_id = next(c.canonical_id for c in changes if c.canonical_id != tm_id)

        # SeatGeek corrects the time: the two are one performance; the younger merges away.
        await publish(kafka_settings, topics["input"], [again(sg, sg.payload)])
        changes = await changes_until(
            kafka_settings, topics["changes"], lambda c: any(x.op is ChangeOp.MERGED for x in c)
        )
        merged = next(c for c in changes if c.op is ChangeOp.MERGED)
        assert (merged.canonical_id, merged.merged_into) == (sg_id, tm_id)
        assert merged.event.duplicate_of == tm_id
        survivor = await db[EVENTS].find_one({"_id": tm_id})
        assert survivor is not None
        assert {s["source"] for s in survivor["sources"]} == {"ticketmaster", "seatgeek"}
        loser = await db[EVENTS].find_one({"_id": sg_id})
        assert loser is not None
        assert loser["duplicate_of"] == tm_id
        moved = await db[EXTERNAL_EVENTS].find_one({"_id": sg.key()})
        assert moved is not None
        assert moved["canonical_id"] == tm_id

        # Ticketmaster's listing turns out to be another show in another city: it splits off,
        # and SeatGeek's listing keeps the id subscribers know.
        elsewhere = copy.deepcopy(tm.payload)
        elsewhere["_embedded"]["venues"] = [
            {"id": "KovZ-far", "name": "Harbour Amphitheatre", "city": {"name": "Reykjavik"},
             "country": {"countryCode": "IS"}, "timezone": "Atlantic/Reykjavik",
             "location": {"latitude": "64.1466", "longitude": "-21.9426"}}
        ]  # fmt: skip
        await publish(kafka_settings, topics["input"], [again(tm, elsewhere)])
        changes = await changes_until(
            kafka_settings, topics["changes"], lambda c: any(x.split_from for x in c)
        )
        split = next(c for c in changes if c.split_from)
        assert split.op is ChangeOp.CREATED
        assert split.split_from == tm_id
        left = await db[EVENTS].find_one({"_id": tm_id})
        assert left is not None
        assert [s["source"] for s in left["sources"]] == ["seatgeek"]
        tm_doc = await db[EXTERNAL_EVENTS].find_one({"_id": tm.key()})
        assert tm_doc is not None
        assert tm_doc["canonical_id"] == split.canonical_id

        # The performer's Spotify artist arrives after its event: the event is merged again.
        attraction = tm.payload["_embedded"]["attractions"][0]
        artist = artist_record("1dfeR4HaWDbWqFHLkxsg1d", attraction["name"], ["rock"], 64)
        match = {"provider": b"ticketmaster", "id": str(attraction["id"]).encode()}
        await publish_artist(
            kafka_settings,
            topics["input"],
            artist,
            {**match, "method": b"link", "confidence": b"1.000", "events": tm.key().encode()},
        )
        changes = await changes_until(
            kafka_settings,
            topics["changes"],
            lambda c: any(
                x.canonical_id == split.canonical_id
                and any(p.popularity == 64 for p in x.event.performers)
                for x in c
            ),
        )
        event = await db[EVENTS].find_one({"_id": split.canonical_id})
        assert event is not None
        assert [p["spotify_id"] for p in event["performers"] if p["popularity"] == 64]
        # Versions only ever grow, per canonical event.
        for cid in {c.canonical_id for c in changes}:
            versions = [c.version for c in changes if c.canonical_id == cid]
            assert versions == sorted(versions)
            assert len(set(versions)) == len(versions)
    finally:
        await client.close()


async def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    worker: Worker,
    topics: dict[str, str],
    kafka_settings: KafkaSettings,
    mongo_settings: MongoSettings,
    unique: str,
) -> None:
    records, truth = sandbox_records(events=600)
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, f"norm_{unique}")
    try:
        await publish(kafka_settings, topics["input"], records)
        # Kill the worker without warning once it is part way through.
        for _ in range(120):
            if await db[EXTERNAL_EVENTS].count_documents({}) >= len(records) // 4:
                break
            await asyncio.sleep(0.5)
        await worker.stop(signal.SIGKILL)
        partial = await db[EXTERNAL_EVENTS].count_documents({})
        assert partial < len(records), "the worker finished before it could be killed"
        await worker.start()
        await wait_for(db, len(records), worker)
        externals = await db[EXTERNAL_EVENTS].find({}).to_list()
        assert len(externals) == len(records)
        stored = await db[EVENTS].find({}, {"_id": 1, "duplicate_of": 1}).to_list()
        canon_ids = {d["_id"] for d in stored if not d.get("duplicate_of")}
        # No canonical event without a member (a duplicate made before the crash would be one).
        assert canon_ids == {d["canonical_id"] for d in externals}
        changes = [
            CanonicalChange.model_validate_json(r.value)
            for r in await read_all(kafka_settings, topics["changes"])
        ]
        last: dict[str, int] = {}
        for change in changes:  # per key, in partition order
            assert change.version >= last.get(change.canonical_id, 0), "version went back"
            last[change.canonical_id] = change.version
        versions = {d["_id"]: d["version"] for d in await db[EVENTS].find({}).to_list()}
        assert all(versions[cid] == version for cid, version in last.items())
        split, total = split_performances(externals, truth)
        assert split <= total * 0.02
    finally:
        await client.close()


async def test_store_stopped_for_20s_loses_nothing(
    topics: dict[str, str],
    stack: Any,
    unique: str,
    tmp_path: Path,
    kafka_settings: KafkaSettings,
) -> None:
    # A private MongoDB-wire server this test may freeze: the local stack's SecantusDB build.
    spec = importlib.util.spec_from_file_location("local_stack", ROOT / "deploy/local/stack.py")
    assert spec is not None
    assert spec.loader is not None
    local_stack: Any = importlib.util.module_from_spec(spec)
    sys.modules["local_stack"] = local_stack  # its dataclasses look themselves up there
    spec.loader.exec_module(local_stack)

    await asyncio.to_thread(local_stack.build_mongo)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = await asyncio.create_subprocess_exec(
        *local_stack.mongo_command({"port": port}, local_stack.RunDir(tmp_path / "store")),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"mongodb://127.0.0.1:{port}/"
    private = MongoSettings(url=url, server_selection_timeout_ms=3000)
    client = make_client(private)
    db = get_database(client, private, "frozen")
    env = worker_env(
        stack,
        topics,
        f"normalizer-frozen-{unique}",
        tmp_path,
        MONGO_URL=url,
        MONGO_DATABASE="frozen",
        # Short timeouts, so the freeze surfaces as errors the worker must wait out.
        MONGO_SOCKET_TIMEOUT_MS="3000",
        MONGO_SERVER_SELECTION_TIMEOUT_MS="3000",
        NORMALIZER_BATCH_SIZE="50",
    )
    worker = Worker(env, tmp_path / "worker.log")
    records, _truth = sandbox_records(events=300)
    half = len(records) // 2
    try:
        for _ in range(60):
            with contextlib.suppress(Exception):
                await client.admin.command("ping")
                break
            await asyncio.sleep(0.5)
        await worker.start()
        await publish(kafka_settings, topics["input"], records[:half])
        await wait_for(db, half, worker)
        store.send_signal(signal.SIGSTOP)  # the store stops answering, connections stay open
        await publish(kafka_settings, topics["input"], records[half:])
        await asyncio.sleep(20)
        store.send_signal(signal.SIGCONT)
        await wait_for(db, len(records), worker)
        assert await db[EXTERNAL_EVENTS].count_documents({}) == len(records)
        assert await read_all(kafka_settings, topics["dlq"]) == []
        assert "store unavailable, retrying" in worker.log.read_text()
    finally:
        await worker.stop()
        store.send_signal(signal.SIGCONT)
        store.terminate()
        await store.wait()
        await client.close()


def api_headers(env: dict[str, str]) -> dict[str, str]:
    from services.api.auth import mint

    return {"Authorization": f"Bearer {mint('reader', 'user', secret=env['API_JWT_SECRET'])}"}


async def test_member_change_that_keeps_the_event_is_announced_and_served(
    worker: Worker,
    topics: dict[str, str],
    stack: Any,
    kafka_settings: KafkaSettings,
    mongo_settings: MongoSettings,
    unique: str,
    tmp_path: Path,
) -> None:
    """A SeatGeek title edit under Ticketmaster's title: announced, and the API serves it."""
    records, truth = sandbox_records()
    by_key = {r.key(): r for r in records}
    # A few Ticketmaster/SeatGeek pairs of one performance each; the test uses one that merged.
    pairs = [
        (r, by_key[k])
        for r in records
        if r.provider is Provider.TICKETMASTER
        for k, t in truth.items()
        if k.startswith("seatgeek:") and t == truth[r.key()]
    ][:5]
    assert pairs
    api_names = {**api_topics(unique), "canonical": topics["changes"]}
    env = api_env(stack, api_names, f"norm_{unique}", free_port())
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, f"norm_{unique}")
    pair = {Provider.TICKETMASTER, Provider.SEATGEEK}

    def both(change: CanonicalChange) -> bool:
        return {s.source for s in change.event.sources} == pair

    try:
        await publish(kafka_settings, topics["input"], [r for p in pairs for r in p])
        await wait_for(db, 2 * len(pairs), worker)
        linked = {d["_id"]: d["canonical_id"] for d in await db[EXTERNAL_EVENTS].find({}).to_list()}
        tm, sg = next(p for p in pairs if linked[p[0].key()] == linked[p[1].key()])
        cid = linked[tm.key()]
        changes = await changes_until(
            kafka_settings,
            topics["changes"],
            lambda c: any(x.canonical_id == cid and both(x) for x in c),
        )
        joint = [c for c in changes if c.canonical_id == cid][-1]
        stored = await db[EVENTS].find_one({"_id": cid})
        assert stored is not None
        assert stored["version"] == joint.version
        assert joint.event.title == tm.payload["name"]  # Ticketmaster's title leads

        async with (
            start_api(env, tmp_path / "api.log") as url,
            httpx.AsyncClient(base_url=url, headers=api_headers(env), timeout=30) as http,
        ):
            path = f"/external-events/seatgeek/{sg.external_id}"
            first = (await http.get(path)).json()
            assert first["version"] == 1
            assert first["title"] == sg.payload["title"]

            # SeatGeek renames its listing; Ticketmaster's title still leads the event.
            renamed = copy.deepcopy(sg.payload)
            renamed["title"] = f"{sg.payload['title']} Encore"
            edit = again(sg, renamed)
            seen = {(c.canonical_id, c.version) for c in changes}
            before = len(await read_all(kafka_settings, topics["changes"]))
            sent = time.monotonic()
            await publish(kafka_settings, topics["input"], [edit])
            changes = await changes_until(
                kafka_settings, topics["changes"], lambda c: len(c) > before
            )
            announced = time.monotonic() - sent
            news = [c for c in changes if (c.canonical_id, c.version) not in seen]
            assert len(news) == 1
            update = news[0]
            assert (update.op, update.canonical_id) == (ChangeOp.UPDATED, cid)
            assert update.version == joint.version + 1
            assert update.event.title == joint.event.title  # the event itself did not change
            assert both(update)
            raw = next(
                r
                for r in await read_all(kafka_settings, topics["changes"])
                if CanonicalChange.model_validate_json(r.value).version == update.version
                and r.key == cid.encode()
            )
            header = dict(raw.headers)["ce_sourceversions"]
            assert orjson.loads(header) == {tm.key(): 1, sg.key(): 2}
            # One CloudEvents id per event version: a re-sent copy carries the same one.
            assert dict(raw.headers)["ce_id"] == f"{cid}:{update.version}".encode()

            async def served() -> Any:
                body = (await http.get(path)).json()
                return body if body.get("version") == 2 else None

            body = await poll(served, timeout_s=20)
            visible = time.monotonic() - sent
            assert body["title"] == renamed["title"]
            assert body["canonical_id"] == cid
            detail = (await http.get(f"/events/{cid}")).json()
            assert detail["version"] == update.version
            print(f"\nmember edit: announced after {announced:.2f}s, served after {visible:.2f}s")

            # The same record again (redelivery, or a re-fetch of unchanged content): nothing
            # is written and nothing announced.
            await publish(kafka_settings, topics["input"], [edit, again(sg, renamed)])
            await asyncio.sleep(8)
            assert len(await read_all(kafka_settings, topics["changes"])) == before + 1
            stored = await db[EVENTS].find_one({"_id": cid})
            assert stored is not None
            assert stored["version"] == update.version
            member = await db[EXTERNAL_EVENTS].find_one({"_id": sg.key()})
            assert member is not None
            assert member["version"] == 2
            assert (await http.get(path)).json()["version"] == 2
    finally:
        await client.close()
