"""Normalizer throughput: raw.events → catalogue through faust workers, vs the store ceiling.

Two phases over the records of a sandbox world of ``--events`` performances:

1. **first sync**: every record is new; timed from the first send until every record is
   stored (the workers' metrics count them);
2. **unchanged re-sync**: the same records fetched again, payloads unchanged; timed until the
   workers have seen them all (nothing is written, nothing announced).

The store's ceiling is measured in the same run on the same server, two ways: bare unordered
bulks of inserts and of replaces into a collection with only ``_id`` (before the workers start),
and the workers' own stored documents copied into scratch collections with the catalogue's
indexes, inserted and then replaced (after they stop). Each is weighted by the mix of inserts
and rewrites per collection the workers made: ``store_ceiling_docs_per_s`` is what the store
alone could write of that mix with the indexes (``store_bare_ceiling_docs_per_s`` without), and
``ceiling_ratio`` = records/s * document writes per record / that ceiling.

Where the time went: the workers' CPU per record, the whole machine's CPU use, and the workers'
seconds per batch stage (their ``stage_seconds_total``), all over the first sync.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import ReplaceOne

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baseline import store_ceiling
from benchmarks.dedupe_eval import records as world_records
from benchmarks.system import Proc, on_shared_stack, scratch_database, scratch_topics, service_env
from deploy.local.stack import free_port
from deploy.sandbox import World
from shared.contracts import RawRecord, utc_now
from shared.kafka import make_producer
from shared.mongo import EVENTS, EXTERNAL_EVENTS, INDEXES
from shared.settings import KafkaSettings, MongoSettings

Metrics = dict[str, float]


async def worker_metrics(ports: Sequence[int]) -> Metrics:
    """The workers' own counters, summed: records by result, documents written by
    ``collection/kind``, batches."""
    found: Metrics = {}
    async with httpx.AsyncClient() as client:
        for port in ports:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            for line in text.splitlines():
                name, _, value = line.rpartition(" ")
                if name.startswith("marquee_normalizer_store_writes_total{"):
                    labels = dict(
                        part.split("=", 1) for part in name.split("{", 1)[1].rstrip("}").split(",")
                    )
                    key = f"{labels['collection'].strip(chr(34))}/{labels['kind'].strip(chr(34))}"
                elif name.startswith("marquee_normalizer_records_total{"):
                    key = "records/" + name.split('result="', 1)[1].split('"', 1)[0]
                elif name.startswith("marquee_normalizer_stage_seconds_total{"):
                    key = "stage/" + name.split('stage="', 1)[1].split('"', 1)[0]
                elif name == "marquee_normalizer_batch_seconds_count":
                    key = "batches"
                elif name == "marquee_normalizer_write_conflicts_total":
                    key = "conflicts"
                else:
                    continue
                found[key] = found.get(key, 0.0) + float(value)
    return found


TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pids: Sequence[int | None]) -> float:
    """CPU seconds (user + system) the processes used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        if pid is None:
            continue
        # Fields after the command name, which may hold spaces: utime and stime are 14 and 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, every core (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


async def indexed_ceiling(db: Any, sample: int, batch: int) -> dict[str, float]:
    """The store alone writing the workers' own documents with the catalogue's indexes.

    Up to ``sample`` stored documents of each collection are copied into scratch collections
    that carry the same indexes: bulk-inserted, then bulk-replaced, ``batch`` at a time, j=True.
    Returns documents/s per ``collection/kind``: what the store can do for this exact mix,
    index upkeep included (the bare ceiling above has only ``_id``)."""
    rates: dict[str, float] = {}
    for name in (EVENTS, EXTERNAL_EVENTS):
        docs = [d async for d in db[name].find({}).limit(sample)]
        scratch = db[f"ceiling_{name}"]
        await scratch.create_indexes(INDEXES[name])
        try:
            started = time.perf_counter()
            for i in range(0, len(docs), batch):
                await scratch.insert_many(docs[i : i + batch], ordered=False)
            rates[f"{name}/insert"] = len(docs) / (time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(0, len(docs), batch):
                # A rewrite changes the document (an identical one may cost the store nothing).
                ops = [
                    ReplaceOne({"_id": d["_id"]}, {**d, "updated_at": utc_now(), "rewritten": 1})
                    for d in docs[i : i + batch]
                ]
                await scratch.bulk_write(ops, ordered=False)
            rates[f"{name}/rewrite"] = len(docs) / (time.perf_counter() - started)
        finally:
            await scratch.drop()
    return rates


def delta(after: Metrics, before: Metrics) -> Metrics:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def stage_split(metrics: Metrics) -> dict[str, float]:
    """Seconds per batch stage (``stage/<name>`` keys), the largest first."""
    stages = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("stage/")}
    return dict(sorted(stages.items(), key=lambda kv: -kv[1]))


Encoded = list[tuple[bytes, bytes]]


def encode(records: Sequence[RawRecord]) -> Encoded:
    """(value, key) per record, serialized before the clock starts: the benchmark's own
    producer must not be what a phase's rate measures."""
    return [(raw.to_json_bytes(), raw.key().encode()) for raw in records]


async def send_all(kafka: KafkaSettings, topic: str, records: Encoded) -> float:
    producer = make_producer(kafka)
    await producer.start()
    try:
        started = time.perf_counter()
        for value, key in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def until_seen(
    workers: Sequence[Proc], ports: Sequence[int], start: Metrics, count: int, kinds: Sequence[str]
) -> Metrics:
    """Poll the workers' metrics until ``count`` more records of ``kinds`` were handled."""
    while True:
        for worker in workers:
            if not worker.alive:
                raise RuntimeError(f"worker exited; {worker.log}:\n{worker.tail()}")
        now = await worker_metrics(ports)
        if sum(delta(now, start).get(f"records/{k}", 0.0) for k in kinds) >= count:
            return now
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    mongo_settings = MongoSettings(url=env["MONGO_URL"])
    unique = uuid.uuid4().hex[:8]
    names = {k: f"bench.{k}.{unique}" for k in ("input", "changes", "dlq")}
    world = World(seed=42, events=args.events)
    raws = [raw for raw, _truth in world_records(world)][: args.records or None]
    size = sum(len(r.to_json_bytes()) for r in raws[:1000]) / min(len(raws), 1000)
    print(f"{len(raws):,} raw records, {size:,.0f} bytes on average", flush=True)

    # The ceiling, measured now on the same server: bare unordered bulk writes (j=True).
    insert, replace, _guarded = await store_ceiling(
        mongo_settings, f"ceiling_{unique}", args.ceiling, args.batch
    )
    database = f"bench_norm_{unique}"
    work = Path(tempfile.mkdtemp(prefix="bench-normalizer-"))
    ports = [free_port() for _ in range(args.workers)]
    workers = [
        Proc(
            f"normalizer-{i}",
            [sys.executable, "-m", "services.normalizer"],
            work / f"normalizer-{i}.log",
            env=service_env(
                env,
                NORMALIZER_APP_ID=f"bench-normalizer-{unique}",
                NORMALIZER_INPUT_TOPIC=names["input"],
                NORMALIZER_CHANGES_TOPIC=names["changes"],
                NORMALIZER_DLQ_TOPIC=names["dlq"],
                NORMALIZER_DATA_DIR=str(work / f"faust-{i}"),
                NORMALIZER_HTTP_PORT=str(port),
                NORMALIZER_BATCH_SIZE=str(args.batch),
                MONGO_DATABASE=database,
            ),
        )
        for i, port in enumerate(ports)
    ]
    async with (
        scratch_topics(kafka, list(names.values()), args.partitions),
        scratch_database(mongo_settings, database) as db,
    ):
        for worker in workers:
            worker.start()
        try:
            # Warm up: one record through each partition's owner, so group joins and start-up
            # are not in the figures.
            zero = await worker_metrics_when_up(workers, ports)
            await send_all(kafka, names["input"], encode(raws[:1]))
            base = await until_seen(workers, ports, zero, 1, ("written",))
            first = raws[1:]
            first_encoded = encode(first)
            cpu_before, machine_before = process_cpu_s([w.pid for w in workers]), machine_cpu()
            started = time.perf_counter()
            published = await send_all(kafka, names["input"], first_encoded)
            after_first = await until_seen(workers, ports, base, len(first), ("written",))
            first_s = time.perf_counter() - started
            worker_cpu = process_cpu_s([w.pid for w in workers]) - cpu_before
            machine_after = machine_cpu()
            machine_busy = (machine_after[0] - machine_before[0]) / (
                machine_after[1] - machine_before[1]
            )
            canonical = await db[EVENTS].count_documents({"duplicate_of": None})
            # The resolver's state is the store's: the blocks index and the members it reads.
            stats = await db.command("collStats", EVENTS)
            # The same payloads fetched again an hour later: each must be found unchanged.
            again = [
                r.model_copy(update={"fetched_at": r.fetched_at + timedelta(hours=1)}) for r in raws
            ]
            again_encoded = encode(again)
            cpu_before = process_cpu_s([w.pid for w in workers])
            started = time.perf_counter()
            await send_all(kafka, names["input"], again_encoded)
            after_again = await until_seen(
                workers, ports, after_first, len(again), ("unchanged", "stale")
            )
            again_s = time.perf_counter() - started
            again_cpu = process_cpu_s([w.pid for w in workers]) - cpu_before
        finally:
            for worker in workers:
                await worker.stop()
        # Workers stopped, so the store is measured alone.
        indexed = await indexed_ceiling(db, args.ceiling, args.batch)
    first_writes = delta(after_first, base)
    again_writes = delta(after_again, after_first)
    not_docs = ("records/", "stage/", "batches", "conflicts")
    docs = {k: v for k, v in first_writes.items() if not k.startswith(not_docs)}
    stages = stage_split(first_writes)
    inserts = sum(v for k, v in docs.items() if k.endswith("/insert"))
    rewrites = sum(v for k, v in docs.items() if k.endswith("/rewrite"))
    written = inserts + rewrites
    rate = len(first) / first_s
    per_record = written / len(first)
    # What the store alone needs for this mix of inserts and rewrites, as documents/s: with
    # the catalogue's indexes per collection and kind (bare rates for anything else written).
    store_s = sum(
        v / indexed.get(k, insert.rate if k.endswith("/insert") else replace.rate)
        for k, v in docs.items()
    )
    ceiling = written / store_s if store_s else insert.rate
    bare_s = inserts / insert.rate + rewrites / replace.rate
    bare = written / bare_s if bare_s else insert.rate
    again_docs = sum(v for k, v in again_writes.items() if not k.startswith(not_docs))
    summary = {
        "benchmark": "normalize",
        "events": args.events,
        "records": len(raws),
        "record_bytes_avg": round(size),
        "workers": args.workers,
        "batch": args.batch,
        "partitions": args.partitions,
        "publish_s": round(published, 2),
        "first_sync_s": round(first_s, 2),
        "records_per_s": round(rate),
        "canonical_events": canonical,
        "batches": round(first_writes.get("batches", 0)),
        "write_conflicts": round(first_writes.get("conflicts", 0)),
        "store_docs_written": {k: round(v) for k, v in sorted(docs.items())},
        "doc_writes_per_record": round(per_record, 3),
        "store_insert_docs_per_s": round(insert.rate),
        "store_replace_docs_per_s": round(replace.rate),
        "store_indexed_docs_per_s": {k: round(v) for k, v in sorted(indexed.items())},
        "store_ceiling_docs_per_s": round(ceiling),
        "ceiling_ratio": round(rate * per_record / ceiling, 3),
        "store_bare_ceiling_docs_per_s": round(bare),
        "bare_ceiling_ratio": round(rate * per_record / bare, 3),
        "unchanged_resync_s": round(again_s, 2),
        "unchanged_records_per_s": round(len(again) / again_s),
        "unchanged_docs_written": round(again_docs),
        "unchanged_worker_cpu_ms_per_record": round(again_cpu * 1000 / len(again), 3),
        "unchanged_stage_s": {k: round(v, 1) for k, v in stage_split(again_writes).items()},
        "state_blocks_index_bytes": int(stats.get("indexSizes", {}).get("blocks", 0)),
        "state_events_bytes": int(stats.get("size", 0)),
        # Where the first sync's time went: the workers' CPU, the whole machine's, and the
        # workers' batch time per stage (store and broker waits included), summed over workers.
        "worker_cpu_s": round(worker_cpu, 1),
        "worker_cpu_ms_per_record": round(worker_cpu * 1000 / len(first), 3),
        "machine_cpu_busy": round(machine_busy, 3),
        "stage_s": {k: round(v, 1) for k, v in stages.items()},
    }
    print(
        f"\npublished in {published:.1f}s; first sync of {len(first):,} records in {first_s:.1f}s"
    )
    print(
        f"{canonical:,} live canonical events; documents written: {summary['store_docs_written']}"
    )
    rows = [
        ("workers x batch", f"{args.workers} x {args.batch}"),
        ("first sync: records/s", f"{rate:,.0f}"),
        (
            "document writes per record",
            f"{per_record:.2f} ({inserts:,.0f} ins., {rewrites:,.0f} rewr.)",
        ),
        ("store ceiling for that mix, catalogue indexes, same run: docs/s", f"{ceiling:,.0f}"),
        ("store ceiling for that mix, _id only, same run: docs/s", f"{bare:,.0f}"),
        ("ceiling ratio: records/s * writes/record / ceiling", f"{summary['ceiling_ratio']:.2f}"),
        ("unchanged re-sync: records/s", f"{summary['unchanged_records_per_s']:,}"),
        ("unchanged re-sync: documents written", f"{again_docs:,.0f}"),
        ("first sync: worker CPU ms per record", f"{summary['worker_cpu_ms_per_record']:.2f}"),
        ("first sync: machine CPU busy (all cores)", f"{machine_busy:.0%}"),
    ]
    print("| measurement | value |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n| first sync stage | seconds (all workers) | share |\n|---|---:|---:|")
    busy = sum(stages.values()) or 1.0
    for stage, seconds in summary["stage_s"].items():
        print(f"| {stage} | {seconds:,.1f} | {stages[stage] / busy:.0%} |")
    return summary


async def worker_metrics_when_up(workers: Sequence[Proc], ports: Sequence[int]) -> Metrics:
    """The workers' metrics once every one answers (faust takes a few seconds to start)."""
    deadline = time.monotonic() + 120
    while True:
        for worker in workers:
            if not worker.alive:
                raise RuntimeError(f"worker exited; {worker.log}:\n{worker.tail()}")
        try:
            return await worker_metrics(ports)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000, help="sandbox world size")
    parser.add_argument(
        "--records", type=int, default=0, help="at most this many records (0: the whole world)"
    )
    parser.add_argument(
        "--ceiling", type=int, default=5_000, help="documents for each ceiling (per collection)"
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", type=int, default=1, help="worker processes, one group")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    summary = on_shared_stack(run, args)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
