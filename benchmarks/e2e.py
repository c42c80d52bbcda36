"""End-to-end benchmark: a sandbox world through every service, to the API, on a private stack.

Starts its own Kafka, MongoDB-wire server, S3, sandbox and the five services
(``benchmarks/system.py``), then:

1. **bulk**: one sync job per provider over the whole world; times the ingest (jobs answered),
   the normalizer (its consumer group caught up) and the API (its read model holds every
   record); sustained canonical events/s = canonical events ÷ (first job → API has them all);
2. **imports**: one bulk import request of ``--imports`` canonical events, until every result
   is on ``import.results`` and every notification reached the webhook;
3. **freshness**: ``--changes`` times, the sandbox's clock moves an hour (it edits, reschedules
   and cancels events), a changed Ticketmaster / SeatGeek / Eventbrite record is fetched at once
   by a ``detail`` job (what a provider webhook or a tight poll would trigger), and the time
   from the change to the API serving the record's new version is measured, with the stages
   (raw record on ``raw.events``, change on ``events.canonical``, API); once while idle and,
   with ``--under-load``, while the bulk phase is still being normalized;
4. **freshness at half load**: ``--half-load-changes`` more samples while ``raw.events``
   carries changed records at half the rate the bulk was normalized at (stored records
   re-published with an extra payload key, so each is mapped, resolved, rewritten and
   announced): the steady load a deployment should run at.

``python benchmarks/e2e.py [--events 20000] [--changes 20] [--imports 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.system import (
    REPLIES,
    Options,
    Pipeline,
    Tail,
    pct,
    poll_until,
    run_stoppable,
    say,
)
from deploy.sandbox import World
from shared.contracts import (
    BulkImportRequest,
    ImportItem,
    ImportResult,
    IngestJob,
    IngestReply,
    JobKind,
    Provider,
    RawRecord,
)
from shared.kafka import make_producer
from shared.mongo import EVENTS, EXTERNAL_EVENTS

DETAIL_PROVIDERS = ("ticketmaster", "seatgeek", "eventbrite")


@dataclass
class Sample:
    key: str
    kind: str
    raw_s: float  # change → its record on raw.events
    canonical_s: float | None  # change → the normalizer's announcement on events.canonical
    event_s: float | None  # change → GET /events/{id} serves that canonical version
    # change → GET /external-events/{source}/{id} serves the new content (None: it never did)
    record_s: float | None


class Bench:
    def __init__(self, pipeline: Pipeline, args: argparse.Namespace) -> None:
        self.p = pipeline
        self.args = args
        self.raw = Tail(pipeline.kafka, "raw.events")
        self.changes = Tail(pipeline.kafka, "events.canonical")
        self.replies = Tail(pipeline.kafka, REPLIES)
        self.results = Tail(pipeline.kafka, "import.results")
        self.headers = {"Authorization": f"Bearer {pipeline.token()}"}
        self.figures: dict[str, Any] = {}
        self.bulk_jobs: list[IngestJob] = []
        # A copy of the sandbox's world, stepped with it: deterministic from seed and start.
        self.world = World(pipeline.options.seed, pipeline.options.events, pipeline.world_start)

    async def start(self) -> None:
        for tail in (self.raw, self.changes, self.replies, self.results):
            await tail.start()

    async def stop(self) -> None:
        for tail in (self.raw, self.changes, self.replies, self.results):
            await tail.stop()

    def answered(self, jobs: Sequence[IngestJob]) -> dict[str, IngestReply]:
        wanted = {j.job_id for j in jobs}
        out = {}
        for _at, record in self.replies.seen:
            reply = IngestReply.model_validate_json(record.value or b"")
            if reply.job_id in wanted:
                out[reply.job_id] = reply
        return out

    async def normalizer_busy(self) -> tuple[float, float]:
        """Seconds the normalizer spent in batches and raw records it handled (its metrics)."""
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://127.0.0.1:{self.p.ports['normalizer']}/metrics")).text
        seconds = handled = 0.0
        for line in text.splitlines():
            if line.startswith("marquee_normalizer_batch_seconds_sum "):
                seconds = float(line.rsplit(" ", 1)[1])
            elif line.startswith("marquee_normalizer_records_total{"):
                handled += float(line.rsplit(" ", 1)[1])
        return seconds, handled

    # ------------------------------------------------------------------ bulk

    async def bulk(self) -> None:
        truth = await self.p.sandbox("GET", "truth")
        listed = sum(len(c["records"]) + len(c["addons"]) for c in truth["clusters"])
        say(f"bulk: the world has {len(truth['clusters']):,} performances, {listed:,} records")
        t0 = time.monotonic()
        # No per-job record cap (INGESTOR_MAX_EVENTS_PER_SYNC, 10,000): the whole world.
        params = {"days": self.p.options.horizon_days, "max": 10_000_000}
        jobs = await self.p.send_jobs(params=params)
        self.bulk_jobs = jobs
        loaded = asyncio.create_task(self.freshness("under load")) if self.args.under_load else None
        ingested = normalized = 0.0
        records = canonical = -1
        while True:
            await asyncio.sleep(2)
            now = time.monotonic()
            replies = self.answered(jobs)
            if not ingested and len(replies) == len(jobs):
                ingested = now
                say(f"bulk: ingest done in {ingested - t0:.0f}s")
            if ingested and not normalized and await self.p.group_lag("normalizer") == 0:
                normalized = now
                say(f"bulk: normalizer caught up at {normalized - t0:.0f}s")
            if normalized:
                if records < 0:
                    # Once, at the end: the count needs no polling.
                    async with self.p.db(timeout_ms=1_800_000) as db:
                        records = await db[EXTERNAL_EVENTS].count_documents({})
                        canonical = await db[EVENTS].count_documents({"duplicate_of": None})
                # The API reads the store: what is written is what it serves.
                visible = normalized
                break
            elapsed = now - t0
            if int(elapsed) % 30 < 2:
                lag = await self.p.group_lag("normalizer")
                say(
                    f"bulk: {elapsed:.0f}s, {len(replies)}/{len(jobs)} jobs, normalizer lag {lag:,}"
                )
        busy = await self.normalizer_busy()
        if loaded is not None:
            await loaded
        events = [
            (at, r)
            for at, r in self.raw.seen
            if at <= ingested and not (r.key or b"").startswith(b"spotify:")
        ]
        published = sum(r.records for r in replies.values())
        first_raw = events[0][0] if events else t0
        last_change = max((at for at, _r in self.changes.seen if at <= visible), default=visible)
        self.figures["bulk"] = {
            "world_records": listed,
            "published": published,
            "raw_messages": len(events),
            "records": records,
            "canonical": canonical,
            "total_s": visible - t0,
            "ingest_s": ingested - t0,
            "normalize_s": normalized - first_raw,
            "api_after_normalizer_s": visible - last_change,
            "normalizer_busy_s": busy[0],
            "normalizer_handled": busy[1],
            "jobs": [f"{r.status.value} {r.records}" for r in replies.values()],
        }

    # ------------------------------------------------------------------ imports

    async def imports(self) -> None:
        async with self.p.db() as db:
            docs = await db[EVENTS].find({"duplicate_of": None}, {"_id": 1}).to_list()
        ids = sorted(d["_id"] for d in docs)[: self.args.imports]
        if not ids:
            return
        bulk = BulkImportRequest(
            requested_by="org-bench", items=[ImportItem(canonical_id=i) for i in ids]
        )
        wanted = {r.request_id for r in bulk.expand()}
        received = len(self.p.webhook.received)
        t0 = time.monotonic()
        await self.p.send("import.requests", [(bulk.request_id.encode(), bulk)])
        while True:
            got = {
                ImportResult.model_validate_json(r.value or b"").request_id: r
                for _at, r in self.results.seen
            }
            if wanted <= set(got):
                break
            await asyncio.sleep(0.2)
        answered = time.monotonic()
        results = [ImportResult.model_validate_json(got[i].value or b"") for i in wanted]
        imported = sum(1 for r in results if r.status.value == "imported")

        async def settled() -> bool:
            return not (await self.p.group_lag("notifier") or await self.p.group_lag("importer"))

        await poll_until(settled, 600)
        delivered = time.monotonic()
        self.figures["imports"] = {
            "requests": len(wanted),
            "imported": imported,
            "answered_s": answered - t0,
            "notified_s": delivered - t0,
            "notifications": len(self.p.webhook.received) - received,
        }

    # ------------------------------------------------------------------ freshness

    async def freshness(self, label: str) -> None:
        wait_s = self.args.fresh_timeout
        if label == "under load":
            # Once the bulk is on the broker and the normalizer still works through it: a
            # detail job sent earlier would only wait behind the sync jobs (one at a time).
            async def ingested() -> bool:
                return len(self.answered(self.bulk_jobs)) == len(self.bulk_jobs)

            await poll_until(ingested, 3600, 1)
            backlog = await self.p.group_lag("normalizer")
            say(f"freshness under load: normalizer backlog {backlog:,} records")
            self.figures["backlog"] = backlog
            if not backlog:
                return
            wait_s = self.args.load_timeout
        count = self.args.changes if label == "idle" else self.args.load_changes
        self.figures[f"freshness {label}"] = {"samples": [], "misses": 0}
        for _ in range(count):
            if label == "under load" and not await self.p.group_lag("normalizer"):
                break  # the backlog is gone: further samples would be idle ones
            await self.sample(label, wait_s)

    async def sample(self, label: str, wait_s: float) -> None:
        """One freshness sample, kept under ``freshness <label>`` (or counted as a miss)."""
        found = self.figures[f"freshness {label}"]
        sample = await self.one_change(wait_s)
        if sample is None:
            found["misses"] += 1
        else:
            found["samples"].append(sample)

    async def half_load(self) -> None:
        """Freshness samples while ``raw.events`` carries half the rate the bulk was
        normalized at: stored records re-published with a changed payload (an extra key the
        mappers ignore), so the normalizer maps, resolves, rewrites and announces each one."""
        bulk = self.figures["bulk"]
        rate = bulk["raw_messages"] / max(bulk["normalize_s"], 1e-9) / 2
        self.figures["half_load_rate"] = rate
        say(f"freshness at half load: {rate:,.0f} changed records/s on raw.events")
        pool = [
            raw
            for _at, r in self.raw.seen
            if not (r.key or b"").startswith(b"spotify:")
            and not (raw := RawRecord.model_validate_json(r.value or b"{}")).tombstone
            and isinstance(raw.payload, dict)
        ]
        stop = asyncio.Event()
        sent = 0

        async def load() -> None:
            nonlocal sent
            producer = make_producer(self.p.kafka)
            await producer.start()
            try:
                started = time.monotonic()
                while not stop.is_set():
                    # Paced in 50 ms steps: as many as the rate allows by now.
                    due = int((time.monotonic() - started) * rate) - sent
                    for _ in range(max(due, 0)):
                        raw = pool[sent % len(pool)]
                        touched = RawRecord(
                            provider=raw.provider,
                            entity=raw.entity,
                            external_id=raw.external_id,
                            payload={**raw.payload, "marquee_bench_touch": sent},
                        )
                        await producer.send(
                            "raw.events", touched.to_json_bytes(), key=touched.key().encode()
                        )
                        sent += 1
                    await asyncio.sleep(0.05)
                await producer.flush()
            finally:
                await producer.stop()

        task = asyncio.create_task(load())
        try:
            await asyncio.sleep(10)  # the load settles before the first sample
            self.figures["freshness half load"] = {"samples": [], "misses": 0}
            for _ in range(self.args.half_load_changes):
                await self.sample("half load", self.args.fresh_timeout)
        finally:
            stop.set()
            await task
        self.figures["half_load_sent"] = sent

    async def one_change(self, wait_s: float) -> Sample | None:
        before = snapshot(self.world)
        moved = await self.p.sandbox("POST", "clock/advance?hours=1")
        changed_at = time.monotonic()
        # The same step on our copy of the world says what changed (the sandbox's truth of a
        # big world takes seconds to render).
        mirrored = self.world.advance(1.0)  # the sandbox parses a float: "42:1:1.0" seeds it
        if {k: moved[k] for k in mirrored} != mirrored:
            raise RuntimeError(f"the world copy went out of step: {moved} vs {mirrored}")
        picked = await self.pick(before)
        if picked is None:
            return None
        key, kind, expected = picked
        provider, external_id = key.split(":", 1)
        job = IngestJob(
            provider=Provider(provider),
            kind=JobKind.DETAIL,
            params={"external_id": external_id},
            requested_by="bench",
            reply_to=REPLIES,
        )
        # Read marks: each record on the tails is looked at once (under load the canonical
        # tail grows by hundreds a second; rescanning it every poll starved the pipeline).
        raw_mark, change_mark = len(self.raw.seen), len(self.changes.seen)
        await self.p.send("ingest.requests", [(job.job_id.encode(), job)])
        deadline = changed_at + wait_s
        record_at = event_at = canonical_at = raw_at = 0.0
        target: tuple[str, int] | None = None  # the canonical change that carries the record
        silent = False
        async with httpx.AsyncClient(timeout=10, headers=self.headers) as client:
            while time.monotonic() < deadline:
                if not raw_at:
                    seen, raw_mark = self.raw.seen[raw_mark:], len(self.raw.seen)
                    raw_at = next((at for at, r in seen if r.key == key.encode()), 0.0)
                if not record_at:
                    url = self.p.api_url(f"/external-events/{provider}/{external_id}")
                    response = await client.get(url)
                    if response.status_code == 200 and shows(response.json(), kind, expected):
                        record_at = time.monotonic()
                if target is None:
                    seen, change_mark = self.changes.seen[change_mark:], len(self.changes.seen)
                    for at, r in seen:
                        if key in {f"{x['source']}:{x['external_id']}" for x in _sources(r.value)}:
                            body = orjson.loads(r.value or b"{}")
                            target, canonical_at = (body["canonical_id"], body["version"]), at
                            break
                if target is not None and not event_at:
                    response = await client.get(self.p.api_url(f"/events/{target[0]}"))
                    if response.status_code == 200 and response.json()["version"] >= target[1]:
                        event_at = time.monotonic()
                # A change that leaves the canonical event as it was announces nothing.
                quiet = target is None and record_at and time.monotonic() > record_at + 5
                if record_at and (event_at or quiet):
                    break
                # Stored, but announced nowhere: the API never hears of it (it learns of
                # per-source records through canonical changes).
                if (
                    raw_at
                    and target is None
                    and not record_at
                    and time.monotonic() > raw_at + 10
                    and not await self.p.group_lag("normalizer")
                ):
                    silent = True
                    break
                await asyncio.sleep(0.02)
        if not raw_at:
            say(f"freshness: {key} never published after {wait_s:.0f}s")
            return None
        if silent:
            say(f"freshness: {key} changed, no canonical change announced, API shows the old one")
        elif not record_at:
            say(f"freshness: {key} not visible after {wait_s:.0f}s")
            return None
        return Sample(
            key,
            kind,
            raw_at - changed_at,
            (canonical_at - changed_at) if canonical_at else None,
            (event_at - changed_at) if event_at else None,
            (record_at - changed_at) if record_at else None,
        )

    async def pick(self, before: dict[str, Seen]) -> tuple[str, str, str] | None:
        """A record the clock step changed (its title or start) that the API has, but not yet
        with the change: (key, "title" or "time", the new value)."""
        async with httpx.AsyncClient(timeout=10, headers=self.headers) as client:
            for perf in self.world.perfs:
                was = before.get(perf.pid)
                if was is None or perf.cancelled or perf.time_tbd:
                    continue
                for rec in perf.recs.values():
                    if rec.provider not in DETAIL_PROVIDERS:
                        continue
                    moved = perf.start != was.start
                    retitled = was.titles.get(rec.ext_id) not in (None, rec.title)
                    if not (moved or retitled):
                        continue
                    url = self.p.api_url(f"/external-events/{rec.provider}/{rec.ext_id}")
                    response = await client.get(url)
                    if response.status_code != 200:
                        continue  # not in the catalogue (yet)
                    record = response.json()
                    if not moved:
                        if record.get("title") != rec.title:
                            return f"{rec.provider}:{rec.ext_id}", "title", rec.title
                        continue  # a sync running at the same time fetched it first
                    # A mapped start may differ from the sandbox's (a venue without a zone):
                    # the change shows as the API's start moving away from what it is now.
                    now = start_of(record)
                    if now is not None and now != perf.start:
                        return f"{rec.provider}:{rec.ext_id}", "time", now.isoformat()
        return None


@dataclass
class Seen:
    """A performance before a clock step: its start and its records' titles by id."""

    start: datetime
    titles: dict[str, str]


def snapshot(world: World) -> dict[str, Seen]:
    return {p.pid: Seen(p.start, {r.ext_id: r.title for r in p.recs.values()}) for p in world.perfs}


def start_of(record: dict[str, Any]) -> datetime | None:
    start = (record.get("start") or {}).get("utc")
    return datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None


def shows(record: dict[str, Any], kind: str, value: str) -> bool:
    """Whether the API's record carries the change: the new title, or a start that moved
    away from ``value`` (the start it had before)."""
    if kind == "title":
        return record.get("title") == value
    start = start_of(record)
    return start is not None and start != datetime.fromisoformat(value)


def _sources(value: bytes | None) -> list[dict[str, Any]]:
    body = orjson.loads(value or b"{}")
    sources: list[dict[str, Any]] = body.get("event", {}).get("sources", [])
    return sources


def report(figures: dict[str, Any], seconds: float) -> str:
    lines = []
    bulk = figures.get("bulk")
    if bulk:
        total = bulk["total_s"]
        lines += [
            f"world: {bulk['world_records']:,} provider records; published {bulk['published']:,} "
            f"({bulk['raw_messages']:,} raw messages), stored {bulk['records']:,} per-source "
            f"records, {bulk['canonical']:,} canonical events",
            f"jobs: {', '.join(bulk['jobs'])}",
            "",
            "| stage | seconds | records/s |",
            "|---|---:|---:|",
            f"| ingest (sync jobs answered, records on raw.events) | {bulk['ingest_s']:.1f} "
            f"| {bulk['published'] / max(bulk['ingest_s'], 1e-9):,.0f} |",
            f"| normalizer (first raw record → group caught up) | {bulk['normalize_s']:.1f} "
            f"| {bulk['raw_messages'] / max(bulk['normalize_s'], 1e-9):,.0f} |",
            f"| normalizer, busy time only (its batch_seconds) | {bulk['normalizer_busy_s']:.1f} "
            f"| {bulk['normalizer_handled'] / max(bulk['normalizer_busy_s'], 1e-9):,.0f} |",
            f"| API (last change announced → read model has every record) "
            f"| {bulk['api_after_normalizer_s']:.1f} | — |",
            f"| **total: first job → API serves everything** | {total:.1f} "
            f"| {bulk['records'] / total:,.0f} records/s, "
            f"**{bulk['canonical'] / total:,.0f} canonical events/s** |",
        ]
    imports = figures.get("imports")
    if imports:
        lines += [
            "",
            f"imports: {imports['requests']:,} in one bulk request, {imports['imported']:,} "
            f"imported; all answered in {imports['answered_s']:.1f}s "
            f"({imports['requests'] / imports['answered_s']:,.0f}/s), "
            f"{imports['notifications']:,} notifications delivered by {imports['notified_s']:.1f}s",
        ]
    for label in ("idle", "under load", "half load"):
        found = figures.get(f"freshness {label}")
        if not found:
            continue
        samples: list[Sample] = found["samples"]
        never = sum(1 for x in samples if x.record_s is None)
        lines += [
            "",
            f"freshness {label}: {len(samples)} changes ({found['misses']} not measured; "
            f"{never} stored but never shown by the API: no canonical change announced)",
        ]
        if samples:
            lines += [
                "| change → | samples | p50 s | p99 s | max s |",
                "|---|---:|---:|---:|---:|",
            ]
            rows: list[tuple[str, list[float]]] = [
                ("record on raw.events (detail job)", [x.raw_s for x in samples]),
                (
                    "change on events.canonical",
                    [x.canonical_s for x in samples if x.canonical_s is not None],
                ),
                (
                    "**canonical event visible** (`GET /events/{id}`)",
                    [x.event_s for x in samples if x.event_s is not None],
                ),
                (
                    "**per-source record visible** (`GET /external-events/{source}/{id}`)",
                    [x.record_s for x in samples if x.record_s is not None],
                ),
            ]
            for name, values in rows:
                if values:
                    lines.append(
                        f"| {name} | {len(values)} | {pct(values, 0.5):.2f} "
                        f"| {pct(values, 0.99):.2f} | {max(values):.2f} |"
                    )
    lines.append(f"\nwhole run: {seconds:.0f}s")
    return "\n".join(lines)


def summary(figures: dict[str, Any], seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    """The ``--json`` object (keys documented in docs/BENCHMARKS.md); null: not measured."""

    def per_s(count: float, secs: float) -> int:
        return round(count / max(secs, 1e-9))

    out: dict[str, Any] = {
        "benchmark": "e2e",
        "events": args.events,
        "seed": args.seed,
        "whole_run_s": round(seconds, 1),
    }
    # ``phase and value``: null when that phase did not run (no imports, no --under-load).
    bulk = figures.get("bulk")
    out |= {
        "bulk_world_records": bulk and bulk["world_records"],
        "bulk_published_records": bulk and bulk["published"],
        "bulk_raw_messages": bulk and bulk["raw_messages"],
        "bulk_stored_records": bulk and bulk["records"],
        "bulk_canonical_events": bulk and bulk["canonical"],
        "bulk_ingest_s": bulk and round(bulk["ingest_s"], 1),
        "bulk_ingest_records_per_s": bulk and per_s(bulk["published"], bulk["ingest_s"]),
        "bulk_normalize_s": bulk and round(bulk["normalize_s"], 1),
        "bulk_normalize_records_per_s": bulk and per_s(bulk["raw_messages"], bulk["normalize_s"]),
        "bulk_normalizer_busy_s": bulk and round(bulk["normalizer_busy_s"], 1),
        "bulk_normalizer_busy_records_per_s": bulk
        and per_s(bulk["normalizer_handled"], bulk["normalizer_busy_s"]),
        "bulk_api_after_normalizer_s": bulk and round(bulk["api_after_normalizer_s"], 1),
        "bulk_total_s": bulk and round(bulk["total_s"], 1),
        "bulk_total_records_per_s": bulk and per_s(bulk["records"], bulk["total_s"]),
        "bulk_canonical_events_per_s": bulk and per_s(bulk["canonical"], bulk["total_s"]),
        "under_load_backlog_records": figures.get("backlog"),
    }
    imports = figures.get("imports")
    out |= {
        "imports_requests": imports and imports["requests"],
        "imports_imported": imports and imports["imported"],
        "imports_answered_s": imports and round(imports["answered_s"], 2),
        "imports_per_s": imports and per_s(imports["requests"], imports["answered_s"]),
        "imports_notifications": imports and imports["notifications"],
        "imports_notified_s": imports and round(imports["notified_s"], 2),
    }
    out |= {
        "half_load_records_per_s": figures.get("half_load_rate")
        and round(figures["half_load_rate"]),
        "half_load_records_sent": figures.get("half_load_sent"),
    }
    for label, prefix in (
        ("idle", "freshness_idle"),
        ("under load", "freshness_load"),
        ("half load", "freshness_half"),
    ):
        found = figures.get(f"freshness {label}")
        samples: list[Sample] = found["samples"] if found else []
        out |= {
            f"{prefix}_changes": found and len(samples),
            f"{prefix}_misses": found and found["misses"],
            f"{prefix}_never_shown": found and sum(1 for x in samples if x.record_s is None),
        }
        stages: dict[str, list[float | None]] = {
            "raw": [x.raw_s for x in samples],
            "canonical": [x.canonical_s for x in samples],
            "event": [x.event_s for x in samples],
            "record": [x.record_s for x in samples],
        }
        for stage, maybe in stages.items():
            values = [v for v in maybe if v is not None]
            out |= {
                f"{prefix}_{stage}_samples": len(values) if found else None,
                f"{prefix}_{stage}_p50_s": round(pct(values, 0.5), 3) if values else None,
                f"{prefix}_{stage}_p99_s": round(pct(values, 0.99), 3) if values else None,
                f"{prefix}_{stage}_max_s": round(max(values), 3) if values else None,
            }
    return out


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="marquee-e2e-"))
    pipeline = Pipeline(
        Options(
            workdir=workdir,
            events=args.events,
            seed=args.seed,
            horizon_days=200,  # the whole world (it spans 180 days ahead)
            spotify_lookups=args.spotify,
        )
    )
    began = time.monotonic()
    try:
        await pipeline.start()
        bench = Bench(pipeline, args)
        await bench.start()
        try:
            await bench.bulk()
            await bench.imports()
            await bench.freshness("idle")
            if args.half_load_changes:
                await bench.half_load()
        finally:
            await bench.stop()
    finally:
        await pipeline.close()
    return bench.figures, time.monotonic() - began


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="sandbox performances")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--imports", type=int, default=1_000, help="events in the bulk import")
    parser.add_argument("--changes", type=int, default=20, help="freshness samples, idle")
    parser.add_argument("--under-load", action="store_true", help="also sample during the bulk")
    parser.add_argument("--load-changes", type=int, default=5, help="samples under load")
    parser.add_argument(
        "--half-load-changes",
        type=int,
        default=20,
        help="freshness samples at half the bulk's normalize rate (0: skip)",
    )
    parser.add_argument("--fresh-timeout", type=float, default=120.0, help="per sample, seconds")
    parser.add_argument("--load-timeout", type=float, default=1800.0, help="per sample, loaded")
    parser.add_argument("--spotify", type=int, default=100, help="Spotify lookups per sync")
    parser.add_argument("--workdir", type=Path, help="keep data and logs here")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    figures, seconds = run_stoppable(run(args))
    print(report(figures, seconds))
    if args.json:
        print(json.dumps(summary(figures, seconds, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
