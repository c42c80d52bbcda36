"""API load benchmark: detail at a fixed rate and 20-result search at the maximum rate.

Seeds (or reuses) a catalogue of ``--events`` per-source records in a dedicated database and
a compacted canonical topic (``benchmarks/api_store.py``), starts ``python -m services.api``
on loopback (one uvicorn process), waits until its read model is loaded, then measures:

* detail ``GET /external-events/{source}/{id}`` at ``--rate`` req/s, open loop (latency counted
  from each request's scheduled time, so a stall is not hidden), from an asyncio generator;
* search ``GET /external-events/search?q=…&limit=20`` at the maximum rate, with ``wrk``
  (a Lua script rotates the queries) when it is installed, else the asyncio generator.

The generator shares the machine's cores with the API (and Kafka and the store, idle by then).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.api_store import CITIES, PROVIDERS, WORDS, seed
from services.api.auth import mint
from shared.mongo import EXTERNAL_EVENTS, get_database, make_client
from shared.settings import KafkaSettings, MongoSettings
from tests.stack import ROOT, endpoints

SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 - loopback-only benchmark


@dataclass
class Figure:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    def row(self) -> str:
        return (
            f"| {self.name} | {self.requests:,} | {self.rate:,.0f} | {self.pct(50):.1f} | "
            f"{self.pct(95):.1f} | {self.pct(99):.1f} | {self.errors} |"
        )

    def summary(self, prefix: str) -> dict[str, Any]:
        """This figure's ``--json`` keys (a percentile without samples is null)."""

        def ms(q: float) -> float | None:
            value = self.pct(q)
            return None if math.isnan(value) else round(value, 2)

        return {
            f"{prefix}_requests": self.requests,
            f"{prefix}_req_per_s": round(self.rate, 1),
            f"{prefix}_p50_ms": ms(50),
            f"{prefix}_p95_ms": ms(95),
            f"{prefix}_p99_ms": ms(99),
            f"{prefix}_errors": self.errors,
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def sample_keys(mongo: MongoSettings, database: str, events: int, n: int) -> list[str]:
    """Existing record keys, found by ``_id`` lookups of candidate keys."""
    rng = random.Random(3)
    client = make_client(mongo)
    db = get_database(client, mongo, database)
    found: list[str] = []
    try:
        while len(found) < n:
            numbers = [rng.randrange(1, int(events * 0.75)) for _ in range(250)]
            wanted = [f"{p.value}:b{k:07d}{p.value[:2]}" for k in numbers for p in PROVIDERS]
            docs = db[EXTERNAL_EVENTS].find({"_id": {"$in": wanted}}, {"_id": 1})
            found += [str(d["_id"]) async for d in docs]
    finally:
        await client.close()
    return found[:n]


def search_paths(n: int, seed_: int = 5) -> list[str]:
    rng = random.Random(seed_)
    paths = []
    for i in range(n):
        words = [rng.choice(WORDS)]
        if i % 3 == 0:
            words.append(rng.choice(WORDS))
        path = f"/external-events/search?q={'+'.join(words)}&limit=20"
        if i % 4 == 1:
            path += "&location=" + rng.choice(CITIES)[0].replace(" ", "+")
        if i % 5 == 2:
            path += "&date_from=2026-12-15&date_to=2027-01-31"
        if i % 7 == 3:
            path += "&source=" + rng.choice(PROVIDERS).value
        paths.append(path)
    return paths


async def open_loop(
    port: int, token: str, paths: Sequence[str], rate: float, seconds: float, conns: int = 64
) -> Figure:
    """Requests scheduled at a fixed rate over keep-alive connections (raw HTTP/1.1)."""
    queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0
    auth = f"Authorization: Bearer {token}\r\n"

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            scheduled, path = await queue.get()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode("latin-1"))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - scheduled) * 1000)
            if status != 200:
                errors += 1
            queue.task_done()

    workers = [asyncio.create_task(connection()) for _ in range(conns)]
    started = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        at = started + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((at, paths[i % len(paths)]))
    await queue.join()
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.cancel()
    return Figure("", total, elapsed, latencies, errors)


WRK_SCRIPT = """
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local i = 0
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%f %%f %%f %%f %%d\\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def wrk_search(port: int, token: str, paths: list[str], seconds: int, conns: int) -> Figure:
    folder = Path(tempfile.mkdtemp(prefix="bench-api-"))
    (folder / "paths.txt").write_text("\n".join(paths) + "\n")
    script = folder / "search.lua"
    script.write_text(WRK_SCRIPT % {"paths": folder / "paths.txt", "token": token})
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    _, n, secs, p50, p95, p99, errors = line.split()
    figure = Figure("", int(n), float(secs), [], int(errors))
    figure.pct = lambda q: {50: float(p50), 95: float(p95), 99: float(p99)}[int(q)]  # type: ignore[method-assign]
    return figure


def start_api(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.api"], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    mongo = MongoSettings(url=env["MONGO_URL"])
    database = f"bench_api_{args.events}"
    topic = f"bench.api.canonical.{args.events}"
    client = make_client(mongo)
    try:
        seeded = await seed(get_database(client, mongo, database), kafka, topic, args.events)
    finally:
        await client.close()
    port = free_port()
    unique = f"{os.getpid()}"
    api_env = {
        **os.environ,
        **env,
        "MARQUEE_ENV": "test",
        "MONGO_DATABASE": database,
        "API_HTTP_PORT": str(port),
        "API_JWT_SECRET": SECRET,
        "API_CANONICAL_TOPIC": topic,
        "API_REPLY_TOPIC": f"bench.api.replies.{unique}",
        "API_RATE_LIMIT_PER_MINUTE": "0",
        "API_CACHE_DURATION_MINUTES": str(args.cache_minutes),
        "API_LOG_LEVEL": "INFO",
        "API_EXPORT_DIR": tempfile.mkdtemp(prefix="bench-api-export-"),
    }
    log = Path(args.log)
    proc = start_api(api_env, log)
    token = mint("bench", "user", secret=SECRET, ttl_s=7200)
    try:
        started = time.monotonic()
        last = 0.0
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                assert proc.poll() is None, f"API exited: see {log}"
                try:
                    ready = await http.get(f"http://127.0.0.1:{port}/readyz")
                    state = ready.json().get("read_model", {})
                    if ready.status_code == 200:
                        break
                    if time.monotonic() - last > 30:
                        last = time.monotonic()
                        print(f"loading: {state.get('loaded')}", flush=True)
                except httpx.TransportError:
                    pass
                await asyncio.sleep(2)
        load_s = time.monotonic() - started
        ready_rss = rss_mb(proc.pid)
        print(f"API ready in {load_s:.0f}s, RSS {ready_rss:,.0f} MB", flush=True)
        keys = await sample_keys(mongo, database, args.events, 3000)
        detail_paths = [f"/external-events/{k.replace(':', '/', 1)}" for k in keys]
        paths = search_paths(500)
        # Warm-up: both paths once over, then a pause so the measurements start from quiet.
        await open_loop(port, token, detail_paths[:300] + paths[:300], 200, 3)
        await asyncio.sleep(2)
        detail = await open_loop(port, token, detail_paths, args.rate, args.seconds)
        detail.name = f"detail at {args.rate:.0f} req/s (open loop)"
        await asyncio.sleep(2)
        wrk = bool(shutil.which("wrk")) and not args.no_wrk
        if wrk:
            search = wrk_search(port, token, paths, args.seconds, args.conns)
            search.name = f"search, 20 results, max rate (wrk, {args.conns} conns)"
        else:
            search = await open_loop(port, token, paths, args.search_rate, args.seconds)
            search.name = f"search, 20 results, at {args.search_rate:.0f} req/s (open loop)"
        after_rss = rss_mb(proc.pid)
        print(
            f"\n{seeded.externals:,} per-source records, {seeded.canonicals:,} canonical events;"
            f" API load {load_s:.0f}s; RSS after the runs {after_rss:,.0f} MB\n"
        )
        print("| measurement | requests | req/s | p50 ms | p95 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print(detail.row())
        print(search.row())
        ok = detail.pct(99) <= 50 and search.rate >= 600 and search.pct(95) <= 100
        print(f"\ngoals (detail p99 <= 50 ms at 500/s; search >= 600/s, p95 <= 100 ms): {ok}")
        return {
            "benchmark": "api",
            "records": seeded.externals,
            "canonical_events": seeded.canonicals,
            "load_s": round(load_s, 1),
            "rss_ready_mb": None if math.isnan(ready_rss) else round(ready_rss),
            "rss_after_mb": None if math.isnan(after_rss) else round(after_rss),
            "detail_target_req_per_s": args.rate,
            **detail.summary("detail"),
            "search_tool": "wrk" if wrk else "open loop",
            "search_target_req_per_s": None if wrk else args.search_rate,
            **search.summary("search"),
            "goals_met": ok,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="per-source records")
    parser.add_argument("--rate", type=float, default=500, help="detail requests per second")
    parser.add_argument("--search-rate", type=float, default=600, help="without wrk")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--conns", type=int, default=16, help="wrk connections")
    parser.add_argument("--cache-minutes", type=float, default=0, help="response cache TTL")
    parser.add_argument("--no-wrk", action="store_true")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "bench-api.log"))
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    with endpoints() as found:
        summary = asyncio.run(run(args, found.env()))
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
