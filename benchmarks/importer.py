"""Importer throughput and request-to-result latency through the real stack (one worker).

Seeds a catalogue shaped like the normalizer's output, starts ``python -m services.importer``
on its own topics and database, then (1) sends ``--burst`` import requests at once and
(2) sends ``--paced`` more at ``--rate`` per second. Latency is measured in this process from
handing a request to the producer to reading its result on ``import.results``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.system import (
    Proc,
    on_shared_stack,
    pct,
    say,
    scratch_database,
    scratch_topics,
    service_env,
)
from shared.cloudevents import ce_headers
from shared.contracts import ImportRequest, ImportResult, ImportStatus
from shared.kafka import make_producer
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_importer_pipeline import catalogue, seed


class Results:
    """Reads import.results and stamps when each request id is first answered."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=f"bench-results-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.seen: dict[str, tuple[float, ImportResult]] = {}

    async def run(self) -> None:
        while True:
            for batch in (await self.consumer.getmany(timeout_ms=200)).values():
                now = time.perf_counter()
                for record in batch:
                    result = ImportResult.model_validate_json(record.value or b"")
                    self.seen.setdefault(result.request_id, (now, result))

    async def wait(self, ids: set[str], seconds: float, worker: Proc) -> None:
        deadline = time.monotonic() + seconds
        while not ids <= set(self.seen):
            if not worker.alive or time.monotonic() > deadline:
                missing = len(ids - set(self.seen))
                raise SystemExit(f"gave up: {missing} results missing; see {worker.log}")
            await asyncio.sleep(0.05)


async def phase(
    name: str,
    reqs: list[ImportRequest],
    rate: float | None,
    producer: AIOKafkaProducer[bytes, bytes],
    topic: str,
    results: Results,
    worker: Proc,
) -> dict[str, Any]:
    sent: dict[str, float] = {}
    started = time.perf_counter()
    pending = []
    for i, req in enumerate(reqs):
        if rate:
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        sent[req.request_id] = time.perf_counter()
        pending.append(
            await producer.send(
                topic, req.to_json_bytes(), key=req.key().encode(),
                headers=ce_headers(req, "/bench"),
            )
        )  # fmt: skip
    await asyncio.gather(*pending)
    await results.wait(set(sent), 600, worker)
    done = [results.seen[i] for i in sent]
    latencies = [(t - sent[i]) * 1000 for i, (t, _r) in zip(sent, done, strict=True)]
    imported = sum(1 for _t, r in done if r.status is ImportStatus.IMPORTED)
    elapsed = max(t for t, _r in done) - started
    print(
        f"{name:<28} {len(reqs):>6,} {imported:>8,} {len(reqs) / elapsed:>10,.0f} "
        f"{statistics.median(latencies):>9,.0f} {pct(latencies, 0.95):>9,.0f} "
        f"{max(latencies):>9,.0f}",
        flush=True,
    )
    return {
        "requests": len(reqs),
        "imported": imported,
        "imports_per_s": round(len(reqs) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(pct(latencies, 0.95), 1),
        "max_ms": round(max(latencies), 1),
    }


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    mongo_settings = MongoSettings(url=env["MONGO_URL"])
    unique = uuid.uuid4().hex[:8]
    names = {k: f"bench.imp.{k}.{unique}" for k in ("requests", "results", "notifications")}
    database = f"bench_imp_{unique}"
    async with (
        scratch_topics(kafka, list(names.values()), args.partitions),
        scratch_database(mongo_settings, database) as db,
    ):
        total = args.burst + args.paced + 1
        cat = catalogue(total, prefix=unique[:4])
        started = time.perf_counter()
        await seed(db, cat)
        seed_s = time.perf_counter() - started
        print(f"seeded {len(cat.externals):,} per-source and {total:,} canonical events "
              f"in {seed_s:.1f} s", flush=True)  # fmt: skip
        log = Path(tempfile.mkdtemp(prefix="bench-importer-")) / "importer.log"
        say(f"importer log: {log}")
        worker = Proc(
            "importer",
            [sys.executable, "-m", "services.importer"],
            log,
            env=service_env(
                env,
                MONGO_DATABASE=database,
                IMPORTER_REQUESTS_TOPIC=names["requests"],
                IMPORTER_RESULTS_TOPIC=names["results"],
                IMPORTER_NOTIFICATIONS_TOPIC=names["notifications"],
                IMPORTER_GROUP_ID=f"bench-importer-{unique}",
                IMPORTER_UPDATES_ENABLED="false",
                IMPORTER_HTTP_PORT="0",
                IMPORTER_BATCH_SIZE=str(args.batch),
                IMPORTER_LOG_LEVEL="WARNING",
            ),
        )
        worker.start()
        producer = make_producer(kafka)
        await producer.start()
        results = Results(kafka, names["results"])
        await results.consumer.start()
        reader = asyncio.create_task(results.run())
        try:
            reqs = [
                ImportRequest(canonical_id=c.id, requested_by=f"org-{i % 50}")
                for i, c in enumerate(cat.canonicals)
            ]
            warm = reqs[0]  # the worker has joined its group and answered once: start the clock
            await producer.send_and_wait(
                names["requests"], warm.to_json_bytes(), key=warm.key().encode()
            )
            await results.wait({warm.request_id}, 120, worker)
            print(f"{'phase':<28} {'sent':>6} {'imported':>8} {'imports/s':>10} "
                  f"{'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")  # fmt: skip
            burst = reqs[1 : 1 + args.burst]
            label = f"burst ({args.burst:,} at once)"
            burst_figures = await phase(
                label, burst, None, producer, names["requests"], results, worker
            )
            paced_figures: dict[str, Any] = {}
            if args.paced:
                paced = reqs[1 + args.burst :]
                label = f"paced ({args.rate:g}/s)"
                paced_figures = await phase(
                    label, paced, args.rate, producer, names["requests"], results, worker
                )
        finally:
            reader.cancel()
            await results.consumer.stop()
            await producer.stop()
            await worker.stop()
    summary: dict[str, Any] = {
        "benchmark": "importer",
        "batch": args.batch,
        "partitions": args.partitions,
        "seeded_records": len(cat.externals),
        "seeded_canonical_events": total,
        "seed_s": round(seed_s, 2),
        "paced_target_per_s": args.rate,
    }
    for name, figures in (("burst", burst_figures), ("paced", paced_figures)):
        for key in ("requests", "imported", "imports_per_s", "p50_ms", "p95_ms", "max_ms"):
            summary[f"{name}_{key}"] = figures.get(key)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=2000, help="requests sent at once")
    parser.add_argument("--paced", type=int, default=1000, help="requests sent at --rate")
    parser.add_argument("--rate", type=float, default=50.0, help="paced requests per second")
    parser.add_argument("--batch", type=int, default=500, help="IMPORTER_BATCH_SIZE")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    summary = on_shared_stack(run, args)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
