"""Ingestor benchmark: a full sync of a large sandbox world, calls vs minimum, second sync."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.ingestor.jobs import Resources, run_sync
from services.ingestor.progress import ProgressManager
from services.ingestor.providers import eventbrite, meetup, seatgeek, ticketmaster
from services.ingestor.publish import PageArchive, RawPublisher
from services.ingestor.sync import SyncReport
from services.ingestor.wiring import CallCounter, configured_queries
from shared.contracts import Provider, RawRecord
from shared.kafka import make_producer
from shared.mongo import CHECKPOINTS, get_database, make_client
from shared.s3 import ensure_bucket, s3_client
from shared.settings import IngestorSettings
from tests.sandbox import environ, running_sandbox, sandbox_env
from tests.stack import endpoints

START = datetime(2026, 11, 23, tzinfo=UTC)
PAGE_SIZE = {
    Provider.TICKETMASTER: ticketmaster.PAGE_SIZE,
    Provider.SEATGEEK: seatgeek.PER_PAGE,
    Provider.EVENTBRITE: 50,  # the sandbox's (and the real API's) default page
    Provider.MEETUP: meetup.PAGE_SIZE,
}
assert eventbrite.EXPAND  # the module is part of what is measured


def minimum_calls(reports: list[SyncReport]) -> dict[Provider, int]:
    """The fewest list calls that could return these records: ceil(records / page size)."""
    out: dict[Provider, int] = {}
    for report in reports:
        need = max(math.ceil(report.records / PAGE_SIZE[report.provider]), 1)
        out[report.provider] = out.get(report.provider, 0) + need
    return out


async def publish_only(resources: Resources, count: int) -> float:
    """Baseline in the same process: RawRecords straight to Kafka, no HTTP, no archive."""
    payload = {"id": "x", "name": "Benchmark", "info": "x" * 2500}
    records = [
        RawRecord(provider=Provider.TICKETMASTER, external_id=f"b{i}", payload=payload)
        for i in range(count)
    ]
    started = time.perf_counter()
    for i in range(0, count, 500):
        await resources.publisher.publish(records[i : i + 500])
    return count / (time.perf_counter() - started)


async def run(args: argparse.Namespace, base: str, kafka: str) -> dict[str, Any]:
    settings = IngestorSettings()
    async with httpx.AsyncClient() as http:
        directory = (await http.get(f"{base}/_sandbox/directory")).json()
    settings.meetup.groups = directory["meetup_groups"]
    settings.spotify.max_lookups_per_sync = args.spotify
    settings.max_events_per_sync = 10_000_000
    unique = uuid.uuid4().hex[:8]
    topic = f"bench.raw.{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 6, 1)])
    producer = make_producer(settings.kafka)
    await producer.start()
    mongo = make_client(settings.mongo, appname="marquee-bench")
    db = get_database(mongo, settings.mongo, f"bench_{unique}")
    try:
        async with s3_client(settings.s3) as s3:
            bucket = f"bench-{unique}"
            await ensure_bucket(s3, bucket)
            resources = Resources(
                RawPublisher(producer, topic),
                PageArchive(s3, bucket),
                db,
                ProgressManager(db[CHECKPOINTS], freshness=timedelta(hours=1)),
            )
            queries = configured_queries(settings)
            figures: list[tuple[str, float, CallCounter, list[SyncReport]]] = []
            runs = (
                ("first sync", timedelta(hours=1)),
                ("second sync (unchanged, within freshness)", timedelta(hours=1)),
                ("re-poll after the freshness window", timedelta(0)),
            )
            for label, freshness in runs:
                resources.progress.freshness = freshness
                counter = CallCounter()
                started = time.perf_counter()
                reports = await run_sync(
                    settings,
                    resources,
                    queries,
                    job_id=label,
                    observers=[counter.observe],
                    horizon_days=args.days,
                    start=START,
                )
                figures.append((label, time.perf_counter() - started, counter, reports))
                print(f"{label}: done in {figures[-1][1]:.1f}s", flush=True)
            baseline = await publish_only(resources, 20_000)
    finally:
        await producer.stop()
        await mongo.drop_database(db.name)
        await mongo.close()
        await admin.delete_topics([topic])
        await admin.close()

    first = figures[0][3]
    need = minimum_calls(first)
    print(f"\nworld: {args.events:,} performances, horizon {args.days} days, sandbox limits off")
    print("| run | seconds | records | records/s | calls (list + detail) | spotify calls |")
    print("|---|---:|---:|---:|---:|---:|")
    summary: dict[str, Any] = {"benchmark": "ingest", "events": args.events, "days": args.days}
    prefixes = ("first_sync", "second_sync", "repoll")
    for prefix, (label, seconds, counter, reports) in zip(prefixes, figures, strict=True):
        records = sum(r.records for r in reports)
        calls = sum(n for p, n in counter.calls.items() if p is not Provider.SPOTIFY)
        print(
            f"| {label} | {seconds:.1f} | {records:,} | {records / seconds:,.0f} | {calls:,} "
            f"| {counter.calls.get(Provider.SPOTIFY, 0):,} |"
        )
        summary |= {
            f"{prefix}_s": round(seconds, 2),
            f"{prefix}_records": records,
            f"{prefix}_records_per_s": round(records / seconds),
            f"{prefix}_calls": calls,
            f"{prefix}_spotify_calls": counter.calls.get(Provider.SPOTIFY, 0),
        }
    providers: dict[str, dict[str, Any]] = {}
    print("\n| provider | queries | records | calls made | minimum calls | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    counter = figures[0][2]
    for provider in sorted(need):
        mine = [r for r in first if r.provider is provider]
        made = counter.calls.get(provider, 0)
        print(
            f"| {provider.value} | {len(mine)} | {sum(r.records for r in mine):,} | {made:,} "
            f"| {need[provider]:,} | {made / need[provider]:.2f} |"
        )
        providers[provider.value] = {
            "queries": len(mine),
            "records": sum(r.records for r in mine),
            "calls": made,
            "minimum_calls": need[provider],
            "calls_ratio": round(made / need[provider], 2),
        }
    rate = sum(r.records for r in first) / figures[0][1]
    print(
        f"\nbaseline in the same process: publish-only {baseline:,.0f} records/s; "
        f"the full sync runs at {rate / baseline:.2f}x of it"
    )
    return summary | {
        "first_sync_providers": providers,
        "publish_only_records_per_s": round(baseline),
        "first_sync_to_publish_only_ratio": round(rate / baseline, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--spotify", type=int, default=300, help="Spotify lookups per sync")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    off = [
        *("--tm-per-second", "0", "--tm-daily-quota", "0", "--sg-per-second", "0"),
        *("--eb-per-hour", "0", "--meetup-points", "0", "--spotify-window-requests", "0"),
    ]
    with endpoints() as ends, running_sandbox(*off, events=args.events, seed=42) as base:
        env = {**ends.env(), **sandbox_env(base), "MARQUEE_ENV": "test", "LOG_LEVEL": "WARNING"}
        with environ(env):
            summary = asyncio.run(run(args, base, ends.kafka))
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
