"""Normalizer throughput: raw.events → catalogue through one faust worker, vs the store ceiling."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baseline import store_ceiling
from benchmarks.dedupe_eval import records as world_records
from benchmarks.system import Proc, on_shared_stack, scratch_database, scratch_topics, service_env
from deploy.local.stack import free_port
from deploy.sandbox import World
from shared.kafka import make_producer
from shared.mongo import EVENTS, EXTERNAL_EVENTS
from shared.settings import KafkaSettings, MongoSettings


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    mongo_settings = MongoSettings(url=env["MONGO_URL"])
    unique = uuid.uuid4().hex[:8]
    names = {k: f"bench.{k}.{unique}" for k in ("input", "changes", "dlq")}
    world = World(seed=42, events=args.events)
    raws = [raw for raw, _truth in world_records(world)][: args.records]
    payloads = [r.to_json_bytes() for r in raws]
    size = sum(len(p) for p in payloads) / len(payloads)
    print(f"{len(raws):,} raw records, {size:,.0f} bytes on average", flush=True)

    # The ceiling, measured now on the same server: bare unordered bulk writes (j=True).
    ceiling = await store_ceiling(mongo_settings, f"ceiling_{unique}", args.ceiling, args.batch)
    database = f"bench_norm_{unique}"
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-normalizer-"))
    worker = Proc(
        "normalizer",
        [sys.executable, "-m", "services.normalizer"],
        work / "normalizer.log",
        env=service_env(
            env,
            NORMALIZER_APP_ID=f"bench-normalizer-{unique}",
            NORMALIZER_INPUT_TOPIC=names["input"],
            NORMALIZER_CHANGES_TOPIC=names["changes"],
            NORMALIZER_DLQ_TOPIC=names["dlq"],
            NORMALIZER_DATA_DIR=str(work / "faust"),
            NORMALIZER_HTTP_PORT=str(port),
            NORMALIZER_BATCH_SIZE=str(args.batch),
            MONGO_DATABASE=database,
        ),
    )
    producer = make_producer(kafka)
    async with (
        scratch_topics(kafka, list(names.values()), args.partitions),
        scratch_database(mongo_settings, database) as db,
    ):
        await producer.start()
        worker.start()
        try:
            # Warm up: one record through, so group join and start-up are not in the figure.
            await producer.send_and_wait(names["input"], payloads[0], key=raws[0].key().encode())
            for _ in range(240):
                if await db[EXTERNAL_EVENTS].count_documents({}) >= 1:
                    break
                await asyncio.sleep(0.5)
            started = time.perf_counter()
            for raw, value in zip(raws[1:], payloads[1:], strict=True):
                await producer.send(names["input"], value, key=raw.key().encode())
            await producer.flush()
            published = time.perf_counter() - started
            done = 0
            while done < len(raws):
                if not worker.alive:
                    raise RuntimeError(f"worker exited; {worker.log}:\n{worker.tail()}")
                # Poll gently: the count competes with the worker for the same two cores.
                await asyncio.sleep(2)
                done = await db[EXTERNAL_EVENTS].count_documents({})
            seconds = time.perf_counter() - started
            canonical = await db[EVENTS].count_documents({})
            writes = await store_writes(port)
        finally:
            await worker.stop()
            await producer.stop()
    rate = (done - 1) / seconds
    new_docs = ceiling[0].rate
    batches = writes.pop("batches", 0.0)
    written = sum(writes.values())
    print(f"\npublished in {published:.1f}s; normalized {done - 1:,} records in {seconds:.1f}s")
    print(f"{canonical:,} canonical events from {done:,} records in {batches:,.0f} batches")
    print("documents the worker wrote: " + ", ".join(f"{k} {v:,.0f}" for k, v in writes.items()))
    print("| measurement | per second |")
    print("|---|---:|")
    print(f"| normalizer, one worker (faust, batch {args.batch}): records | {rate:,.0f} |")
    print(f"| normalizer: documents written to the store | {written / seconds:,.0f} |")
    print(f"| store ceiling: bulk upsert of new documents, same run | {new_docs:,.0f} |")
    # Each record costs the store more than one document (per-source, canonical, blocks):
    # the store's share of the work is documents written, compared with what it can take.
    print(
        f"records/s ÷ ceiling: {rate / new_docs:.2f}; documents/s ÷ ceiling: "
        f"{written / seconds / new_docs:.2f} ({written / max(done, 1):.2f} documents per record)"
    )
    return {
        "benchmark": "normalize",
        "records": len(raws),
        "record_bytes_avg": round(size),
        "batch": args.batch,
        "partitions": args.partitions,
        "publish_s": round(published, 2),
        "normalized_records": done - 1,
        "normalize_s": round(seconds, 2),
        "canonical_events": canonical,
        "batches": round(batches),
        "store_docs_written": {k: round(v) for k, v in writes.items()},
        "normalizer_records_per_s": round(rate),
        "normalizer_store_docs_per_s": round(written / seconds),
        "store_ceiling_insert_docs_per_s": round(new_docs),
        "records_to_ceiling_ratio": round(rate / new_docs, 3),
        "docs_to_ceiling_ratio": round(written / seconds / new_docs, 3),
        "docs_per_record": round(written / max(done, 1), 3),
    }


async def store_writes(port: int) -> dict[str, float]:
    """The worker's own count of documents written, per collection (from /metrics)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("marquee_normalizer_store_writes_total{"):
            collection = line.split('collection="', 1)[1].split('"', 1)[0]
            found[collection] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("marquee_normalizer_batch_seconds_count "):
            found["batches"] = float(line.rsplit(" ", 1)[1])
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="sandbox world size")
    parser.add_argument("--records", type=int, default=20_000, help="raw records to normalize")
    parser.add_argument("--ceiling", type=int, default=5_000, help="documents for the ceiling")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    summary = on_shared_stack(run, args)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
