"""The importer and notifier as processes against the real Kafka and MongoDB-wire server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo.asynchronous.database import AsyncDatabase

from services.importer.ids import local_event_id
from services.importer.rules import ALREADY_IMPORTED, NOT_FOUND, START_IN_PAST, VALIDATION_ERROR
from services.importer.store import IMPORTS, LOCAL_EVENTS
from shared.cloudevents import ce_headers
from shared.contracts import (
    BulkImportRequest,
    CanonicalChange,
    ChangeOp,
    EventStatus,
    ImportItem,
    ImportRequest,
    ImportResult,
    ImportStatus,
    Notification,
    Provider,
)
from shared.contracts.base import utc_now
from shared.kafka import make_producer
from shared.mongo import Document
from shared.settings import KafkaSettings
from tests.integration.test_importer_pipeline import (
    catalogue,
    external,
    request,
    seed,
    when,
)
from tests.stack import ROOT

PARTITIONS = 2


class Service:
    """``python -m services.importer [notifier]`` with its own topics, groups and database."""

    def __init__(self, env: dict[str, str], log: Path, command: str = "worker") -> None:
        self.env = env
        self.log = log
        self.command = command
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, **extra: str) -> None:
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.importer", self.command, cwd=ROOT,
            env={**self.env, **extra}, stdout=out, stderr=out,
        )  # fmt: skip

    def alive(self) -> None:
        assert self.proc is not None
        assert self.proc.returncode is None, self.tail()

    def tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(sig)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class Tail:
    """Reads a topic from its start and keeps what arrives (no consumer group)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False
        )
        self.topic = topic
        self.records: list[Any] = []

    async def __aenter__(self) -> Tail:
        await self.consumer.start()
        parts = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(parts)
        await self.consumer.seek_to_beginning(*parts)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def until(
        self,
        done: Callable[[list[Any]], bool],
        seconds: float,
        watch: Sequence[Service] = (),
        settle: float = 0.0,
    ) -> list[Any]:
        """Read until ``done`` holds (then ``settle`` seconds more, to catch extra copies)."""
        deadline = time.monotonic() + seconds
        while not done(self.records):
            for service in watch:
                service.alive()
            if time.monotonic() > deadline:
                logs = "\n".join(s.tail() for s in watch)
                raise AssertionError(f"{self.topic}: {len(self.records)} records only\n{logs}")
            await self._poll(1000)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            await self._poll(200)
        return self.records

    async def _poll(self, timeout_ms: int) -> None:
        for batch in (await self.consumer.getmany(timeout_ms=timeout_ms)).values():
            self.records += batch


def results_by_id(records: list[Any]) -> dict[str, list[ImportResult]]:
    out: dict[str, list[ImportResult]] = {}
    for record in records:
        result = ImportResult.model_validate_json(record.value)
        out.setdefault(result.request_id, []).append(result)
    return out


def covers(ids: set[str]) -> Callable[[list[Any]], bool]:
    return lambda records: ids <= set(results_by_id(records))


def answered_twice(ids: set[str]) -> Callable[[list[Any]], bool]:
    def done(records: list[Any]) -> bool:
        got = results_by_id(records)
        return all(len(got.get(i, ())) >= 2 for i in ids)

    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def topics(kafka_settings: KafkaSettings, unique: str) -> dict[str, str]:
    names = {
        k: f"{k}.imp-{unique}" for k in ("requests", "results", "notifications", "changes", "dlq")
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names.values()])
    await admin.close()
    return names


@pytest.fixture
def env(
    stack: Any, topics: dict[str, str], unique: str, mongo_db: AsyncDatabase[Document]
) -> dict[str, str]:
    return {
        **os.environ,
        **stack.env(),
        "MARQUEE_ENV": "test",
        "MONGO_DATABASE": mongo_db.name,
        "IMPORTER_REQUESTS_TOPIC": topics["requests"],
        "IMPORTER_RESULTS_TOPIC": topics["results"],
        "IMPORTER_NOTIFICATIONS_TOPIC": topics["notifications"],
        "IMPORTER_CHANGES_TOPIC": topics["changes"],
        "IMPORTER_GROUP_ID": f"importer-{unique}",
        "IMPORTER_UPDATES_GROUP_ID": f"importer-updates-{unique}",
        "IMPORTER_HOOKS_GROUP_ID": f"importer-hooks-{unique}",
        "IMPORTER_HTTP_PORT": "0",
        "NOTIFIER_NOTIFICATIONS_TOPIC": topics["notifications"],
        "NOTIFIER_DLQ_TOPIC": topics["dlq"],
        "NOTIFIER_GROUP_ID": f"notifier-{unique}",
        "NOTIFIER_HTTP_PORT": "0",
    }


@pytest.fixture
async def services(env: dict[str, str], tmp_path: Path) -> AsyncIterator[list[Service]]:
    """Started services, stopped after the test."""
    started: list[Service] = []
    yield started
    for service in started:
        await service.stop()


async def launch(
    started: list[Service], env: dict[str, str], log: Path, command: str = "worker", **extra: str
) -> Service:
    service = Service({**env, **extra}, log, command)
    await service.start()
    started.append(service)
    return service


async def send(
    kafka: KafkaSettings, topic: str, messages: Sequence[ImportRequest | BulkImportRequest | bytes],
    partition: int | None = None,
) -> None:  # fmt: skip
    producer = make_producer(kafka)
    await producer.start()
    try:
        for message in messages:
            if isinstance(message, bytes):
                await producer.send(topic, message, key=b"garbage", partition=partition)
                continue
            key = message.key() if isinstance(message, ImportRequest) else message.request_id
            await producer.send(
                topic, message.to_json_bytes(), key=key.encode(), partition=partition,
                headers=ce_headers(message, "/tests"),
            )  # fmt: skip
        await producer.flush()
    finally:
        await producer.stop()


async def test_every_request_is_answered_and_the_organiser_notified(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings, mongo_db: AsyncDatabase[Document],
) -> None:  # fmt: skip
    cat = catalogue(3)
    now = cat.canonicals[0].start.utc
    assert now is not None
    past = external(Provider.SEATGEEK, "OLD", canonical_id="ev_old", start=now - timedelta(days=60))
    nostart = external(Provider.MEETUP, "NOW", canonical_id="ev_nostart", start=None)
    cat.add("ev_old", [past])
    cat.add("ev_nostart", [nostart])
    await seed(mongo_db, cat)
    port = free_port()
    worker = await launch(services, env, tmp_path / "worker.log", IMPORTER_HTTP_PORT=str(port))
    notifier = await launch(services, env, tmp_path / "notifier.log", "notifier")
    good = request(cat.externals[0], user="org-1")
    by_canonical = request(canonical_id="ev_000001", user="org-2")
    reqs = {
        "good": good,
        "canonical": by_canonical,
        "taken": request(canonical_id="ev_000000", user="org-3"),
        "unknown": ImportRequest(provider=Provider.EVENTBRITE, external_id="0", requested_by="u"),
        "past": request(past),
        "nostart": request(nostart),
    }
    bulk = BulkImportRequest(
        requested_by="org-4",
        items=[ImportItem(canonical_id="ev_000002"), ImportItem(canonical_id="ev_missing")],
    )
    poison = b'{"request_id": "poison-1", "requested_by": "u", "provider": "myspace"}'
    bulk_ids = {f"{bulk.request_id}.0", f"{bulk.request_id}.1"}
    wanted = {r.request_id for r in reqs.values()} | bulk_ids | {"poison-1"}
    async with Tail(kafka_settings, topics["results"]) as tail:
        await send(kafka_settings, topics["requests"], [good, by_canonical])
        # "taken" is keyed differently (another partition): send it once "good" has its answer.
        await tail.until(covers({good.request_id, by_canonical.request_id}), 60, [worker])
        rest: list[ImportRequest | BulkImportRequest | bytes] = [
            *list(reqs.values())[2:],
            bulk,
            poison,
            b"\xff",
        ]
        await send(kafka_settings, topics["requests"], rest)
        await tail.until(covers(wanted), 60, [worker])
        await send(kafka_settings, topics["requests"], [good])  # redelivered later
        records = await tail.until(lambda rs: len(results_by_id(rs)[good.request_id]) >= 2, 30)
    got = results_by_id(records)
    by = {name: got[r.request_id][0] for name, r in reqs.items()}
    assert by["good"].status is ImportStatus.IMPORTED
    assert by["canonical"].status is ImportStatus.IMPORTED
    assert got[good.request_id][0] == got[good.request_id][1]  # the redelivery: same answer
    assert by["taken"].message == ALREADY_IMPORTED
    assert by["unknown"].message == NOT_FOUND
    assert by["past"].message == START_IN_PAST
    assert by["nostart"].message == VALIDATION_ERROR
    assert by["nostart"].errors[0].field == "start"
    assert got[f"{bulk.request_id}.0"][0].status is ImportStatus.IMPORTED
    assert got[f"{bulk.request_id}.1"][0].message == NOT_FOUND
    assert got["poison-1"][0].errors[0].field == "provider"
    assert len(got) == len(wanted) + 1  # and the undecodable bytes got an answer too
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 3
    # The organisers are told, through the notifier (no webhook set: it logs them).
    async with Tail(kafka_settings, topics["notifications"]) as tail:
        notes = await tail.until(lambda rs: len(rs) >= 3, 30, [worker])
    notifications = [Notification.model_validate_json(r.value) for r in notes]
    assert sorted(n.user_id for n in notifications) == ["org-1", "org-2", "org-4"]
    assert {n.type for n in notifications} == {"event.imported"}
    deadline = time.monotonic() + 30
    while not all(n.notification_id in notifier.log.read_text() for n in notifications):
        notifier.alive()
        assert time.monotonic() < deadline, notifier.tail()
        await asyncio.sleep(0.5)
    # Metrics: imports, success ratio and rejection reasons.
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'marquee_importer_requests_total{status="imported"} 3.0' in text
    assert 'marquee_importer_rejections_total{reason="start_in_past"} 1.0' in text
    assert 'marquee_importer_rejections_total{reason="already_imported"} 1.0' in text
    assert "marquee_importer_imports_per_second" in text
    assert "marquee_importer_success_ratio" in text


async def test_two_workers_racing_for_the_same_events_make_one_each(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings, mongo_db: AsyncDatabase[Document], unique: str,
) -> None:  # fmt: skip
    """Two organisers import the same 30 events at once; two workers in *different* groups
    both handle every request (as a zombie consumer would during a rebalance)."""
    cat = catalogue(30)
    await seed(mongo_db, cat)
    tm = [e for e in cat.externals if e.source is Provider.TICKETMASTER]
    mine = [request(e, user="org-a") for e in tm]
    theirs = [request(canonical_id=str(e.canonical_id), user="org-b") for e in tm]
    off = {"IMPORTER_UPDATES_ENABLED": "false", "IMPORTER_BATCH_SIZE": "5"}
    workers = [
        await launch(
            services, env, tmp_path / f"w{i}.log", IMPORTER_GROUP_ID=f"race{i}-{unique}", **off
        )
        for i in range(2)
    ]
    await asyncio.gather(
        send(kafka_settings, topics["requests"], mine, partition=0),
        send(kafka_settings, topics["requests"], theirs, partition=1),
    )
    wanted = {r.request_id for r in [*mine, *theirs]}
    async with Tail(kafka_settings, topics["results"]) as tail:
        # Each worker answers every request: wait for both copies of each. A worker may
        # answer a request twice (redelivery after a rebalance), so counting records is not
        # enough.
        records = await tail.until(answered_twice(wanted), 120, workers)
    got = results_by_id(records)
    assert set(got) == wanted
    for copies in got.values():
        assert all(c == copies[0] for c in copies), copies  # one decision per request
    for a, b in zip(mine, theirs, strict=True):
        pair = sorted(got[r.request_id][0].status.value for r in (a, b))
        assert pair == ["imported", "rejected"]
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 30
    assert await mongo_db[IMPORTS].count_documents({}) == 30


async def test_kill_9_mid_batch_then_restart_loses_and_doubles_nothing(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings, mongo_db: AsyncDatabase[Document],
) -> None:  # fmt: skip
    cat = catalogue(1500)
    await seed(mongo_db, cat)
    reqs = [request(e, user=f"org-{i % 7}") for i, e in enumerate(cat.externals[:1500])]
    worker = await launch(services, env, tmp_path / "worker.log", IMPORTER_BATCH_SIZE="100")
    await send(kafka_settings, topics["requests"], reqs)
    deadline = time.monotonic() + 120
    while await mongo_db[LOCAL_EVENTS].count_documents({}) < 200:
        worker.alive()
        assert time.monotonic() < deadline, worker.tail()
        await asyncio.sleep(0.2)
    await worker.stop(signal.SIGKILL)
    partial = await mongo_db[LOCAL_EVENTS].count_documents({})
    assert partial < 1000, "the worker finished before it could be killed"
    await worker.start()
    wanted = {r.request_id for r in reqs}
    async with Tail(kafka_settings, topics["results"]) as tail:
        records = await tail.until(covers(wanted), 300, [worker])
    got = results_by_id(records)
    # Two organisers' records of one performance: one imported, the other refused.
    expected = {cat.canonicals[i].id for i in range(len(cat.canonicals))}
    claims = await mongo_db[IMPORTS].find({}, ["local_event_id"]).to_list()
    locals_ = await mongo_db[LOCAL_EVENTS].find({}, ["claim_id"]).to_list()
    imported = {r.request_id for r in reqs if got[r.request_id][0].status is ImportStatus.IMPORTED}
    assert len(claims) == len(locals_) == len(imported)
    assert {c["_id"] for c in claims} <= expected
    assert {d["_id"] for d in locals_} == {local_event_id(c["_id"]) for c in claims}
    for request_id, copies in got.items():
        assert all(c == copies[0] for c in copies), request_id
        assert copies[0].status is ImportStatus.IMPORTED or copies[0].message == ALREADY_IMPORTED
    # Every canonical event among the first 1,500 records was imported exactly once.
    named = {str(e.canonical_id) for e in cat.externals[:1500]}
    assert {c["_id"] for c in claims} == named


@pytest.mark.parametrize("point", ["after-local-events", "after-results"])
async def test_crash_between_local_event_and_result_is_emitted_on_restart(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings, mongo_db: AsyncDatabase[Document], point: str,
) -> None:  # fmt: skip
    cat = catalogue(5)
    await seed(mongo_db, cat)
    reqs = [request(canonical_id=c.id) for c in cat.canonicals]
    worker = await launch(services, env, tmp_path / "worker.log", IMPORTER_FAILPOINT=point)
    await send(kafka_settings, topics["requests"], reqs)
    assert worker.proc is not None
    assert await asyncio.wait_for(worker.proc.wait(), 60) == 137, worker.tail()
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 5
    async with Tail(kafka_settings, topics["results"]) as tail:
        assert await tail.until(lambda rs: True, 1, settle=2) == []  # nothing emitted yet
    restarted = await launch(services, env, tmp_path / "worker2.log")
    wanted = {r.request_id for r in reqs}
    async with Tail(kafka_settings, topics["results"]) as tail:
        records = await tail.until(covers(wanted), 60, [restarted], settle=2)
    got = results_by_id(records)
    assert all(got[r.request_id][0].status is ImportStatus.IMPORTED for r in reqs)
    assert all(
        got[r.request_id][0].local_event_id == local_event_id(r.canonical_id or "") for r in reqs
    )
    assert await mongo_db[LOCAL_EVENTS].count_documents({}) == 5
    async with Tail(kafka_settings, topics["notifications"]) as tail:
        notes = await tail.until(lambda rs: len(rs) >= 5, 30, [restarted], settle=1)
    assert len({Notification.model_validate_json(n.value).notification_id for n in notes}) == 5


async def test_bulk_import_of_1000_events(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings, mongo_db: AsyncDatabase[Document],
) -> None:  # fmt: skip
    cat = catalogue(1000)
    await seed(mongo_db, cat)
    worker = await launch(services, env, tmp_path / "worker.log")
    bulk = BulkImportRequest(
        requested_by="org-bulk",
        items=[ImportItem(canonical_id=c.id) for c in cat.canonicals],
    )
    started = time.monotonic()
    await send(kafka_settings, topics["requests"], [bulk])
    wanted = {r.request_id for r in bulk.expand()}
    async with Tail(kafka_settings, topics["results"]) as tail:
        records = await tail.until(covers(wanted), 300, [worker])
    seconds = time.monotonic() - started
    got = results_by_id(records)
    assert all(got[i][0].status is ImportStatus.IMPORTED for i in wanted)
    assert await mongo_db[LOCAL_EVENTS].count_documents({"created_by": "org-bulk"}) == 1000
    print(f"bulk import of 1,000 events: {seconds:.1f} s ({1000 / seconds:.0f} imports/s)")


async def test_canonical_time_change_and_cancellation_reach_the_local_event(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings, mongo_db: AsyncDatabase[Document],
) -> None:  # fmt: skip
    cat = catalogue(2)
    await seed(mongo_db, cat)
    worker = await launch(services, env, tmp_path / "worker.log")
    req = request(canonical_id="ev_000000", user="org-u")
    await send(kafka_settings, topics["requests"], [req])
    async with Tail(kafka_settings, topics["results"]) as tail:
        await tail.until(covers({req.request_id}), 60, [worker])
    base = cat.canonicals[0]
    assert base.start.utc is not None
    later = base.start.utc + timedelta(hours=3)
    moved = base.model_copy(update={"start": when(later, "Europe/London"), "version": 2})
    off = moved.model_copy(update={"status": EventStatus.CANCELLED, "version": 3})
    changes = [
        CanonicalChange(op=ChangeOp.UPDATED, canonical_id=base.id, version=2, event=moved),
        CanonicalChange(op=ChangeOp.CANCELLED, canonical_id=base.id, version=3, event=off),
    ]
    producer = make_producer(kafka_settings)
    await producer.start()
    for change in changes:  # one at a time, as the normalizer would publish them
        await producer.send_and_wait(
            topics["changes"], change.to_json_bytes(), key=base.id.encode()
        )
        await asyncio.sleep(3)
    await producer.stop()
    async with Tail(kafka_settings, topics["notifications"]) as tail:
        notes = await tail.until(lambda rs: len(rs) >= 3, 60, [worker], settle=1)
    got = [Notification.model_validate_json(n.value) for n in notes]
    assert [n.type for n in got] == ["event.imported", "event.updated", "event.cancelled"]
    assert all(n.user_id == "org-u" for n in got)
    assert got[1].payload["changes"]["start"]["new"] == later.isoformat()
    doc = await mongo_db[LOCAL_EVENTS].find_one({"_id": local_event_id("ev_000000")})
    assert doc is not None
    assert doc["start"] == later
    assert doc["status"] == EventStatus.CANCELLED.value


class Hook:
    """A webhook on 127.0.0.1 that can be down, then up; records what it receives."""

    def __init__(self, port: int, answer: Callable[[Notification], int] = lambda _n: 200) -> None:
        self.port = port
        self.answer = answer
        self.received: list[tuple[str, Notification]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, req: web.Request) -> web.Response:
        note = Notification.model_validate_json(await req.read())
        self.received.append((req.headers["Idempotency-Key"], note))
        return web.Response(status=self.answer(note))

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def note(user: str, n: int) -> Notification:
    return Notification(user_id=user, type="event.imported", payload={"n": n})


async def publish_notes(kafka: KafkaSettings, topic: str, notes: Sequence[Notification]) -> None:
    producer = make_producer(kafka)
    await producer.start()
    for item in notes:
        await producer.send(topic, item.to_json_bytes(), key=item.user_id.encode())
    await producer.flush()
    await producer.stop()


async def test_webhook_down_then_up_delivers_each_notification_once(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings,
) -> None:  # fmt: skip
    port = free_port()
    hook = Hook(port)
    notifier = await launch(
        services, env, tmp_path / "notifier.log", "notifier",
        NOTIFIER_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook", NOTIFIER_MAX_ATTEMPTS="100",
        NOTIFIER_BACKOFF_INITIAL_S="0.2", NOTIFIER_BACKOFF_MAX_S="1.0",
    )  # fmt: skip
    notes = [note(f"user-{i}", i) for i in range(3)]
    await publish_notes(kafka_settings, topics["notifications"], [*notes, notes[0]])
    await asyncio.sleep(6)  # the webhook is down: connection refused, again and again
    assert "attempt" in notifier.log.read_text()
    await hook.up()
    try:
        deadline = time.monotonic() + 30
        while len(hook.received) < 3:
            notifier.alive()
            assert time.monotonic() < deadline, notifier.tail()
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # any extra copy would arrive now
        keys = [k for k, _n in hook.received]
        assert sorted(keys) == sorted(n.notification_id for n in notes)  # each exactly once
        # Sent again later (a re-emitted copy): remembered as delivered, not sent again.
        await publish_notes(kafka_settings, topics["notifications"], notes[:1])
        await asyncio.sleep(4)
        assert len(hook.received) == 3
        async with Tail(kafka_settings, topics["dlq"]) as tail:
            assert await tail.until(lambda rs: True, 1, settle=1) == []
    finally:
        await hook.down()


async def test_notifications_the_webhook_keeps_refusing_are_dead_lettered(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings,
) -> None:  # fmt: skip
    port = free_port()
    hook = Hook(port, lambda n: {"doomed": 500, "gone": 404}.get(n.user_id, 200))
    await hook.up()
    try:
        notifier = await launch(
            services, env, tmp_path / "notifier.log", "notifier",
            NOTIFIER_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook", NOTIFIER_MAX_ATTEMPTS="3",
            NOTIFIER_BACKOFF_INITIAL_S="0.1", NOTIFIER_BACKOFF_MAX_S="0.5",
        )  # fmt: skip
        notes = [note("doomed", 1), note("gone", 2), note("fine", 3)]
        await publish_notes(kafka_settings, topics["notifications"], notes)
        async with Tail(kafka_settings, topics["dlq"]) as tail:
            dead = await tail.until(lambda rs: len(rs) >= 2, 60, [notifier], settle=1)
        assert len(dead) == 2
        by_user = {Notification.model_validate_json(r.value).user_id: dict(r.headers) for r in dead}
        assert by_user["doomed"]["dlq_attempt"] == b"3"
        assert by_user["doomed"]["dlq_error_message"].startswith(b"HTTP 500")
        assert by_user["gone"]["dlq_attempt"] == b"1"  # a 404 is not retried
        assert [n.user_id for _k, n in hook.received].count("doomed") == 3
        assert [n.user_id for _k, n in hook.received].count("fine") == 1
        # The webhook is fixed: replaying the DLQ delivers both, and "fine" is not sent again.
        hook.answer = lambda _n: 200
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.importer", "notifier-replay-dlq", cwd=ROOT,
            env=notifier.env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await replay.communicate()
        assert replay.returncode == 0
        assert b"replayed 2 dead-lettered notifications" in out
        deadline = time.monotonic() + 30
        while len(hook.received) < 3 + 1 + 2:
            notifier.alive()
            assert time.monotonic() < deadline, notifier.tail()
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        users = [n.user_id for _k, n in hook.received]
        assert (users.count("doomed"), users.count("gone"), users.count("fine")) == (4, 2, 1)
    finally:
        await hook.down()


class Receiver:
    """A subscriber's webhook on 127.0.0.1: /ok answers 200, /flaky 500 twice per notification
    then 200, /bad 400; it keeps (path, headers, body) of every POST."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, req: web.Request) -> web.Response:
        body = await req.read()
        self.received.append((req.path, dict(req.headers), body))
        if req.path == "/bad":
            return web.Response(status=400, text="no thanks")
        if req.path == "/flaky":
            tries = [h for p, h, _b in self.received if p == "/flaky"]
            key = req.headers["Idempotency-Key"]
            if sum(1 for h in tries if h["Idempotency-Key"] == key) <= 2:
                return web.Response(status=500)
        return web.Response(status=200)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for p, h, b in self.received if p == path]

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_webhook_subscriptions_get_exactly_their_changes_once_signed(
    env: dict[str, str], services: list[Service], topics: dict[str, str], tmp_path: Path,
    kafka_settings: KafkaSettings, mongo_db: AsyncDatabase[Document],
) -> None:  # fmt: skip
    """Subscriptions registered through the API; canonical changes (matching and not) on the
    test's events.canonical; the worker matches, the notifier delivers: each subscriber gets
    exactly its changes, once, signed with its own secret; 500s are retried, a 400 is
    dead-lettered with the reason, a redelivered change is not sent twice, and a notification
    for a deleted subscription is dropped."""
    from tests.integration.test_api_http import auth, client_of, services_over
    from tests.unit.test_webhooks import CHICAGO, MILWAUKEE, change

    receiver = Receiver(free_port())
    await receiver.up()
    secrets = {p: f"secret-for-{p.strip('/')}-0123456789" for p in ("/ok", "/flaky", "/bad")}
    wanted = {
        "/ok": {"category": "music", "types": ["created", "updated"],
                "near": {"lat": CHICAGO[0], "lon": CHICAGO[1], "radius_km": 50}},
        "/flaky": {"source": "seatgeek"},
        "/bad": {"category": "comedy"},
    }  # fmt: skip
    api_services, _fake = services_over(mongo_db)
    ids: dict[str, str] = {}
    async with client_of(api_services) as http:
        for path, filters in wanted.items():
            body = {"url": receiver.url(path), "secret": secrets[path], "filters": filters}
            made = await http.post("/webhooks", json=body, headers=auth("organizer", "sub-1"))
            assert made.status_code == 201, made.text
            ids[path] = made.json()["id"]
        gone = await http.post(
            "/webhooks",
            json={"url": receiver.url("/ok"), "secret": "x" * 16},
            headers=auth("organizer", "sub-2"),
        )
        assert (
            await http.delete(f"/webhooks/{gone.json()['id']}", headers=auth("admin"))
        ).status_code == 204
    try:
        worker = await launch(services, env, tmp_path / "worker.log", IMPORTER_HOOKS_REFRESH_S="1")
        notifier = await launch(
            services, env, tmp_path / "notifier.log", "notifier",
            NOTIFIER_MAX_ATTEMPTS="4", NOTIFIER_BACKOFF_INITIAL_S="0.1",
            NOTIFIER_BACKOFF_MAX_S="0.5",
        )  # fmt: skip
        now = utc_now()
        changes = {
            # music in Chicago, created: /ok only
            "c1": change("c1", op=ChangeOp.CREATED, version=1, changed_at=now),
            # music far away, on SeatGeek too: /flaky only (outside /ok's radius)
            "c2": change("c2", at=MILWAUKEE, changed_at=now,
                         sources=(Provider.TICKETMASTER, Provider.SEATGEEK)),
            # sports in Chicago: nobody
            "c3": change("c3", category="sports", sub="golf", changed_at=now),
            # comedy, cancelled: /bad only
            "c4": change("c4", op=ChangeOp.CANCELLED, category="comedy", sub=None, changed_at=now),
            # music in Chicago but cancelled: /ok does not ask for cancellations
            "c5": change("c5", op=ChangeOp.CANCELLED, changed_at=now),
        }  # fmt: skip
        producer = make_producer(kafka_settings)
        await producer.start()
        try:
            for item in changes.values():
                await producer.send_and_wait(
                    topics["changes"], item.to_json_bytes(), key=item.canonical_id.encode()
                )
            deadline = time.monotonic() + 60
            while not (
                receiver.at("/ok") and len(receiver.at("/flaky")) >= 3 and receiver.at("/bad")
            ):
                worker.alive()
                notifier.alive()
                assert time.monotonic() < deadline, worker.tail() + notifier.tail()
                await asyncio.sleep(0.2)
            async with Tail(kafka_settings, topics["dlq"]) as tail:
                dead = await tail.until(lambda rs: len(rs) >= 1, 30, [notifier], settle=1)
            # The delivered changes again (a redelivery): nothing more reaches anyone. (A
            # dead-lettered notification is not remembered as delivered: a copy is tried again.)
            for key in ("c1", "c2"):
                await producer.send_and_wait(
                    topics["changes"], changes[key].to_json_bytes(), key=key.encode()
                )
        finally:
            await producer.stop()
        # A notification for the deleted subscription (matched just before its deletion).
        stale = Notification(
            user_id="sub-2", type="canonical.changed",
            payload={"subscription_id": gone.json()["id"], "change": {}},
        )  # fmt: skip
        await publish_notes(kafka_settings, topics["notifications"], [stale])
        deadline = time.monotonic() + 30
        while stale.notification_id not in notifier.log.read_text():
            assert time.monotonic() < deadline, notifier.tail()
            await asyncio.sleep(0.3)
        await asyncio.sleep(4)  # any extra copy would arrive now
    finally:
        await receiver.down()

    def delivered(path: str) -> list[CanonicalChange]:
        out = []
        for headers, body in receiver.at(path):
            digest = hmac.new(secrets[path].encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Marquee-Signature"] == f"sha256={digest}"
            note = Notification.model_validate_json(body)
            assert headers["Idempotency-Key"] == note.notification_id
            assert headers["ce_type"] == Notification.type_name()
            assert note.type == "canonical.changed"
            assert note.user_id == "sub-1"
            assert note.payload["subscription_id"] == ids[path]
            assert secrets[path] not in body.decode()
            out.append(CanonicalChange.model_validate(note.payload["change"]))
        return out

    assert [c.canonical_id for c in delivered("/ok")] == ["c1"]
    flaky = delivered("/flaky")
    assert [c.canonical_id for c in flaky] == ["c2", "c2", "c2"]  # 500, 500, then 200
    assert len({h["Idempotency-Key"] for h, _b in receiver.at("/flaky")}) == 1
    assert [c.canonical_id for c in delivered("/bad")] == ["c4"]  # a 400 is not retried
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["dlq_error_message"].startswith(b"HTTP 400")
    assert headers["dlq_attempt"] == b"1"
    assert Notification.model_validate_json(dead[0].value).payload["subscription_id"] == ids["/bad"]
    log_text = notifier.log.read_text()
    assert "is deleted or inactive" in log_text
    assert all(s not in log_text for s in secrets.values())
    assert all(s not in worker.log.read_text() for s in secrets.values())
