"""Baseline ceilings: Kafka produce/consume and MongoDB-wire bulk upserts of 3 KB JSON records."""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import UpdateOne

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.kafka import make_consumer, make_producer
from shared.mongo import get_database, make_client
from shared.settings import KafkaSettings, MongoSettings
from tests.stack import endpoints

RECORD_BYTES = 3 * 1024


@dataclass
class Figure:
    name: str
    count: int
    seconds: float
    latencies_ms: list[float]
    note: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    def row(self) -> str:
        mb = self.rate * RECORD_BYTES / 1e6
        return (
            f"| {self.name} | {self.count:,} | {self.rate:,.0f} | {mb:,.1f} "
            f"| {self.percentile(50):.1f} | {self.percentile(99):.1f} | {self.note} |"
        )


def make_records(n: int, seed: int = 7) -> list[bytes]:
    """Event-shaped JSON documents padded to 3 KB, like a Ticketmaster event record."""
    out = []
    for i in range(n):
        doc: dict[str, Any] = {
            "id": f"bench{seed}-{i:08d}",
            "name": f"Benchmark Live {i}",
            "type": "event",
            "dates": {"start": {"localDate": "2027-03-14", "localTime": "20:00:00"}},
            "_embedded": {"venues": [{"name": "Hall", "city": {"name": "Berlin"}}]},
            "info": "",
        }
        raw = orjson.dumps(doc)
        doc["info"] = "x" * (RECORD_BYTES - len(raw))
        out.append(orjson.dumps(doc))
    return out


async def kafka_produce(settings: KafkaSettings, topic: str, records: Sequence[bytes]) -> Figure:
    """Pipelined sends (the producer batches them); latency = send to broker ack per record."""
    producer = make_producer(settings)
    await producer.start()
    latencies: list[float] = []

    def done(started: float) -> Any:
        return lambda _: latencies.append((time.perf_counter() - started) * 1000)

    try:
        started = time.perf_counter()
        pending = []
        for i, value in enumerate(records):
            sent = time.perf_counter()
            fut = await producer.send(topic, value, key=f"k{i}".encode())
            fut.add_done_callback(done(sent))
            pending.append(fut)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return Figure("kafka produce (acks=all, idempotent)", len(records), elapsed, latencies)


async def kafka_produce_one_by_one(
    settings: KafkaSettings, topic: str, records: Sequence[bytes]
) -> Figure:
    """send_and_wait per record: the round-trip cost a caller pays when it does not pipeline."""
    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    latencies = []
    try:
        started = time.perf_counter()
        for i, value in enumerate(records):
            t = time.perf_counter()
            await producer.send_and_wait(topic, value, key=f"s{i}".encode())
            latencies.append((time.perf_counter() - t) * 1000)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return Figure("kafka produce, send_and_wait each", len(records), elapsed, latencies)


async def kafka_consume(settings: KafkaSettings, topic: str, expected: int) -> Figure:
    """getmany batches of 500 from the start, committing after each batch (as services do)."""
    consumer = make_consumer(settings, topic, group_id=f"bench-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    latencies = []
    seen = 0
    try:
        await consumer.seek_to_beginning()
        started = time.perf_counter()
        while seen < expected:
            t = time.perf_counter()
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value or b"null")
                seen += len(records)
            if batches:
                await consumer.commit()
                latencies.append((time.perf_counter() - t) * 1000)
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"consumed only {seen} of {expected} records in 300s")
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return Figure(
        "kafka consume (getmany 500, commit per batch)",
        seen,
        elapsed,
        latencies,
        "latency = one getmany + commit",
    )


async def mongo_upserts(
    settings: MongoSettings, database: str, records: Sequence[bytes], batch: int
) -> list[Figure]:
    """Unordered bulk upserts by key with j=True: first pass inserts, second pass updates."""
    client = make_client(settings, appname="marquee-bench")
    db = get_database(client, settings, database)
    col = db["bench_events"]
    figures = []
    try:
        await col.drop()
        docs = [orjson.loads(r) for r in records]
        passes = (
            (1, "new documents, filter _id", False),
            (2, "existing documents, filter _id", False),
            (3, "existing documents, filter _id + version guard", True),
        )
        for version, label, guarded in passes:
            latencies = []
            started = time.perf_counter()
            for start in range(0, len(docs), batch):
                ops = [
                    UpdateOne(
                        # The guard is how writers keep an older update from overwriting a
                        # newer one: the filter then matches nothing for a stale version.
                        {"_id": d["id"], "version": {"$lt": version}}
                        if guarded
                        else {"_id": d["id"]},
                        {"$set": {**d, "version": version}},
                        upsert=not guarded,
                    )
                    for d in docs[start : start + batch]
                ]
                t = time.perf_counter()
                await col.bulk_write(ops, ordered=False)
                latencies.append((time.perf_counter() - t) * 1000)
                print(f"  {label}: {start + len(ops)}/{len(docs)}", end="\r", flush=True)
            elapsed = time.perf_counter() - started
            if await col.count_documents({"version": version}) != len(docs):
                raise RuntimeError(f"bulk upsert of {label} did not write every document")
            figures.append(
                Figure(
                    f"mongo unordered bulk upsert, {label} (j=True)",
                    len(docs),
                    elapsed,
                    latencies,
                    f"batch {batch}; latency per bulk",
                )
            )
    finally:
        await client.drop_database(database)
        await client.close()
    return figures


async def run(args: argparse.Namespace, kafka: str, mongo_url: str) -> list[Figure]:
    kafka_settings = KafkaSettings(bootstrap_servers=kafka, client_id="marquee-bench")
    mongo_settings = MongoSettings(url=mongo_url)
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    await admin.create_topics([NewTopic(topic, args.partitions, 1)])
    records = make_records(args.records)
    figures = []
    try:
        gc.freeze()  # the generated records live for the whole run; keep the GC off them
        figures.append(await kafka_produce(kafka_settings, topic, records))
        figures.append(
            await kafka_produce_one_by_one(kafka_settings, topic, records[: args.single])
        )
        figures.append(await kafka_consume(kafka_settings, topic, len(records) + args.single))
        figures.extend(
            await mongo_upserts(
                mongo_settings, f"bench_{uuid.uuid4().hex[:8]}", records[: args.mongo], args.batch
            )
        )
    finally:
        await admin.delete_topics([topic])
        await admin.close()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000, help="Kafka records (3 KB each)")
    parser.add_argument("--single", type=int, default=500, help="records sent one by one")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--mongo", type=int, default=5_000, help="documents for bulk upserts")
    parser.add_argument("--batch", type=int, default=500, help="operations per bulk write")
    args = parser.parse_args(argv)
    with endpoints() as ends:
        print(f"servers: {ends.origin} (kafka {ends.kafka}, mongo {ends.mongo_url})", flush=True)
        figures = asyncio.run(run(args, ends.kafka, ends.mongo_url))
    print(
        f"\nmachine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, record size {RECORD_BYTES} B"
    )
    print("| measurement | records | records/s | MB/s | p50 ms | p99 ms | notes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for figure in figures:
        print(figure.row())
    produce, single = figures[0], figures[1]
    print(f"\npipelined / one-by-one produce: {produce.rate / single.rate:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
