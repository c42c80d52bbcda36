"""Baseline ceilings: Kafka produce/consume, MongoDB-wire bulk writes and indexed reads (3 KB)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.kafka import make_consumer, make_producer
from shared.mongo import Document, get_database, make_client, probe_capabilities, uses_index
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


def event_documents(n: int, seed: int = 7) -> list[Document]:
    """Per-source records as the store holds them, ~3 KB each, with the fields the read
    indexes cover (source + external_id unique; category + start)."""
    base = datetime(2027, 1, 1, tzinfo=UTC)
    docs = []
    for i, raw in enumerate(make_records(n, seed)):
        doc = orjson.loads(raw)
        docs.append(
            {
                "_id": f"ticketmaster:{doc['id']}",
                "source": "ticketmaster",
                "external_id": doc["id"],
                "category": CATEGORIES[i % len(CATEGORIES)],
                "start_utc": base + timedelta(minutes=37 * i),
                "version": 1,
                "payload": doc,
            }
        )
    return docs


CATEGORIES = ("music", "sports", "theatre", "comedy", "family", "meetup", "film", "festival")


async def timed_bulks(
    label: str, docs: Sequence[Document], batch: int, write: Any, note: str
) -> Figure:
    latencies = []
    started = time.perf_counter()
    for start in range(0, len(docs), batch):
        t = time.perf_counter()
        await write(docs[start : start + batch])
        latencies.append((time.perf_counter() - t) * 1000)
        if sys.stderr.isatty():  # a live progress line for people, nothing in captured logs
            print(f"  {label}: {start + batch}/{len(docs)}", end="\r", file=sys.stderr)
    return Figure(label, len(docs), time.perf_counter() - started, latencies, note)


async def write_figures(
    col: AsyncCollection[Document], docs: Sequence[Document], rewrites: int, batch: int
) -> list[Figure]:
    """Insert ``docs`` (new), ReplaceOne-upsert the first ``rewrites`` of them (they exist),
    then update the same with a version guard (``{_id, version: {$lt: v}}``, how every writer
    keeps an older update from overwriting a newer one): unordered bulks, j=True."""
    note = f"batch {batch}; latency per bulk"

    async def insert(chunk: Sequence[Document]) -> None:
        await col.insert_many(chunk, ordered=False)

    async def replace(chunk: Sequence[Document]) -> None:
        await col.bulk_write(
            [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in chunk], ordered=False
        )

    async def guarded(chunk: Sequence[Document]) -> None:
        await col.bulk_write(
            [
                UpdateOne(
                    {"_id": d["_id"], "version": {"$lt": 3}},
                    {"$set": {"payload": d["payload"], "version": 3}},
                )
                for d in chunk
            ],
            ordered=False,
        )

    some = [{**d, "version": 2} for d in docs[:rewrites]]
    figures = [
        await timed_bulks("mongo insert, new documents (j=True)", docs, batch, insert, note),
        await timed_bulks("mongo ReplaceOne upsert, existing (j=True)", some, batch, replace, note),
        await timed_bulks("mongo version-guarded UpdateOne (j=True)", some, batch, guarded, note),
    ]
    if await col.count_documents({"version": 3}) != len(some):
        raise RuntimeError("the guarded updates did not reach every document")
    return figures


async def store_ceiling(
    settings: MongoSettings, database: str, count: int, batch: int
) -> list[Figure]:
    """The store's write ceiling in a scratch database (dropped): insert, replace, guarded."""
    client = make_client(settings, appname="marquee-bench")
    try:
        col = get_database(client, settings, database)["bench_events"]
        return await write_figures(col, event_documents(count), count, batch)
    finally:
        await client.drop_database(database)
        await client.close()


async def mongo_figures(
    settings: MongoSettings, database: str, args: argparse.Namespace
) -> tuple[list[Figure], str]:
    """Write rates (``write_figures`` over ``--documents``, ``--rewrites`` of them rewritten),
    then indexed reads at that size, one at a time: ``find_one`` by (source, external_id)
    through the unique secondary index, and a page (category + start range, sorted by start,
    limit 20) through the compound index."""
    client = make_client(settings, appname="marquee-bench")
    db = get_database(client, settings, database)
    col = db["bench_events"]
    try:
        server = (await probe_capabilities(db)).server
        await col.create_indexes(
            [
                IndexModel([("source", 1), ("external_id", 1)], unique=True, name="source_id"),
                IndexModel([("category", 1), ("start_utc", 1)], name="category_start"),
            ]
        )
        docs = event_documents(args.documents)
        figures = await write_figures(col, docs, args.rewrites, args.batch)
        rng = random.Random(11)
        latencies = []
        started = time.perf_counter()
        for _ in range(args.reads):
            wanted = rng.choice(docs)
            t = time.perf_counter()
            found = await col.find_one(
                {"source": "ticketmaster", "external_id": wanted["external_id"]}
            )
            latencies.append((time.perf_counter() - t) * 1000)
            if found is None or found["_id"] != wanted["_id"]:
                raise RuntimeError(f"find_one by source + external_id missed {wanted['_id']}")
        figures.append(
            Figure(
                f"mongo find_one by source + external_id, {len(docs):,} docs",
                args.reads,
                time.perf_counter() - started,
                latencies,
                "unique secondary index; one at a time",
            )
        )
        first, last = docs[0]["start_utc"], docs[-1]["start_utc"]
        latencies = []
        started = time.perf_counter()
        for _ in range(args.reads):
            since = first + (last - first) * rng.random() * 0.9
            query = {
                "category": rng.choice(CATEGORIES),
                "start_utc": {"$gte": since, "$lt": since + timedelta(days=60)},
            }
            t = time.perf_counter()
            page = await col.find(query, {"payload": 0}).sort("start_utc", 1).limit(20).to_list()
            latencies.append((time.perf_counter() - t) * 1000)
            if len(page) != 20 or page != sorted(page, key=lambda d: d["start_utc"]):
                raise RuntimeError(f"a page answered {len(page)} documents, or out of order")
        elapsed = time.perf_counter() - started
        plan = await col.find(query).sort("start_utc", 1).limit(20).explain()
        if not uses_index(plan):
            raise RuntimeError("the page query was planned as a collection scan")
        figures.append(
            Figure(
                f"mongo page: category + start range, sort, limit 20, {len(docs):,} docs",
                args.reads,
                elapsed,
                latencies,
                "compound index (category, start_utc)",
            )
        )
    finally:
        await client.drop_database(database)
        await client.close()
    return figures, server


async def run(args: argparse.Namespace, kafka: str, mongo_url: str) -> tuple[list[Figure], str]:
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
        found, server = await mongo_figures(mongo_settings, f"bench_{uuid.uuid4().hex[:8]}", args)
        figures.extend(found)
    finally:
        await admin.delete_topics([topic])
        await admin.close()
    return figures, server


def summary(figures: Sequence[Figure], server: str, args: argparse.Namespace) -> dict[str, Any]:
    """The ``--json`` object (keys documented in docs/BENCHMARKS.md)."""
    produce, single, consume, insert, replace, guarded, find, page = figures
    return {
        "benchmark": "baseline",
        "store_server": server,
        "record_bytes": RECORD_BYTES,
        "batch": args.batch,
        "documents": args.documents,
        "kafka_produce_records_per_s": round(produce.rate),
        "kafka_produce_one_by_one_records_per_s": round(single.rate),
        "kafka_consume_records_per_s": round(consume.rate),
        "store_insert_docs_per_s": round(insert.rate),
        "store_replace_docs_per_s": round(replace.rate),
        "store_guarded_update_docs_per_s": round(guarded.rate),
        "store_find_secondary_p50_ms": round(find.percentile(50), 2),
        "store_find_secondary_p99_ms": round(find.percentile(99), 2),
        "store_page_p50_ms": round(page.percentile(50), 2),
        "store_page_p99_ms": round(page.percentile(99), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000, help="Kafka records (3 KB each)")
    parser.add_argument("--single", type=int, default=500, help="records sent one by one")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--documents", type=int, default=100_000, help="documents inserted, then read by index"
    )
    parser.add_argument(
        "--rewrites", type=int, default=10_000, help="of those, replaced then guarded-updated"
    )
    parser.add_argument("--reads", type=int, default=500, help="timed reads of each kind")
    parser.add_argument("--batch", type=int, default=500, help="operations per bulk write")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    with endpoints() as ends:
        print(f"servers: {ends.origin} (kafka {ends.kafka}, mongo {ends.mongo_url})", flush=True)
        figures, server = asyncio.run(run(args, ends.kafka, ends.mongo_url))
    print(
        f"\nmachine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, record size {RECORD_BYTES} B; store: {server}"
    )
    print("| measurement | records | records/s | MB/s | p50 ms | p99 ms | notes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for figure in figures:
        print(figure.row())
    produce, single = figures[0], figures[1]
    print(f"\npipelined / one-by-one produce: {produce.rate / single.rate:.1f}x")
    if args.json:
        print(json.dumps(summary(figures, server, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
