"""API load benchmark: detail at a fixed rate, 20-result searches at the maximum rate, the change
feed, cold start and memory, over a catalogue read straight from the store.

Seeds (or reuses) ``--events`` per-source records and their canonical events, with search
fields and indexes, in a dedicated database (``bench_api_<N>``, ``benchmarks/api_store.py``),
starts ``python -m services.api`` on loopback (one uvicorn process, rate limit off, response
cache off unless ``--cache-minutes``) and measures:

* ``cold_start_s``: process start → ``/readyz`` 200 and a first search answered 200;
* a warm-up that also checks every query of the mix once, one at a time: its status, its
  latency, how many results, and that every result answers the query (words, dates, category,
  city, provider, circle, order: ``misfits``), so a filter the API drops cannot pass for a
  fast query (``search_mix_wrong``; the search goals count as missed when any is wrong);
* detail ``GET /external-events/{source}/{id}`` over 3,000 existing records at ``--rate``
  req/s, open loop (latency counted from each request's scheduled time, so a stall is not
  hidden), from an asyncio generator over 64 keep-alive connections;
* search at the maximum rate: ``--conns`` connections in a closed loop rotating a fixed mix of
  20-result queries (text with a prefix last word, location, category, geo circles, nearest
  first within a small circle, date ranges; ``GET /external-events/search`` when there are
  words, ``GET /events`` when there are none), with ``wrk`` when it is installed, else an
  asyncio generator (which also times each kind of query);
* the change feed: ``--changes-conns`` readers each starting at a random instant of the seeded
  ``updated_at`` range (``after=<ISO datetime>``) and following ``next_after`` for
  ``--changes-pages`` pages of ``limit=100``;
* the API process's RSS after all that, and per phase the CPU the API, the store and the load
  generator spent per request (``/proc``), with the API's own time per route (``/metrics``);
* with the API stopped, ``--profile`` searches of each kind replayed here through the API's
  own ``Catalogue``: the store queries each sends, the rows they return, the index entries and
  document lookups WiredTiger counted, the store's time and CPU (where a search's time goes).

The API and the store are let go idle between phases (work a client gave up on is not billed
to the next phase); ``--trace`` prints their CPU each second. Any answer but a 2xx, a dropped
connection or no answer within ``Conn.timeout_s`` is an error; a few bodies are printed. The
load generator runs on the same cores as the API, Kafka and the store (2 on the development
VM): ``load_generator`` says so.
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
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import orjson
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.api_store import CATEGORIES, CITIES, PROVIDERS, WORDS, Seeded, seed
from services.api.auth import mint
from services.api.catalogue import Catalogue
from services.api.params import read_filters
from shared.mongo import EXTERNAL_EVENTS, Document, get_database, make_client, probe_capabilities
from shared.search import terms_of, tokens
from shared.settings import MongoSettings
from tests.stack import ROOT, endpoints

SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 - loopback-only benchmark
EXAMPLES = 5  # error bodies kept per phase
GOALS = (
    "detail p99 <= 10 ms at 500/s; search >= 600/s with p95 <= 100 ms; cold start <= 5 s;"
    " RSS <= 300 MB"
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- HTTP/1.1 client


class Errors:
    """Failed requests: a count and the first few, with what the API answered."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, path: str, status: int, body: bytes) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            text = body[:300].decode("utf-8", "replace")
            self.examples.append(f"{status} {path[:160]} → {text}")


class Conn:
    """One keep-alive connection sending raw GETs (the generator's own cost stays small)."""

    timeout_s = 60.0  # an answer slower than this is an error (and the connection is dropped)

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        """Status and body; status 0 (and the error as the body) when the connection failed
        or the answer took longer than ``timeout_s``."""
        try:
            return await asyncio.wait_for(self._get(path), self.timeout_s)
        except TimeoutError:
            self.close()
            return 0, f"no answer within {self.timeout_s:.0f} s".encode()

    async def _get(self, path: str) -> tuple[int, bytes]:
        try:
            if self.reader is None or self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}".encode("latin-1"))
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if length is None:
                raise ValueError("no content-length")
            return status, await self.reader.readexactly(int(length.group(1)))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            self.close()
            return 0, repr(e).encode()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --------------------------------------------------------------------------- figures


@dataclass
class Figure:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: Errors = field(default_factory=Errors)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    fixed: dict[int, float] | None = None  # percentiles given by wrk

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if self.fixed is not None:
            return self.fixed.get(int(q), math.nan)
        return percentile(self.latencies_ms, q)

    def row(self) -> str:
        return (
            f"| {self.name} | {self.requests:,} | {self.rate:,.1f} | {self.pct(50):.1f} | "
            f"{self.pct(95):.1f} | {self.pct(99):.1f} | {self.errors.count} |"
        )

    def summary(self, prefix: str) -> dict[str, Any]:
        """This figure's ``--json`` keys (a percentile without samples is null)."""
        return {
            f"{prefix}_requests": self.requests,
            f"{prefix}_req_per_s": round(self.rate, 1),
            f"{prefix}_p50_ms": ms(self.pct(50)),
            f"{prefix}_p95_ms": ms(self.pct(95)),
            f"{prefix}_p99_ms": ms(self.pct(99)),
            f"{prefix}_errors": self.errors.count,
        }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


# --------------------------------------------------------------------------- where time goes

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (nan when it cannot be read)."""
    if pid is None:
        return math.nan
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def store_pid(mongo_url: str) -> int | None:
    """The local store's process, found by the port of MONGO_URL (None: not on this machine)."""
    port = urlsplit(mongo_url).port
    if port is None:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"secantus" in a or a.endswith(b"mongod") for a in argv[:1]) and (
            str(port).encode() in argv or f"--port={port}".encode() in argv
        ):
            return int(entry.name)
    return None


async def quiesce(pids: Sequence[int | None], limit_s: float = 600) -> float:
    """Wait until the API and the store are idle (under a tenth of a core over half a second),
    so work a phase left behind (a query its client gave up on) is not billed to the next one.
    Returns the seconds waited."""
    started = time.monotonic()
    watched = [p for p in pids if p is not None]
    while time.monotonic() - started < limit_s:
        before = sum(cpu_s(p) for p in watched)
        await asyncio.sleep(0.5)
        if sum(cpu_s(p) for p in watched) - before < 0.05:
            break
    else:
        say(f"the API or the store still busy after {limit_s:.0f} s: measuring anyway")
    waited = time.monotonic() - started
    if waited > 2:
        say(f"waited {waited:.0f} s for the API and the store to go idle")
    return waited


class Tracer:
    """With ``--trace``: the API's and the store's CPU each second on stderr, with the phase."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v is not None}
        self.phase = "start"
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        started = time.monotonic()
        last = {k: cpu_s(p) for k, p in self.pids.items()}
        while True:
            await asyncio.sleep(1)
            now = {k: cpu_s(p) for k, p in self.pids.items()}
            shares = " ".join(f"{k} {now[k] - last[k]:.2f}" for k in now)
            say(f"  trace {time.monotonic() - started:6.0f} s [{self.phase}] cpu: {shares}")
            last = now

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


@dataclass
class Usage:
    """CPU spent during a phase by the API, the store and this generator."""

    api_s: float
    store_s: float
    generator_s: float
    busy_s: float
    total_s: float
    server_ms: dict[str, tuple[int, float]]  # route → (requests, mean ms) inside the API

    def per_request(self, requests: int) -> dict[str, float | None]:
        def each(value: float) -> float | None:
            return None if math.isnan(value) or not requests else round(value * 1000 / requests, 3)

        return {"api": each(self.api_s), "store": each(self.store_s), "gen": each(self.generator_s)}

    @property
    def machine_busy(self) -> float:
        return self.busy_s / self.total_s if self.total_s else math.nan


class Meter:
    def __init__(self, port: int, api: int, store: int | None) -> None:
        self.port, self.api, self.store = port, api, store

    async def metrics(self) -> dict[str, tuple[float, float]]:
        """route → (count, seconds) of the API's request histogram."""
        found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        pattern = r'^marquee_api_request_seconds_(count|sum)\{route="([^"]*)"\} (\S+)$'
        for kind, route, value in re.findall(pattern, text, re.M):
            found[route][0 if kind == "count" else 1] = float(value)
        return {k: (v[0], v[1]) for k, v in found.items()}

    async def measure(self, phase: Callable[[], Awaitable[Figure]]) -> tuple[Figure, Usage]:
        before_routes = await self.metrics()
        api0, store0, gen0 = cpu_s(self.api), cpu_s(self.store), time.process_time()
        busy0, total0 = machine_busy()
        figure = await phase()
        busy1, total1 = machine_busy()
        api1, store1, gen1 = cpu_s(self.api), cpu_s(self.store), time.process_time()
        after_routes = await self.metrics()
        server = {}
        for route, (count, seconds) in after_routes.items():
            n0, s0 = before_routes.get(route, (0.0, 0.0))
            if count - n0 >= 10 and route != "/metrics":
                server[route] = (int(count - n0), (seconds - s0) * 1000 / (count - n0))
        usage = Usage(
            api1 - api0, store1 - store0, gen1 - gen0, busy1 - busy0, total1 - total0, server
        )
        return figure, usage


# --------------------------------------------------------------------------- the query mix


@dataclass(frozen=True)
class Request:
    kind: str
    path: str


def search_mix(n: int, origin: datetime, seed_: int = 5) -> list[Request]:
    """``n`` 20-result queries, every tenth-or-so kind in a fixed rotation (see the table)."""
    rng = random.Random(seed_)
    day0 = origin.date()

    def words() -> str:
        chosen = [rng.choice(WORDS)]
        if rng.random() < 1 / 3:
            chosen.append(rng.choice(WORDS))
        if rng.random() < 0.5:  # typed so far: the last word as a prefix of 3 letters or more
            last = chosen[-1]
            chosen[-1] = last[: rng.randrange(3, len(last) + 1)]
        return " ".join(chosen)

    def dates(longest: int = 30) -> dict[str, str]:
        start = day0 + timedelta(days=rng.randrange(1, 330))
        span = rng.choice([d for d in (0, 1, 2, 6, 13, 30, 60) if d <= longest])
        return {
            "date_from": start.isoformat(),
            "date_to": (start + timedelta(days=span)).isoformat(),
        }

    def category() -> str:
        top, subs = rng.choice(CATEGORIES)
        return rng.choice(subs) if rng.random() < 2 / 3 else top

    def circle(radius: float, jitter: float = 0.05) -> dict[str, Any]:
        _, _, _, lat, lon, _ = rng.choice(CITIES)
        lat, lon = lat + rng.uniform(-jitter, jitter), lon + rng.uniform(-jitter, jitter)
        return {"near": f"{lat:.4f},{lon:.4f},{radius:g}"}

    def city() -> str:
        return rng.choice(CITIES)[0]

    found = []
    for i in range(n):
        slot = i % 20
        params: dict[str, Any]
        if slot < 6:
            kind, params = "text", {"q": words()}
            if rng.random() < 1 / 4:
                params |= dates(60)
            if rng.random() < 1 / 6:
                params["source"] = rng.choice(PROVIDERS).value
            if rng.random() < 1 / 6:
                params["dedupe"] = "true"
        elif slot < 8:
            kind, params = "text+location", {"q": words(), "location": city()}
        elif slot < 10:
            kind, params = "text+category", {"q": words(), "category": category()}
        elif slot < 12:
            kind, params = "category", {"category": category()}
            if rng.random() < 0.5:
                params["location"] = city()
        elif slot < 14:
            kind, params = "dates+location", {**dates(13), "location": city()}
        elif slot < 16:
            kind, params = "geo", circle(rng.choice((10, 25, 50)))
            if rng.random() < 0.5:
                params["category"] = category()
        elif slot < 17:
            kind, params = "text+geo", {"q": words(), **circle(25)}
        elif slot < 19:
            kind, params = "nearest", {**circle(rng.choice((2, 3, 5))), "sort": "distance"}
            if rng.random() < 0.5:
                params |= dates(30)
        else:
            kind = "text+category+geo+dates"
            params = {"q": rng.choice(WORDS), "category": category(), **circle(50), **dates(30)}
        endpoint = "/external-events/search" if "q" in params else "/events"
        query = urlencode({**params, "limit": 20}, quote_via=quote)
        found.append(Request(kind, f"{endpoint}?{query}"))
    return found


# --------------------------------------------------------------------------- load generators


async def open_loop(
    port: int, token: str, paths: Sequence[str], rate: float, seconds: float, conns: int = 64
) -> Figure:
    """Requests scheduled at a fixed rate over keep-alive connections."""
    queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
    figure = Figure("", 0, 0.0, [])

    async def connection() -> None:
        conn = Conn(port, token)
        try:
            while True:
                scheduled, path = await queue.get()
                status, body = await conn.get(path)
                figure.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
                if not 200 <= status < 300:
                    figure.errors.add(path, status, body)
                queue.task_done()
        finally:
            conn.close()

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
    figure.seconds = time.perf_counter() - started
    figure.requests = total
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return figure


async def closed_loop(
    port: int, token: str, mix: Sequence[Request], seconds: float, conns: int
) -> Figure:
    """Each connection sends its next request as soon as the last is answered."""
    figure = Figure("", 0, 0.0, [])
    kinds: dict[str, list[float]] = defaultdict(list)
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**12))

    async def connection() -> None:
        conn = Conn(port, token)
        try:
            while time.perf_counter() < deadline:
                request = mix[next(counter) % len(mix)]
                sent = time.perf_counter()
                status, body = await conn.get(request.path)
                took = (time.perf_counter() - sent) * 1000
                figure.latencies_ms.append(took)
                kinds[request.kind].append(took)
                if not 200 <= status < 300:
                    figure.errors.add(request.path, status, body)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(conns)))
    figure.seconds = time.perf_counter() - started
    figure.requests = len(figure.latencies_ms)
    figure.by_kind = dict(kinds)
    return figure


WRK_SCRIPT = """
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local i = 0
local shown = 0
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
response = function(status, headers, body)
  if (status < 200 or status > 299) and shown < %(examples)d then
    shown = shown + 1
    io.stderr:write(string.format("ERROR %%d %%s\\n", status, string.sub(body, 1, 300)))
  end
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%f %%f %%f %%f %%d\\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def wrk_search(port: int, token: str, mix: Sequence[Request], seconds: int, conns: int) -> Figure:
    folder = Path(tempfile.mkdtemp(prefix="bench-api-"))
    (folder / "paths.txt").write_text("\n".join(r.path for r in mix) + "\n")
    script = folder / "search.lua"
    script.write_text(
        WRK_SCRIPT % {"paths": folder / "paths.txt", "token": token, "examples": EXAMPLES}
    )
    url = f"http://127.0.0.1:{port}"
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    _, n, secs, p50, p95, p99, errors = line.split()
    fixed = {50: float(p50), 95: float(p95), 99: float(p99)}
    figure = Figure("", int(n), float(secs), [], fixed=fixed)
    figure.errors.count = int(errors)
    figure.errors.examples = [x[6:] for x in done.stderr.splitlines() if x.startswith("ERROR ")]
    return figure


async def change_feed(
    port: int,
    token: str,
    span: tuple[datetime, datetime],
    seconds: float,
    conns: int,
    pages: int,
    seed_: int = 7,
) -> Figure:
    """Readers of ``/events/changes?limit=100``, each from a random instant of ``span`` on,
    following ``next_after`` for ``pages`` pages, then starting again elsewhere."""
    rng = random.Random(seed_)
    figure = Figure("", 0, 0.0, [])
    deadline = time.perf_counter() + seconds
    low, high = span

    async def reader() -> None:
        conn = Conn(port, token)
        try:
            while time.perf_counter() < deadline:
                moment = low + (high - low) * rng.random()
                after = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                for _ in range(pages):
                    path = f"/events/changes?limit=100&after={quote(after)}"
                    sent = time.perf_counter()
                    status, body = await conn.get(path)
                    figure.latencies_ms.append((time.perf_counter() - sent) * 1000)
                    if not 200 <= status < 300:
                        figure.errors.add(path, status, body)
                        break
                    page = orjson.loads(body)
                    if page["has_more"] and len(page["changes"]) < 100:
                        figure.errors.add(path, status, b"a short page with has_more")
                    if not page["has_more"]:
                        break
                    after = page["next_after"]
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(conns)))
    figure.seconds = time.perf_counter() - started
    figure.requests = len(figure.latencies_ms)
    return figure


# --------------------------------------------------------------------------- store profile


class StoreCalls(monitoring.CommandListener):
    """The finds (and getMores) a search sends the store: how many, rows back, time."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0
        self.ms = 0.0
        self.largest = 0  # rows of the largest single answer
        self.pending: dict[int, str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "getMore"):
            self.pending[event.request_id] = event.command_name

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if self.pending.pop(event.request_id, None) is None:
            return
        cursor = event.reply.get("cursor") or {}
        rows = len(cursor.get("firstBatch") or cursor.get("nextBatch") or [])
        self.calls += 1
        self.rows += rows
        self.largest = max(self.largest, rows)
        self.ms += event.duration_micros / 1000

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.pending.pop(event.request_id, None)


async def profile_store(
    mongo_url: str, database: str, mix: Sequence[Request], per_kind: int, store: int | None
) -> list[dict[str, Any]]:
    """The catalogue's own reads for ``per_kind`` queries of each kind, run here one at a time
    (the API is stopped by then): store round trips, rows the store sent back, store time and
    CPU per search. What a search costs the store, without the HTTP layer."""
    calls = StoreCalls()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        mongo_url, tz_aware=True, tzinfo=UTC, event_listeners=[calls]
    )
    catalogue = Catalogue(client[database])
    chosen: dict[str, list[Request]] = defaultdict(list)
    for request in mix:
        if len(chosen[request.kind]) < per_kind:
            chosen[request.kind].append(request)
    found = []

    async def walked() -> tuple[int, int, int]:
        """WiredTiger's cursor counters: entries stepped over, entries skipped, lookups."""
        cursor = (await client.admin.command("serverStatus"))["wiredTiger"]["cursor"]

        def get(name: str) -> int:
            return int(cursor.get(name, 0))

        return (
            get("cursor next calls") + get("cursor prev calls"),
            get("Total number of entries skipped by cursor next calls")
            + get("Total number of entries skipped by cursor prev calls"),
            get("cursor search calls") + get("cursor search near calls"),
        )

    try:
        for kind, requests in chosen.items():
            row: dict[str, Any] = {"kind": kind, "searches": 0, "calls": 0, "rows": 0}
            row |= {"largest": 0, "store_ms": 0.0, "store_cpu_ms": 0.0, "wall_ms": 0.0}
            row |= {"steps": 0, "skipped": 0, "lookups": 0}
            for request in requests:
                endpoint, _, query = request.path.partition("?")
                params = dict(parse_qsl(query))
                filters, _ = read_filters(params)
                asked = filters.query(params.get("q"))
                calls.calls = calls.rows = calls.largest = 0
                calls.ms = 0.0
                counters = await walked()
                cpu0, sent = cpu_s(store), time.perf_counter()
                if endpoint == "/events":
                    await catalogue.listing(asked)
                elif params.get("dedupe") == "true":
                    await catalogue.search_deduped(asked)
                else:
                    await catalogue.search(asked)
                row["wall_ms"] += (time.perf_counter() - sent) * 1000
                row["store_cpu_ms"] += (cpu_s(store) - cpu0) * 1000
                after = await walked()
                row["steps"] += after[0] - counters[0]
                row["skipped"] += after[1] - counters[1]
                row["lookups"] += after[2] - counters[2]
                row["searches"] += 1
                row["calls"] += calls.calls
                row["rows"] += calls.rows
                row["largest"] = max(row["largest"], calls.largest)
                row["store_ms"] += calls.ms
            found.append(row)
    finally:
        await client.close()
    return found


# --------------------------------------------------------------------------- the run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def sample_keys(db: AsyncDatabase[Document], events: int, n: int) -> list[str]:
    """Existing record keys, found by ``_id`` lookups of candidate keys."""
    rng = random.Random(3)
    found: list[str] = []
    while len(found) < n:
        numbers = [rng.randrange(1, max(2, int(events * 0.7))) for _ in range(250)]
        wanted = [f"{p.value}:b{k:07d}{p.value[:2]}" for k in numbers for p in PROVIDERS]
        docs = db[EXTERNAL_EVENTS].find({"_id": {"$in": wanted}}, {"_id": 1})
        found += [str(d["_id"]) async for d in docs]
    rng.shuffle(found)
    return found[:n]


def start_api(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.api"], cwd=ROOT, env=env, stdout=out, stderr=out
        )


async def cold_start(
    proc: subprocess.Popen[bytes], started: float, port: int, token: str, path: str, log: Path
) -> tuple[float, float]:
    """Seconds from the process start to /readyz 200, and to a first search answered 200."""
    conn = Conn(port, token)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with {proc.returncode}: see {log}")
            if time.monotonic() - started > 120:
                raise RuntimeError(f"the API was not ready after 120 s: see {log}")
            status, _ = await conn.get("/readyz")
            if status == 200:
                break
            await asyncio.sleep(0.02)
        ready = time.monotonic() - started
        status, body = await conn.get(path)
        if status != 200:
            raise RuntimeError(f"the first search answered {status}: {body[:300]!r}")
        return ready, time.monotonic() - started
    finally:
        conn.close()


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def misfits(path: str, events: list[dict[str, Any]], now: datetime) -> list[str]:
    """What in a page contradicts its query (empty: every item answers every filter, in
    order): a filter the API dropped or misread would otherwise pass for a fast query."""
    params = dict(parse_qsl(urlsplit(path).query))
    low = _instant(params["date_from"] + "T00:00:00Z") if "date_from" in params else None
    high = _instant(params["date_to"] + "T23:59:59.999Z") if "date_to" in params else None
    low = low or now - timedelta(minutes=5)  # upcoming only by default
    words = tokens(params.get("q"))
    wrong: list[str] = []
    order: list[tuple[float, str]] = []
    for event in events:
        name = event.get("id")
        start = _instant(event["start"]["utc"])
        if start < low or (high is not None and start > high):
            wrong.append(f"{name} starts {start:%Y-%m-%d %H:%M}, outside the dates")
        if "category" in params:
            wanted = params["category"].casefold()
            if wanted not in (event.get("category"), event.get("subcategory")):
                wrong.append(f"{name} is {event.get('category')}/{event.get('subcategory')}")
        if "location" in params and (event.get("venue") or {}).get("city") != params["location"]:
            wrong.append(f"{name} is in {(event.get('venue') or {}).get('city')}")
        if "source" in params and event.get("source") != params["source"]:
            wrong.append(f"{name} is from {event.get('source')}")
        if words:
            terms = set(terms_of(event))
            *whole, last = words
            if not set(whole) <= terms or not any(t.startswith(last) for t in terms):
                wrong.append(f"{name} lacks a word of {params['q']!r}")
        if "near" in params:
            radius = float(params["near"].split(",")[2])
            distance = event.get("distance_km")
            if not isinstance(distance, int | float) or distance > radius + 0.001:
                wrong.append(f"{name} at {distance} km, not within {radius:g} km")
        if params.get("sort") == "distance":
            order.append((float(event.get("distance_km") or 0), ""))
        else:
            order.append((start.timestamp(), ""))
    if order != sorted(order):
        wrong.append("the page is out of order")
    return wrong


async def check_mix(
    port: int, token: str, mix: Sequence[Request], budget_s: float
) -> dict[str, dict[str, Any]]:
    """Every distinct query once, in turn (for ``budget_s`` at most): status, results and
    latency per kind, and whether each page answers its query (``misfits``): the warm-up of
    the search phase, and the proof that the queries work and find something."""
    seen: dict[str, Request] = {r.path: r for r in mix}
    kinds: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "queries": 0,
            "errors": 0,
            "wrong": 0,
            "empty": 0,
            "under_20": 0,
            "ms": [],
            "examples": [],
        }
    )
    conn = Conn(port, token)
    deadline = time.monotonic() + budget_s
    try:
        for request in seen.values():
            if time.monotonic() > deadline:
                say(f"the check of the mix stopped after {budget_s:.0f} s")
                break
            row = kinds[request.kind]
            sent = time.perf_counter()
            status, body = await conn.get(request.path)
            row["ms"].append((time.perf_counter() - sent) * 1000)
            row["queries"] += 1
            if status != 200:
                row["errors"] += 1
                if len(row["examples"]) < 2:
                    row["examples"].append(f"{status} {request.path} → {body[:300]!r}")
                continue
            events = orjson.loads(body)["events"]
            wrong = misfits(request.path, events, datetime.now(UTC))
            if wrong:
                row["wrong"] += 1
                if len(row["examples"]) < 2:
                    row["examples"].append(f"wrong answer to {request.path}: {wrong[:3]}")
            row["empty"] += not events
            row["under_20"] += len(events) < 20
    finally:
        conn.close()
    return dict(kinds)


def usage_row(name: str, figure: Figure, usage: Usage) -> str:
    each = usage.per_request(figure.requests)
    inside = "; ".join(f"{r} {m:.2f} ms x {n:,}" for r, (n, m) in usage.server_ms.items())

    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    return (
        f"| {name} | {show(each['api'])} | {show(each['store'])} | {show(each['gen'])} | "
        f"{usage.machine_busy:.0%} | {inside} |"
    )


async def run(args: argparse.Namespace, env: dict[str, str], origin: str) -> dict[str, Any]:
    mongo = MongoSettings(url=env["MONGO_URL"])
    database = f"bench_api_{args.events}"
    # A bulk of 10,000 can wait out a checkpoint of the growing store: a long socket timeout.
    client = make_client(MongoSettings(url=env["MONGO_URL"], socket_timeout_ms=900_000))
    try:
        db = get_database(client, mongo, database)
        server = (await probe_capabilities(db)).server
        seeded: Seeded = await seed(db, args.events)
    finally:
        await client.close()
    mix = search_mix(args.queries, seeded.origin)
    store = store_pid(env["MONGO_URL"])
    if store is None:
        say("the store's process was not found: its CPU is not measured")
    await quiesce((store,))
    port = free_port()
    api_env = {
        **os.environ,
        **env,
        "MARQUEE_ENV": "test",
        "MONGO_DATABASE": database,
        "API_HTTP_PORT": str(port),
        "API_JWT_SECRET": SECRET,
        "API_REPLY_TOPIC": f"bench.api.replies.{os.getpid()}",
        "API_RATE_LIMIT_PER_MINUTE": "0",
        "API_CACHE_DURATION_MINUTES": str(args.cache_minutes),
        "API_LOG_LEVEL": "INFO",
    }
    log = Path(args.log)
    token = mint("bench", "user", secret=SECRET, ttl_s=7200)
    wrk = bool(shutil.which("wrk")) and not args.no_wrk
    generator = (
        f"wrk -t1 -c{args.conns} for search, an asyncio generator (uvloop) for the rest"
        if wrk
        else "asyncio generator (uvloop, one Python process)"
    )
    generator += f", on the same {os.cpu_count()} cores as the API, Kafka and the store"
    say(f"starting the API on 127.0.0.1:{port} (log {log})")
    started = time.monotonic()
    proc = start_api(api_env, log)
    tracer = Tracer({"api": proc.pid, "store": store})
    if args.trace:
        tracer.start()
    try:
        tracer.phase = "cold start"
        ready_s, cold_s = await cold_start(proc, started, port, token, mix[0].path, log)
        say(f"cold start: /readyz 200 after {ready_s:.2f} s, first search after {cold_s:.2f} s")
        client = make_client(mongo)
        try:
            keys = await sample_keys(get_database(client, mongo, database), args.events, 3000)
        finally:
            await client.close()
        detail_paths = [f"/external-events/{k.replace(':', '/', 1)}" for k in keys]
        meter = Meter(port, proc.pid, store)

        # Warm-up, and a check that every query of the mix answers (and finds something).
        tracer.phase = "mix check"
        checked = await check_mix(port, token, mix, args.check_seconds)
        tracer.phase = "warm-up"
        warm = await open_loop(port, token, detail_paths[:500], 200, 2.5)
        warm_changes = await change_feed(
            port, token, (seeded.updated_from, seeded.updated_to), 2, 1, args.changes_pages
        )
        for name, figure in (("detail", warm), ("changes", warm_changes)):
            for example in figure.errors.examples:
                say(f"warm-up {name} error: {example}")
        tracer.phase = "idle"
        await quiesce((proc.pid, meter.store))

        tracer.phase = "detail"
        detail, detail_use = await meter.measure(
            lambda: open_loop(port, token, detail_paths, args.rate, args.seconds)
        )
        detail.name = f"detail at {args.rate:.0f} req/s (open loop, 64 conns)"
        tracer.phase = "idle"
        await quiesce((proc.pid, meter.store))
        tracer.phase = "search"
        if wrk:

            async def search_phase() -> Figure:
                return await asyncio.to_thread(
                    wrk_search, port, token, mix, args.seconds, args.conns
                )

            search, search_use = await meter.measure(search_phase)
            search.name = f"search, 20 results, max rate (wrk, {args.conns} conns)"
        else:
            search, search_use = await meter.measure(
                lambda: closed_loop(port, token, mix, args.seconds, args.conns)
            )
            search.name = f"search, 20 results, max rate (asyncio, {args.conns} conns)"
        tracer.phase = "idle"
        await quiesce((proc.pid, meter.store))
        tracer.phase = "changes"
        span = (seeded.updated_from, seeded.updated_to)
        changes, changes_use = await meter.measure(
            lambda: change_feed(
                port, token, span, args.seconds, args.changes_conns, args.changes_pages
            )
        )
        changes.name = f"changes, 100 per page ({args.changes_conns} readers)"
        after_rss = rss_mb(proc.pid)
    finally:
        tracer.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    for figure in (detail, search, changes):
        for example in figure.errors.examples:
            say(f"error ({figure.name}): {example}")
    profile: list[dict[str, Any]] = []
    if args.profile:
        await quiesce((store,))
        say(f"profiling the store's side of {args.profile} searches of each kind")
        profile = await profile_store(env["MONGO_URL"], database, mix, args.profile, store)
    seed_note = "reused" if seeded.reused else "seeded now"
    print(
        f"\n{seeded.externals:,} per-source records, {seeded.canonicals:,} canonical events "
        f"({seed_note}; the seed took {seeded.seed_s:,.0f} s); store: {server}; "
        f"stack: {origin}\nload generator: {generator}\n"
        f"cold start: /readyz after {ready_s:.2f} s, first search answered after {cold_s:.2f} s;"
        f" API RSS after the runs {after_rss:,.0f} MB\n"
    )
    print("Every query of the search mix once (warm-up), per kind:\n")
    print("| kind | queries | errors | wrong answers | no result | under 20 | p50 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, row in checked.items():
        print(
            f"| {kind} | {row['queries']} | {row['errors']} | {row['wrong']} | {row['empty']} | "
            f"{row['under_20']} | {percentile(row['ms'], 50):.1f} | {max(row['ms']):.1f} |"
        )
        for example in row["examples"]:
            say(f"mix check error: {example}")
    print("\n| measurement | requests | req/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for figure in (detail, search, changes):
        print(figure.row())
    if search.by_kind:
        print("\nSearch at the maximum rate, per kind of query:\n")
        print("| kind | requests | p50 ms | p95 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|")
        for kind, values in search.by_kind.items():
            print(
                f"| {kind} | {len(values):,} | {percentile(values, 50):.1f} | "
                f"{percentile(values, 95):.1f} | {percentile(values, 99):.1f} |"
            )
    print("\nWhere the time goes: CPU ms per request, machine busy, time inside the API:\n")
    print(
        "| phase | API cpu ms | store cpu ms | generator cpu ms | machine busy | inside the API |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name, figure, usage in (
        ("detail", detail, detail_use),
        ("search", search, search_use),
        ("changes", changes, changes_use),
    ):
        print(usage_row(name, figure, usage))
    mix_ok = not any(r["errors"] or r["wrong"] for r in checked.values())
    if profile:
        print("\nThe store's side of a search (the catalogue's reads, one search at a time):\n")
        print(
            "| kind | searches | queries | rows back | largest answer | entries stepped |"
            " entries skipped | lookups | store ms | store cpu ms |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in profile:
            n = row["searches"]
            print(
                f"| {row['kind']} | {n} | {row['calls'] / n:.1f} | {row['rows'] / n:,.0f} | "
                f"{row['largest']:,} | {row['steps'] / n:,.0f} | {row['skipped'] / n:,.0f} | "
                f"{row['lookups'] / n:,.0f} | {row['store_ms'] / n:,.1f} | "
                f"{row['store_cpu_ms'] / n:,.0f} |"
            )
        print(
            "\n(entries stepped, skipped, lookups: WiredTiger's cursor next/prev calls, entries"
            " they skipped, search calls; the whole store's, while nothing else ran)"
        )
    goals = {
        "detail_p99": detail.pct(99) <= 10 and detail.errors.count == 0,
        "search_rate": search.rate >= 600 and search.errors.count == 0 and mix_ok,
        "search_p95": search.pct(95) <= 100,
        "cold_start": cold_s <= 5,
        "rss": after_rss <= 300,
    }
    print(
        f"\ngoals ({GOALS}): "
        + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in goals.items())
    )

    def cpu(usage: Usage, requests: int) -> dict[str, float | None]:
        return usage.per_request(requests)

    return {
        "benchmark": "api",
        "events": seeded.externals,
        "canonical_events": seeded.canonicals,
        "seed_s": round(seeded.seed_s, 1),
        "seed_reused": seeded.reused,
        "store_server": server,
        "stack": origin,
        "load_generator": generator,
        "cold_start_s": round(cold_s, 3),
        "ready_s": round(ready_s, 3),
        "rss_mb": None if math.isnan(after_rss) else round(after_rss),
        "detail_rate": args.rate,
        **detail.summary("detail"),
        "search_tool": "wrk" if wrk else "asyncio",
        "search_conns": args.conns,
        **search.summary("search"),
        "search_kind_p95_ms": {k: ms(percentile(v, 95)) for k, v in search.by_kind.items()},
        "search_mix_queries": sum(r["queries"] for r in checked.values()),
        "search_mix_errors": sum(r["errors"] for r in checked.values()),
        "search_mix_wrong": sum(r["wrong"] for r in checked.values()),
        "search_mix_empty": sum(r["empty"] for r in checked.values()),
        "changes_readers": args.changes_conns,
        **changes.summary("changes"),
        "cpu_ms_per_request": {
            "detail": cpu(detail_use, detail.requests),
            "search": cpu(search_use, search.requests),
            "changes": cpu(changes_use, changes.requests),
        },
        "machine_busy": {
            "detail": round(detail_use.machine_busy, 2),
            "search": round(search_use.machine_busy, 2),
            "changes": round(changes_use.machine_busy, 2),
        },
        "store_profile": {
            row["kind"]: {
                "calls": round(row["calls"] / row["searches"], 1),
                "rows": round(row["rows"] / row["searches"]),
                "store_ms": round(row["store_ms"] / row["searches"], 1),
                "entries_stepped": round(row["steps"] / row["searches"]),
                "entries_skipped": round(row["skipped"] / row["searches"]),
                "lookups": round(row["lookups"] / row["searches"]),
            }
            for row in profile
        },
        "goals_met": all(goals.values()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="per-source records")
    parser.add_argument("--rate", type=float, default=500, help="detail requests per second")
    parser.add_argument("--seconds", type=int, default=30, help="per phase")
    parser.add_argument("--conns", type=int, default=16, help="search connections")
    parser.add_argument("--queries", type=int, default=600, help="distinct searches in the mix")
    parser.add_argument("--check-seconds", type=float, default=300, help="mix check budget")
    parser.add_argument("--changes-conns", type=int, default=2, help="change feed readers")
    parser.add_argument("--changes-pages", type=int, default=5, help="pages per reader walk")
    parser.add_argument("--cache-minutes", type=float, default=0, help="response cache TTL")
    parser.add_argument("--no-wrk", action="store_true", help="search with the asyncio generator")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "bench-api.log"))
    parser.add_argument(
        "--profile", type=int, default=3, help="searches per kind replayed for the store's side"
    )
    parser.add_argument("--trace", action="store_true", help="CPU of API and store each second")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with endpoints() as found, asyncio.Runner(loop_factory=loop_factory) as runner:
        summary = runner.run(run(args, found.env(), found.origin))
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
