"""Web page benchmark: server time of the search and event pages over a seeded catalogue.

Seeds (or reuses) ``--events`` per-source records and their canonical events in the API
benchmark's database (``benchmarks/api_store.py``), starts ``python -m services.api`` on
loopback (rate limit and response cache off) and times, from a client on the same machine
over keep-alive connections in a closed loop:

* the search page ``/web/?…`` over the API benchmark's query mix, as the page's form sends it
  (words, provider, category, dates, a circle; a "location" word filter has no form field and
  is left out, so ``text+location`` queries run as text);
* the event page ``/web/events/{id}`` over canonical events of sampled records.

Each answer must be a 200 HTML page (the event page must carry its JSON-LD). The issue's goal
is a server time p95 ≤ 50 ms for both, over 1,000,000 events (``goals_met``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.api import (
    SECRET,
    Conn,
    Figure,
    Request,
    closed_loop,
    cold_start,
    free_port,
    quiesce,
    sample_keys,
    say,
    search_mix,
    start_api,
    store_pid,
)
from benchmarks.api_store import seed
from services.api.auth import mint
from shared.mongo import EXTERNAL_EVENTS, get_database, make_client, probe_capabilities
from shared.settings import MongoSettings
from tests.stack import endpoints

GOAL_P95_MS = 50.0
FORM_FIELDS = ("q", "source", "category", "date_from", "date_to")


def page_of(request: Request) -> Request:
    """The search page's URL for one query of the API benchmark's mix."""
    params = dict(parse_qsl(urlsplit(request.path).query))
    form = {k: v for k, v in params.items() if k in FORM_FIELDS}
    if "near" in params:
        lat, lon, *radius = params["near"].split(",")
        form |= {"lat": lat, "lon": lon} | ({"radius_km": radius[0]} if radius else {})
    kind = "text" if request.kind == "text+location" else request.kind
    return Request(kind, "/web/?" + urlencode(form))


async def canonical_pages(mongo: MongoSettings, database: str, events: int, n: int) -> list[str]:
    """Event page paths of the canonical events that sampled records belong to."""
    client = make_client(mongo)
    try:
        db = get_database(client, mongo, database)
        keys = await sample_keys(db, events, n)
        docs = db[EXTERNAL_EVENTS].find({"_id": {"$in": keys}}, {"canonical_id": 1})
        ids = {str(d["canonical_id"]) async for d in docs if d.get("canonical_id")}
    finally:
        await client.close()
    return [f"/web/events/{cid}" for cid in sorted(ids)]


def checked(figure: Figure, marker: bytes | None) -> Callable[[int, bytes], None]:
    """A check of each answer: an HTML page (with ``marker`` in it when given)."""

    def check(status: int, body: bytes) -> None:
        if status == 200 and (marker is None or marker in body):
            return
        figure.errors.add("page", status if status != 200 else 599, body[:300])

    return check


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    mongo = MongoSettings(url=env["MONGO_URL"])
    database = f"bench_api_{args.events}"
    client = make_client(MongoSettings(url=env["MONGO_URL"], socket_timeout_ms=900_000))
    try:
        db = get_database(client, mongo, database)
        server = (await probe_capabilities(db)).server
        seeded = await seed(db, args.events)
    finally:
        await client.close()
    searches = [page_of(r) for r in search_mix(args.queries, seeded.origin)]
    details = await canonical_pages(mongo, database, args.events, args.details)
    store = store_pid(env["MONGO_URL"])
    await quiesce((store,))
    port = free_port()
    api_env = {
        **os.environ,
        **env,
        "MARQUEE_ENV": "test",
        "MONGO_DATABASE": database,
        "API_HTTP_PORT": str(port),
        "API_JWT_SECRET": SECRET,
        "API_REPLY_TOPIC": f"bench.web.replies.{os.getpid()}",
        "API_RATE_LIMIT_PER_MINUTE": "0",
        "API_CACHE_DURATION_MINUTES": "0",
    }
    log = Path(args.log)
    token = mint("bench", "user", secret=SECRET, ttl_s=7200)
    started = time.monotonic()
    proc = start_api(api_env, log)
    try:
        await cold_start(proc, started, port, token, searches[0].path, log)
        # Warm-up: every page of the mix once (the store's cache, the templates).
        event_pages = [Request("event", p) for p in details]
        await closed_loop(port, token, [*searches, *event_pages], args.warm_seconds, 2)
        await quiesce((proc.pid, store))
        search = await closed_loop(port, token, searches, args.seconds, args.conns)
        await quiesce((proc.pid, store))
        detail = await closed_loop(port, token, event_pages, args.seconds, args.conns)
        # The pages' content: a sample of each, checked once more (a 200 error page won't do).
        sample = Figure("check", 0, 0.0, [])
        conn = Conn(port, token)
        try:
            check_search, check_event = checked(sample, b"<main"), checked(sample, b"ld+json")
            for request in searches[:40]:
                check_search(*await conn.get(request.path))
            for path in details[:40]:
                check_event(*await conn.get(path))
        finally:
            conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for figure in (search, detail, sample):
        for example in figure.errors.examples:
            say(f"error: {example}")
    summary: dict[str, Any] = {
        "benchmark": "web",
        "events": args.events,
        "canonical_events": seeded.canonicals,
        "seed_reused": seeded.reused,
        "store_server": server,
        "conns": args.conns,
        **search.summary("search_page"),
        "search_page_kind_p95_ms": {
            kind: round(sorted(v)[int(0.95 * (len(v) - 1))], 2)
            for kind, v in sorted(search.by_kind.items())
            if v
        },
        **detail.summary("event_page"),
        "content_errors": sample.errors.count,
        "goal_p95_ms": GOAL_P95_MS,
    }
    summary["goals_met"] = (
        (summary["search_page_p95_ms"] or 1e9) <= GOAL_P95_MS
        and (summary["event_page_p95_ms"] or 1e9) <= GOAL_P95_MS
        and not (search.errors.count or detail.errors.count or sample.errors.count)
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="per-source records")
    parser.add_argument("--seconds", type=int, default=20, help="per page kind")
    parser.add_argument("--warm-seconds", type=int, default=10)
    parser.add_argument("--conns", type=int, default=4, help="client connections")
    parser.add_argument("--queries", type=int, default=300, help="distinct searches")
    parser.add_argument("--details", type=int, default=1000, help="records sampled for events")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "bench-web.log"))
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    with endpoints() as found:
        summary = asyncio.run(run(args, found.env()))
    for key, value in summary.items():
        say(f"{key}: {value}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
