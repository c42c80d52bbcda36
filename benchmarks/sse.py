"""Change stream benchmark: one API process holds ``--conns`` idle Server-Sent Events connections
(``GET /events/stream``) and delivers each change to all of them.

Starts ``python -m services.api`` on loopback against the store of the local stack (or the
servers named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGO_URL`` / ``S3_ENDPOINT_URL``), in a database
of its own, opens the connections from this process (plain asyncio sockets, one event loop),
lets them idle, then writes ``--changes`` canonical events one every ``--every`` seconds as the
normalizer does (``updated_at`` stamped just before the write) and records when each connection
reads each change. Delivery latency = receipt - stamp, per connection and change.

Prints connections held, p50/p95/p99/max latency, how many deliveries were missing, the API's
RSS and CPU (idle with every connection open, and while delivering). ``--json``: the last line
is one JSON object. Issue 16's goal: 1,000 connections, p99 ≤ 1 s. The load generator shares the
machine's cores with the API and the store (``load_generator`` says how many).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.api import cpu_s, free_port, percentile, rss_mb
from services.api.auth import mint
from shared.contracts import CanonicalEvent, SourceRef, Venue, When
from shared.contracts.base import Provider
from shared.mongo import EVENTS, ensure_indexes, get_database, make_client
from shared.search import with_search_fields
from shared.settings import MongoSettings
from tests.stack import ROOT, endpoints

SECRET = "bench-sse-secret-0123456789abcdef0123456789"  # noqa: S105 - a local test key


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def change_doc(n: int, run: str) -> dict[str, Any]:
    start = datetime(2030, 1, 1, 20, tzinfo=UTC)
    event = CanonicalEvent(
        id=f"{run}-{n:05d}",
        title=f"Benchmark show {n}",
        category="music",
        subcategory="rock",
        start=When(utc=start, local="2030-01-01T20:00:00", timezone="UTC"),
        venue=Venue(name="Vertex Arena", city="Nashville", country="US", lat=36.16, lon=-86.78),
        version=1,
        sources=[SourceRef(source=Provider.TICKETMASTER, external_id=f"{run}-{n}")],
        updated_at=datetime.now(UTC),
    )
    doc = event.to_document()
    with_search_fields([doc])
    return doc


class Conn:
    """One SSE connection: the ids it read, with when."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.open = False
        self.error: str | None = None

    async def run(self, port: int, token: str, ready: asyncio.Event) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as err:
            self.error = str(err)
            ready.set()
            return
        writer.write(
            (
                f"GET /events/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                self.error = head.split(b"\r\n", 1)[0].decode()
                return
            self.open = True
            ready.set()
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                now = time.time()
                for line in chunk.split(b"\n"):
                    # Chunked transfer: each "id: ms~key" line is whole inside one write.
                    if line.startswith(b"id: "):
                        key = line[4:].split(b"~", 1)[1].decode()
                        self.received.setdefault(key, now)
        except (OSError, asyncio.IncompleteReadError) as err:
            self.error = repr(err)
        finally:
            self.open = False
            ready.set()
            writer.close()


def start_api(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.api"], cwd=ROOT, env=env, stdout=out, stderr=out
        )


async def run(args: argparse.Namespace, env: dict[str, str], origin: str) -> dict[str, Any]:
    database = f"bench_sse_{os.getpid()}"
    mongo = MongoSettings(url=env["MONGO_URL"])
    client = make_client(mongo)
    db = get_database(client, mongo, database)
    await ensure_indexes(db)
    port = free_port()
    api_env = {
        **os.environ,
        **env,
        "MARQUEE_ENV": "test",
        "ENABLE_AUTO_SYNC": "false",
        "MONGO_DATABASE": database,
        "API_HTTP_PORT": str(port),
        "API_JWT_SECRET": SECRET,
        "API_RATE_LIMIT_PER_MINUTE": "0",
        "API_ACCESS_LOG": "false",
        "API_STREAM_MAX_CLIENTS": str(max(2000, args.conns + 10)),
        "API_REPLY_TOPIC": f"api.replies.bench-sse-{os.getpid()}",
        "API_LOG_LEVEL": "WARNING",
    }
    log = Path(args.log)
    proc = start_api(api_env, log)
    conns = [Conn() for _ in range(args.conns)]
    tasks: list[asyncio.Task[None]] = []
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the API exited: see {log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the API was not ready: see {log}")
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        rss_start = rss_mb(proc.pid)
        token = mint("bench", "user", secret=SECRET, ttl_s=3600)
        opened = time.monotonic()
        for i in range(0, len(conns), 100):  # in steps, as clients would arrive
            batch = conns[i : i + 100]
            events = [asyncio.Event() for _ in batch]
            tasks += [
                asyncio.create_task(c.run(port, token, e))
                for c, e in zip(batch, events, strict=True)
            ]
            await asyncio.gather(*(e.wait() for e in events))
        open_s = time.monotonic() - opened
        held = sum(c.open for c in conns)
        errors = [c.error for c in conns if c.error][:5]
        say(f"{held} of {len(conns)} connections open in {open_s:.1f} s {errors or ''}")
        # Idle: what holding them costs.
        cpu0 = cpu_s(proc.pid)
        await asyncio.sleep(args.idle)
        idle_cpu = (cpu_s(proc.pid) - cpu0) / args.idle
        rss_idle = rss_mb(proc.pid)
        # Changes, one every --every seconds, stamped as the normalizer stamps them.
        run_id = f"b{os.getpid()}"
        written: dict[str, float] = {}
        cpu1 = cpu_s(proc.pid)
        started = time.monotonic()
        for n in range(args.changes):
            doc = change_doc(n, run_id)
            written[str(doc["_id"])] = doc["updated_at"].timestamp()
            await db[EVENTS].insert_one(doc)
            await asyncio.sleep(args.every)
        wanted = set(written)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(wanted <= set(c.received) for c in conns if c.open):
                break
            await asyncio.sleep(0.2)
        busy_s = time.monotonic() - started
        delivery_cpu = (cpu_s(proc.pid) - cpu1) / busy_s
        rss_end = rss_mb(proc.pid)
        latencies = [c.received[k] - written[k] for c in conns for k in written if k in c.received]
        expected = held * len(written)
        missing = expected - len(latencies)
        still = sum(c.open for c in conns)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await client.drop_database(database)
        await client.close()
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(percentile(latencies, q) * 1000, 1) if latencies else None

    summary = {
        "benchmark": "sse",
        "connections": args.conns,
        "connections_held": held,
        "connections_open_at_end": still,
        "open_s": round(open_s, 2),
        "changes": len(written),
        "every_s": args.every,
        "deliveries": len(latencies),
        "deliveries_missing": missing,
        "latency_ms_p50": pct(50),
        "latency_ms_p95": pct(95),
        "latency_ms_p99": pct(99),
        "latency_ms_max": round(latencies[-1] * 1000, 1) if latencies else None,
        "goal_p99_ms": 1000,
        "goal_met": bool(latencies) and missing == 0 and (pct(99) or 1e9) <= 1000,
        "api_rss_mb_start": round(rss_start, 1),
        "api_rss_mb_idle": round(rss_idle, 1),
        "api_rss_mb_end": round(rss_end, 1),
        "api_cpu_idle_cores": round(idle_cpu, 3),
        "api_cpu_delivering_cores": round(delivery_cpu, 3),
        "load_generator": f"this process, one asyncio loop, same {os.cpu_count()} cores",
        "stack": origin,
    }
    say(
        f"held {held}, {len(latencies)} deliveries ({missing} missing); latency p50 "
        f"{pct(50)} ms, p95 {pct(95)} ms, p99 {pct(99)} ms, max {summary['latency_ms_max']} ms;"
        f" API RSS {rss_idle:.0f} MB idle, CPU {idle_cpu:.2f} idle / {delivery_cpu:.2f} cores"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conns", type=int, default=1000, help="SSE connections held")
    parser.add_argument("--changes", type=int, default=20, help="changes written")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between changes")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before changes")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "bench-sse.log"))
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with endpoints() as found, asyncio.Runner(loop_factory=loop_factory) as runner:
        summary = runner.run(run(args, found.env(), found.origin))
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
