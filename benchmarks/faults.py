"""Fault suite: kill, restart and freeze each part of a private pipeline, then check invariants.

While the pipeline syncs, normalizes, imports and notifies, each fault is injected in turn
(``--runs`` times): ``kill -9`` of the normalizer, importer worker, notifier, API and ingestor
(each started again, as an orchestrator would), a Kafka restart, the MongoDB-wire store
killed (kill -9) mid-batch, frozen (SIGSTOP) and stopped for 20 s, and a failing sandbox (5xx,
timeouts, broken bodies, throttling). After every fault the pipeline must converge, and then:

- every record the ingestor published is in ``external_events`` with its newest content;
- every record the sandbox lists in the synced horizon (Ticketmaster, SeatGeek, Eventbrite)
  was published;
- no two live canonical events share a source, and every record's event lists it;
- every import request has one decision, no event is imported twice, one local event per claim;
- every notification reached the webhook;
- per key, versions on ``events.canonical`` never go backwards;
- the DLQ holds exactly the poison records this suite injected; the API serves every event at
  its stored version.

``python benchmarks/faults.py [--runs 3] [--events 300] [--faults normalizer,kafka,...]``
prints a table of faults x outcomes and exits 1 when any invariant failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.system import (
    EVENT_PROVIDERS,
    REPLIES,
    Options,
    Pipeline,
    Tail,
    end_offsets,
    poll_until,
    read_topic,
    run_stoppable,
    say,
)
from services.importer.ids import local_event_id
from services.importer.store import IMPORTS, LOCAL_EVENTS, NOTIFICATION_DELIVERIES
from shared.contracts import ImportRequest, ImportResult, ImportStatus, IngestJob, IngestReply
from shared.mongo import EVENTS, EXTERNAL_EVENTS

FAULTS = (
    "normalizer",
    "importer",
    "notifier",
    "api",
    "ingestor",
    "kafka",
    "store-kill",
    "store-freeze",
    "store-stop",
    "sandbox",
)
TRUTH_PROVIDERS = ("ticketmaster", "seatgeek", "eventbrite")  # Meetup keys are tokens, not ids
STORE_DOWN_S = 20.0


@dataclass
class Outcome:
    """One fault, once: whether it hit work in flight, recovery, and each invariant's count."""

    fault: str
    run: int
    hit: bool = False
    recovered: bool = False
    recovery_s: float = 0.0
    lost: int = 0  # published or listed records missing, or stored with older content
    duplicates: int = 0  # canonical events sharing a source, double imports, extra local events
    versions_back: int = 0
    dlq_unexpected: int = 0  # a DLQ entry that is not an injected poison record, or one missing
    api_stale: int = 0
    unanswered: int = 0  # import requests without a result, notifications never delivered
    crashes: int = 0  # exits the services made on their own (restarted by the supervisor)
    jobs_failed: int = 0  # sync jobs answered failed or stopped (synced again, then checked)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.recovered and not (
            self.lost
            or self.duplicates
            or self.versions_back
            or self.dlq_unexpected
            or self.api_stale
            or self.unanswered
        )


@dataclass
class SuiteOptions:
    runs: int = 1
    events: int = 300
    faults: Sequence[str] = FAULTS
    imports_per_round: int = 30
    advance_hours: float = 24.0  # the world's clock per round: edits, reschedules, new events
    horizon_days: int = 120  # what each sync covers (the world spans 180 days ahead)
    converge_timeout_s: float = 300.0
    workdir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # for every service


class Suite:
    def __init__(self, pipeline: Pipeline, options: SuiteOptions) -> None:
        self.p = pipeline
        self.options = options
        self.jobs: list[IngestJob] = []
        self.requests: dict[str, ImportRequest] = {}
        self.poison: set[str] = set()
        self.replies = Tail(pipeline.kafka, REPLIES)
        self.results = Tail(pipeline.kafka, "import.results")
        self.round_no = 0
        self.fault_at = 0.0  # when the round's fault struck (monotonic)
        self.reported: dict[str, set[str]] = {}  # violations already counted, by kind
        # (provider, category) pairs no configured query lists: found by the first sync.
        self.uncovered: set[tuple[str, str]] | None = None

    # ------------------------------------------------------------------ the rounds

    async def start(self) -> None:
        await self.replies.start(from_beginning=True)
        await self.results.start(from_beginning=True)
        say("first sync of the world")
        first = Outcome("(first sync)", 0)
        await self.work(first, imports=False)
        if not first.ok:
            raise RuntimeError(f"the pipeline did not converge without faults: {first}")
        say(f"first sync converged in {first.recovery_s:.0f}s")

    async def stop(self) -> None:
        await self.replies.stop()
        await self.results.stop()

    async def round(self, fault: str, run: int) -> Outcome:
        outcome = Outcome(fault, run)
        crashes = self.crashes()
        await self.work(outcome, imports=True, inject=FAULT_ACTIONS[fault])
        outcome.crashes = self.crashes() - crashes
        return outcome

    def crashes(self) -> int:
        return sum(p.crashes for p in self.p.procs.values())

    async def work(
        self,
        outcome: Outcome,
        *,
        imports: bool,
        inject: Callable[[Suite, Marks], Awaitable[bool]] | None = None,
    ) -> None:
        """One round: the world changes, a sync, imports, a poison record, the fault, checks."""
        self.round_no += 1
        await self.p.sandbox("POST", f"clock/advance?hours={self.options.advance_hours}")
        marks = await Marks.take(self)
        if outcome.fault == "sandbox":
            await break_sandbox(self.p)
        jobs = await self.p.send_jobs()
        self.jobs += jobs
        key = f"poison:{self.round_no}"
        self.poison.add(key)
        await self.p.send("raw.events", [(key.encode(), b'{"provider": "myspace", "payload": 1')])
        sent = await self.send_imports() if imports else 0
        marks.imports = sent
        self.fault_at = time.monotonic()
        if inject is not None:
            outcome.hit = await inject(self, marks)
        outcome.recovered = await self.converge({j.job_id for j in jobs}, outcome)
        if outcome.fault == "sandbox":
            stats = await self.p.sandbox("GET", "stats")
            outcome.hit = stats["faults_injected_total"] > 0 or stats["throttled_total"] > 0
            outcome.notes.append(
                f"{stats['faults_injected_total']} faults served, "
                f"{stats['throttled_total']} throttled"
            )
            await self.p.sandbox("POST", "reset")
        answered = self.answered_jobs()
        failed = [j for j in jobs if j.job_id in answered and answered[j.job_id].status != "done"]
        if failed:
            # What the next scheduled sync does: that provider's sync runs again.
            outcome.jobs_failed += len(failed)
            for job in failed:
                reply = answered[job.job_id]
                outcome.notes.append(
                    f"{job.provider.value} job {reply.status.value}: {(reply.message or '')[:90]}"
                )
            again = await self.p.send_jobs(providers=[j.provider for j in failed])
            self.jobs += again
            retried = await self.converge({j.job_id for j in again}, outcome)
            outcome.recovered = outcome.recovered and retried
        # From the fault to a pipeline that has caught up with everything sent before it.
        outcome.recovery_s = time.monotonic() - self.fault_at
        await self.check(outcome)

    async def send_imports(self) -> int:
        """Import requests for events not asked for yet, and a rival request for one that was."""
        async with self.p.db() as db:
            docs = await db[EVENTS].find({}, {"duplicate_of": 1}).to_list()
        asked = {r.canonical_id for r in self.requests.values()}
        fresh = sorted(
            d["_id"] for d in docs if not d.get("duplicate_of") and d["_id"] not in asked
        )
        batch = [
            ImportRequest(canonical_id=cid, requested_by=f"org-{self.round_no % 5}")
            for cid in fresh[: self.options.imports_per_round]
        ]
        if asked:
            rival = sorted(c for c in asked if c)[self.round_no % len(asked)]
            batch.append(ImportRequest(canonical_id=rival, requested_by="org-rival"))
        for request in batch:
            self.requests[request.request_id] = request
        await self.p.send("import.requests", [(r.key().encode(), r) for r in batch])
        return len(batch)

    async def converge(self, jobs: set[str], outcome: Outcome) -> bool:
        """Until every job is answered and every consumer group has caught up (or time out)."""
        deadline = time.monotonic() + self.options.converge_timeout_s
        waiting = "jobs"
        while time.monotonic() < deadline:
            answered = self.answered_jobs()
            if not jobs <= set(answered):
                waiting = f"{len(jobs - set(answered))} sync jobs"
                await asyncio.sleep(1)
                continue
            results = {r.request_id for r in self.import_results()}
            missing = set(self.requests) - results
            if missing:
                waiting = f"{len(missing)} import results"
                await asyncio.sleep(1)
                continue
            try:
                lags = {
                    name: await self.p.group_lag(name)
                    for name in ("normalizer", "importer", "importer-updates", "notifier")
                }
            except Exception as err:  # noqa: BLE001 - the broker may still be coming back
                waiting = f"broker ({type(err).__name__})"
                await asyncio.sleep(1)
                continue
            behind = {k: v for k, v in lags.items() if v}
            if behind:
                waiting = f"lag {behind}"
                await asyncio.sleep(1)
                continue
            stale = await self.api_stale()
            if stale:
                waiting = f"API: {stale} events or records behind the store"
                await asyncio.sleep(1)
                continue
            return True
        outcome.notes.append(
            f"not converged after {self.options.converge_timeout_s:.0f}s: {waiting}"
        )
        return False

    def answered_jobs(self) -> dict[str, IngestReply]:
        out = {}
        for _at, record in self.replies.seen:
            reply = IngestReply.model_validate_json(record.value or b"")
            out[reply.job_id] = reply
        return out

    def import_results(self) -> list[ImportResult]:
        return [ImportResult.model_validate_json(r.value or b"") for _at, r in self.results.seen]

    async def api_stale(self) -> int:
        """Canonical events and per-source records the API serves otherwise than the store
        holds them (another version, or a per-source record under another event)."""
        async with self.p.db() as db:
            events = await db[EVENTS].find({}, {"version": 1}).to_list()
            records = (
                await db[EXTERNAL_EVENTS].find({}, {"version": 1, "canonical_id": 1}).to_list()
            )
        wanted = {f"/events/{d['_id']}": (d["version"], None) for d in events}
        for d in records:
            source, external_id = str(d["_id"]).split(":", 1)
            wanted[f"/external-events/{source}/{external_id}"] = (
                d["version"],
                d.get("canonical_id"),
            )
        headers = {"Authorization": f"Bearer {self.p.token()}"}
        stale = 0
        try:
            async with httpx.AsyncClient(timeout=10, headers=headers) as client:
                for path, (version, canonical_id) in wanted.items():
                    response = await client.get(self.p.api_url(path))
                    body = response.json() if response.status_code == 200 else {}
                    if body.get("version") != version or (
                        canonical_id is not None and body.get("canonical_id") != canonical_id
                    ):
                        stale += 1
        except httpx.HTTPError:
            return len(wanted) or 1
        return stale

    # ------------------------------------------------------------------ invariants

    def new(self, kind: str, items: Iterable[str]) -> list[str]:
        """The violations of ``kind`` not reported by an earlier round (each counts once)."""
        seen = self.reported.setdefault(kind, set())
        fresh = sorted(set(items) - seen)
        seen.update(fresh)
        return fresh

    async def check(self, outcome: Outcome) -> None:
        """Every invariant over everything so far; violations count in the round they appear."""
        kafka = self.p.kafka
        newest, listed = await self.published()
        async with self.p.db() as db:
            externals = {
                d["_id"]: d
                for d in await db[EXTERNAL_EVENTS]
                .find({}, {"content_hash": 1, "canonical_id": 1})
                .to_list()
            }
            events = await db[EVENTS].find({}, {"sources": 1, "duplicate_of": 1}).to_list()
            claims = await db[IMPORTS].find({}).to_list()
            locals_ = await db[LOCAL_EVENTS].find({}, {"claim_id": 1}).to_list()
            deliveries = {d["_id"] for d in await db[NOTIFICATION_DELIVERIES].find({}).to_list()}
        # Every published record is stored, with the content of its newest fetch; every
        # record the sandbox lists (where a configured query reaches it) was published.
        missing = self.new("missing", (k for k in listed if k not in externals))
        older = self.new(
            "older",
            (
                k
                for k, (_at, digest, tomb) in newest.items()
                if k in externals and not tomb and externals[k].get("content_hash") != digest
            ),
        )
        unlisted = await self.unpublished(listed)
        if self.uncovered is None:
            # The fault-free first sync defines what the configured queries reach at all.
            self.uncovered = {(provider, category) for _key, provider, category in unlisted}
        never = self.new("unpublished", (k for k, p, c in unlisted if (p, c) not in self.uncovered))
        # One live canonical event per source; each record's event (after merges) lists it.
        owners: Counter[str] = Counter()
        members: dict[str, set[str]] = {}
        by_id = {e["_id"]: e for e in events}
        for event in events:
            keys = {f"{s['source']}:{s['external_id']}" for s in event.get("sources", [])}
            if not event.get("duplicate_of"):
                owners.update(keys)
            members[event["_id"]] = keys
        shared = self.new("shared", (k for k, n in owners.items() if n > 1))
        adrift_keys = []
        for key, doc in externals.items():
            cid = doc.get("canonical_id")
            for _ in range(5):  # a merged event names its survivor
                if cid in by_id and by_id[cid].get("duplicate_of"):
                    cid = by_id[cid]["duplicate_of"]
            if cid not in members or key not in members[cid]:
                adrift_keys.append(key)
        adrift = self.new("adrift", adrift_keys)
        outcome.lost += len(missing) + len(older) + len(never) + len(adrift)
        outcome.duplicates += len(shared)
        if missing or older or never or adrift:
            outcome.notes.append(
                f"records: {len(missing)} published but not stored, {len(older)} stored older "
                f"than published, {len(never)} listed but never published, {len(adrift)} not "
                f"in their canonical event: {[*missing, *older, *never, *adrift][:3]}"
            )
        if shared:
            outcome.notes.append(f"{len(shared)} sources in two live events: {shared[:3]}")
        # Imports: one decision per request (copies identical), one import per event, one
        # local event per claim, with the claim's id.
        decided: dict[str, list[ImportResult]] = {}
        for result in self.import_results():
            decided.setdefault(result.request_id, []).append(result)
        disagreeing = self.new(
            "disagreeing",
            (rid for rid, copies in decided.items() if any(c != copies[0] for c in copies[1:])),
        )
        imported: Counter[str] = Counter()
        for request_id, copies in decided.items():
            request = self.requests.get(request_id)
            if request is not None and copies[0].status is ImportStatus.IMPORTED:
                imported[request.canonical_id or ""] += 1
        twice = self.new("imported twice", (c for c, n in imported.items() if n > 1))
        claimed = {c["local_event_id"] for c in claims if c.get("local_event_id")}
        own = {local_event_id(c["_id"]) for c in claims if not c.get("alias_of")}
        strays = self.new(
            "stray local events", (d["_id"] for d in locals_ if d["_id"] not in claimed & own)
        )
        outcome.duplicates += len(disagreeing) + len(twice) + len(strays)
        if disagreeing or twice or strays:
            outcome.notes.append(
                f"imports: {len(disagreeing)} requests decided twice differently, {len(twice)} "
                f"events imported twice, {len(strays)} local events without their own claim"
            )
        unanswered = self.new("unanswered", set(self.requests) - set(decided))
        # Notifications: each reached the webhook (copies are allowed: Idempotency-Key).
        ids = {
            orjson.loads(n.value or b"{}")["notification_id"]
            for n in await read_topic(kafka, "notifications")
        }
        received = Counter(self.p.webhook.received)
        undelivered = self.new("undelivered", ids - set(received))
        unrecorded = self.new("unrecorded", ids - deliveries)
        repeated = self.new(
            "repeated", (f"{i}#{n}" for i, count in received.items() for n in range(2, count + 1))
        )
        outcome.unanswered += len(unanswered) + len(undelivered) + len(unrecorded)
        if unanswered or undelivered or unrecorded:
            outcome.notes.append(
                f"{len(unanswered)} import requests unanswered, {len(undelivered)} notifications "
                f"never delivered, {len(unrecorded)} deliveries not recorded"
            )
        if repeated:
            outcome.notes.append(f"webhook got {len(repeated)} repeated deliveries (allowed)")
        # Versions per key on events.canonical, in offset order (a key has one partition).
        last: dict[str, int] = {}
        back = []
        for record in await read_topic(kafka, "events.canonical"):
            version = int(orjson.loads(record.value or b"{}")["version"])
            key = (record.key or b"").decode()
            if version < last.get(key, 0):
                back.append(f"{key}@{record.partition}:{record.offset}")
            last[key] = max(version, last.get(key, 0))
        backwards = self.new("versions back", back)
        outcome.versions_back += len(backwards)
        if backwards:
            outcome.notes.append(f"versions went back: {backwards[:3]}")
        # The DLQs: exactly the injected poison records (each at least once), nothing else.
        dead = {(r.key or b"").decode() for r in await read_topic(kafka, "raw.events.dlq")}
        dead_notes = [
            f"{r.partition}:{r.offset}" for r in await read_topic(kafka, "notifications.dlq")
        ]
        unexpected = self.new("dlq unexpected", dead - self.poison)
        absent = self.new("poison missing", self.poison - dead)
        notes_dead = self.new("notifications dlq", dead_notes)
        outcome.dlq_unexpected += len(unexpected) + len(absent) + len(notes_dead)
        if unexpected or absent or notes_dead:
            outcome.notes.append(
                f"DLQ: {unexpected[:3]} unexpected, {absent[:3]} poison not there, "
                f"{len(notes_dead)} notifications"
            )
        # A point-in-time measure, not a history: the API serves every event as stored.
        outcome.api_stale = await self.api_stale()

    async def published(self) -> tuple[dict[str, tuple[datetime, str, bool]], set[str]]:
        """Per key on raw.events: the newest fetch (time, hash, tombstone), and the keys with
        at least one real (not tombstone) record."""
        newest: dict[str, tuple[datetime, str, bool]] = {}
        listed: set[str] = set()
        for record in await read_topic(self.p.kafka, "raw.events"):
            key = (record.key or b"").decode()
            if key.startswith("poison:"):
                continue
            value = orjson.loads(record.value or b"{}")
            if value.get("entity", "event") != "event" or value.get("provider") == "spotify":
                continue
            fetched = datetime.fromisoformat(str(value["fetched_at"]).replace("Z", "+00:00"))
            tombstone = bool(value.get("tombstone"))
            if not tombstone:
                listed.add(key)
            seen = newest.get(key)
            # The normalizer keeps the newest fetch of a key (offset order breaks ties).
            if seen is None or fetched >= seen[0]:
                newest[key] = (fetched, str(value.get("payload_hash")), tombstone)
        return newest, listed

    async def unpublished(self, published: set[str]) -> list[tuple[str, str, str]]:
        """(key, provider, category) of records the sandbox lists in the synced horizon that
        were never published."""
        truth = await self.p.sandbox("GET", "truth")
        # Away from the horizon's edges: the ingestor's windows are whole UTC days.
        now = datetime.now(UTC)
        lo = now + timedelta(days=1)
        hi = now + timedelta(days=self.p.options.horizon_days - 1)
        out = []
        for cluster in truth["clusters"]:
            start = datetime.fromisoformat(cluster["start_utc"].replace("Z", "+00:00"))
            if not lo <= start <= hi:
                continue
            for rec in [*cluster["records"], *cluster["addons"]]:
                key = f"{rec['provider']}:{rec['external_id']}"
                if rec["provider"] in TRUTH_PROVIDERS and rec["listed"] and key not in published:
                    out.append((key, rec["provider"], cluster["category"]))
        return out


@dataclass
class Marks:
    """Where the topics ended when a round began: "work in flight" is measured from here."""

    raw: int
    changes: int
    results: int
    received: int
    replies: int
    imports: int = 0

    @classmethod
    async def take(cls, suite: Suite) -> Marks:
        kafka = suite.p.kafka
        return cls(
            raw=sum((await end_offsets(kafka, "raw.events")).values()),
            changes=sum((await end_offsets(kafka, "events.canonical")).values()),
            results=len(suite.results.seen),
            received=len(suite.p.webhook.received),
            replies=len(suite.replies.seen),
        )


async def kill_and_restart(suite: Suite, name: str, down_s: float = 1.0) -> None:
    proc = suite.p.procs[name]
    # Servers are not supervised (a fault stops them on purpose): put back what it was.
    supervised, proc.supervised = proc.supervised, False
    try:
        suite.fault_at = time.monotonic()
        await proc.kill()
        say(f"killed {name} (kill -9), pid {proc.pid}")
        await asyncio.sleep(down_s)
        await proc.restart()
        say(f"{name} ready again {time.monotonic() - suite.fault_at:.1f}s after the kill")
    finally:
        proc.supervised = supervised


async def raw_grew(suite: Suite, marks: Marks) -> bool:
    return sum((await end_offsets(suite.p.kafka, "raw.events")).values()) > marks.raw + 1


async def normalizing(suite: Suite, marks: Marks) -> bool:
    changes = sum((await end_offsets(suite.p.kafka, "events.canonical")).values())
    return changes > marks.changes and await suite.p.group_lag("normalizer") > 0


async def fault_normalizer(suite: Suite, marks: Marks) -> bool:
    hit = await poll_until(lambda: normalizing(suite, marks), 60, 0.1)
    await kill_and_restart(suite, "normalizer")
    return hit


async def fault_ingestor(suite: Suite, marks: Marks) -> bool:
    async def syncing() -> bool:
        answered = len(suite.replies.seen) - marks.replies
        return answered < 4 and await raw_grew(suite, marks)

    hit = await poll_until(syncing, 60, 0.1)
    await kill_and_restart(suite, "ingestor")
    return hit


async def fault_importer(suite: Suite, marks: Marks) -> bool:
    async def importing() -> bool:
        # Requests are on the broker and not all answered: the worker is at them.
        return len(suite.results.seen) - marks.results < marks.imports

    hit = await poll_until(importing, 60, 0.05)
    await kill_and_restart(suite, "importer")
    return hit


async def fault_notifier(suite: Suite, marks: Marks) -> bool:
    async def delivering() -> bool:
        got = len(suite.p.webhook.received) > marks.received
        return got and await suite.p.group_lag("notifier") > 0

    hit = await poll_until(delivering, 60, 0.1)
    await kill_and_restart(suite, "notifier")
    return hit


async def fault_api(suite: Suite, marks: Marks) -> bool:
    # Down while the round's changes flow: on restart it must load them all.
    proc = suite.p.procs["api"]
    proc.supervised = False
    try:
        suite.fault_at = time.monotonic()
        await proc.kill()
        say("killed api (kill -9)")
        hit = await poll_until(lambda: normalizing(suite, marks), 60, 0.1)
        await asyncio.sleep(3)
        await proc.restart()
    finally:
        proc.supervised = True
    return hit


async def fault_kafka(suite: Suite, marks: Marks) -> bool:
    hit = await poll_until(lambda: raw_grew(suite, marks), 60, 0.1)
    broker = suite.p.procs["kafka"]
    suite.fault_at = time.monotonic()
    broker.signal(signal.SIGTERM)
    if not await broker.wait_exit(60):
        await broker.kill()
    say("kafka stopped; starting it again in 2 s")
    await asyncio.sleep(2)
    await broker.restart()
    say("kafka is back")
    return hit


async def fault_store_kill(suite: Suite, marks: Marks) -> bool:
    # kill -9 while the normalizer writes a batch: acknowledged (j:true) writes must survive.
    hit = await poll_until(lambda: normalizing(suite, marks), 60, 0.05)
    await kill_and_restart(suite, "mongo")
    return hit


async def fault_store_freeze(suite: Suite, marks: Marks) -> bool:
    hit = await poll_until(lambda: normalizing(suite, marks), 60, 0.1)
    store = suite.p.procs["mongo"]
    suite.fault_at = time.monotonic()
    store.signal(signal.SIGSTOP)
    say(f"store frozen (SIGSTOP) for {STORE_DOWN_S:.0f}s")
    try:
        await asyncio.sleep(STORE_DOWN_S)
    finally:
        store.signal(signal.SIGCONT)
    return hit


async def fault_store_stop(suite: Suite, marks: Marks) -> bool:
    hit = await poll_until(lambda: normalizing(suite, marks), 60, 0.1)
    store = suite.p.procs["mongo"]
    suite.fault_at = time.monotonic()
    await store.stop(20)
    say(f"store stopped for {STORE_DOWN_S:.0f}s")
    await asyncio.sleep(STORE_DOWN_S)
    await store.restart()
    return hit


async def fault_sandbox(suite: Suite, marks: Marks) -> bool:
    return True  # injected before the sync (break_sandbox); stats decide whether it hit


async def break_sandbox(pipeline: Pipeline) -> None:
    """Every provider fails for a while: 5xx bursts, timeouts, broken bodies, throttling."""
    for fault in (
        # At most three failures in a row per provider: the client tries five times.
        *({"provider": p.value, "kind": "5xx_burst", "count": 2} for p in EVENT_PROVIDERS),
        {"provider": "ticketmaster", "kind": "timeout", "count": 1, "delay_ms": 15_000},
        {"provider": "seatgeek", "kind": "malformed_json", "count": 1},
        {"provider": "eventbrite", "kind": "truncated", "count": 1},
    ):
        await pipeline.sandbox("POST", "faults", fault)
    await pipeline.sandbox("POST", "limits", {"tm_per_second": 3, "sg_per_second": 3})


FAULT_ACTIONS: dict[str, Callable[[Suite, Marks], Awaitable[bool]]] = {
    "normalizer": fault_normalizer,
    "importer": fault_importer,
    "notifier": fault_notifier,
    "api": fault_api,
    "ingestor": fault_ingestor,
    "kafka": fault_kafka,
    "store-kill": fault_store_kill,
    "store-freeze": fault_store_freeze,
    "store-stop": fault_store_stop,
    "sandbox": fault_sandbox,
}


def table(outcomes: Sequence[Outcome]) -> str:
    """Faults x outcomes, one row per fault (sums over its runs)."""
    head = (
        "| fault | runs | hit work in flight | recovered | recovery s (max) | records lost "
        "| duplicates | versions back | DLQ unexpected | API stale | unanswered | crashes "
        "| sync jobs failed |"
    )
    lines = [head, "|---|" + "---:|" * 12]
    for fault in dict.fromkeys(o.fault for o in outcomes):
        rows = [o for o in outcomes if o.fault == fault]
        lines.append(
            f"| {fault} | {len(rows)} | {sum(o.hit for o in rows)} "
            f"| {sum(o.recovered for o in rows)} | {max(o.recovery_s for o in rows):.0f} "
            f"| {sum(o.lost for o in rows)} | {sum(o.duplicates for o in rows)} "
            f"| {sum(o.versions_back for o in rows)} | {sum(o.dlq_unexpected for o in rows)} "
            f"| {sum(o.api_stale for o in rows)} | {sum(o.unanswered for o in rows)} "
            f"| {sum(o.crashes for o in rows)} | {sum(o.jobs_failed for o in rows)} |"
        )
    return "\n".join(lines)


def summary(
    outcomes: Sequence[Outcome], totals: dict[str, Any], options: SuiteOptions
) -> dict[str, Any]:
    """The ``--json`` object: the table's sums per fault, and the totals (docs/BENCHMARKS.md)."""
    faults: dict[str, dict[str, Any]] = {}
    for fault in dict.fromkeys(o.fault for o in outcomes):
        rows = [o for o in outcomes if o.fault == fault]
        faults[fault] = {
            "runs": len(rows),
            "ok": sum(o.ok for o in rows),
            "failed": sum(not o.ok for o in rows),
            "hit": sum(o.hit for o in rows),
            "recovered": sum(o.recovered for o in rows),
            "recovery_max_s": round(max(o.recovery_s for o in rows), 1),
            "lost": sum(o.lost for o in rows),
            "duplicates": sum(o.duplicates for o in rows),
            "versions_back": sum(o.versions_back for o in rows),
            "dlq_unexpected": sum(o.dlq_unexpected for o in rows),
            "api_stale": sum(o.api_stale for o in rows),
            "unanswered": sum(o.unanswered for o in rows),
            "crashes": sum(o.crashes for o in rows),
            "jobs_failed": sum(o.jobs_failed for o in rows),
        }
    return {
        "benchmark": "faults",
        "runs": options.runs,
        "events": options.events,
        "rounds": len(outcomes),
        "failed_rounds": sum(not o.ok for o in outcomes),
        "ok": all(o.ok for o in outcomes),
        "faults": faults,
        "records": totals["records"],
        "canonical_events": totals["canonical"],
        "local_events": totals["local_events"],
        "import_requests": totals["requests"],
        "notifications": totals["notifications"],
        "whole_run_s": round(totals["seconds"], 1),
        "uncovered": [f"{provider} {category}" for provider, category in totals["uncovered"]],
    }


async def run_suite(options: SuiteOptions) -> tuple[list[Outcome], dict[str, Any]]:
    """Start a private pipeline, run every fault ``runs`` times, return outcomes and totals."""
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="marquee-faults-"))
    pipeline = Pipeline(
        Options(
            workdir=workdir,
            events=options.events,
            horizon_days=options.horizon_days,
            # Small batches, few concurrent deliveries and a slow webhook keep each service
            # busy long enough for a fault to land while it has work in flight.
            importer_batch=5,
            webhook_delay_s=0.05,
            extra_env={
                "NOTIFIER_CONCURRENCY": "2",
                "NOTIFIER_BATCH_SIZE": "20",
                **options.extra_env,
            },
        )
    )
    outcomes: list[Outcome] = []
    began = time.monotonic()
    try:
        await pipeline.start()
        suite = Suite(pipeline, options)
        try:
            await suite.start()
            for run in range(1, options.runs + 1):
                for fault in options.faults:
                    say(f"run {run}: {fault}")
                    outcome = await suite.round(fault, run)
                    outcomes.append(outcome)
                    say(
                        f"run {run}: {fault}: {'ok' if outcome.ok else 'FAILED'} "
                        f"(hit {outcome.hit}, recovered in {outcome.recovery_s:.0f}s) "
                        + "; ".join(outcome.notes)
                    )
            async with pipeline.db() as db:
                totals = {
                    "records": await db[EXTERNAL_EVENTS].count_documents({}),
                    "canonical": await db[EVENTS].count_documents({"duplicate_of": None}),
                    "local_events": await db[LOCAL_EVENTS].count_documents({}),
                    "requests": len(suite.requests),
                    "notifications": len(set(pipeline.webhook.received)),
                    "seconds": time.monotonic() - began,
                    "workdir": str(workdir),
                    "uncovered": sorted(suite.uncovered or ()),
                    "starts": {name: proc.starts for name, proc in pipeline.procs.items()},
                }
        finally:
            await suite.stop()
    finally:
        await pipeline.close()
    return outcomes, totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="times each fault is injected")
    parser.add_argument("--events", type=int, default=300, help="sandbox world size")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset")
    parser.add_argument("--imports", type=int, default=30, help="import requests per round")
    parser.add_argument(
        "--workdir", type=Path, help="keep data and logs here (default: a temp dir)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every service, e.g. BROKER_SESSION_TIMEOUT=15 (faust)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; know {', '.join(FAULTS)}")
    options = SuiteOptions(
        runs=args.runs,
        events=args.events,
        faults=faults,
        imports_per_round=args.imports,
        workdir=args.workdir,
        extra_env=dict(item.split("=", 1) for item in args.env),
    )
    outcomes, totals = run_stoppable(run_suite(options))
    print(table(outcomes))
    print(
        f"\n{totals['records']:,} records, {totals['canonical']:,} canonical events, "
        f"{totals['local_events']:,} local events, {totals['requests']:,} import requests, "
        f"{totals['notifications']:,} notifications; {totals['seconds']:.0f}s in all; "
        f"logs in {totals['workdir']}"
    )
    if totals["uncovered"]:
        pairs = ", ".join(f"{p} {c}" for p, c in totals["uncovered"])
        print(f"not listed by any configured ingestor query (excluded from the checks): {pairs}")
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"FAILED {o.fault} run {o.run}: {'; '.join(o.notes)}")
    if args.json:
        print(json.dumps(summary(outcomes, totals, options)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
