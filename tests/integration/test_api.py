"""The API process against the real Kafka and store: search, detail, listings and the change
feed straight from the store (a change is visible at once), readiness, and schemathesis over the
whole OpenAPI (every check, positive and negative: no failure)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.api.auth import mint
from shared.contracts import (
    CanonicalEvent,
    ExternalEvent,
    Provider,
    SourceRef,
    Venue,
    When,
)
from shared.mongo import EVENTS, EXTERNAL_EVENTS, ensure_indexes, get_database, make_client
from shared.search import with_search_fields
from shared.settings import KafkaSettings, MongoSettings
from tests.stack import ROOT

SECRET = "integration-secret-0123456789abcdef0123"
SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def record(
    provider: str, external_id: str, title: str, canonical_id: str, **kw: Any
) -> ExternalEvent:
    start = kw.pop("start", SOON)
    return ExternalEvent(
        source=Provider(provider),
        external_id=external_id,
        title=title,
        category=kw.pop("category", "music"),
        subcategory=kw.pop("subcategory", "rock"),
        start=When(utc=start, local=start.replace(tzinfo=None).isoformat(), timezone="UTC"),
        start_utc=start,
        venue=Venue(name="Vertex Arena", city="Nashville", country="US", lat=36.16, lon=-86.78),
        venue_city="Nashville",
        content_hash=f"h-{external_id}-{kw.get('version', 1)}",
        canonical_id=canonical_id,
        **kw,
    )


def document(event: ExternalEvent) -> dict[str, Any]:
    doc = event.to_document()
    doc["_id"] = f"{event.source.value}:{event.external_id}"
    return stored(doc)


def canonical(
    canonical_id: str,
    members: list[ExternalEvent],
    *,
    version: int = 1,
    merged_into: str | None = None,
    modified: datetime | None = None,
) -> dict[str, Any]:
    """A canonical event as the normalizer stores it (search fields included)."""
    lead = members[0]
    event = CanonicalEvent(
        id=canonical_id,
        title=lead.title,
        category=lead.category,
        subcategory=lead.subcategory,
        start=lead.start,
        venue=lead.venue,
        version=version,
        sources=[SourceRef(source=m.source, external_id=m.external_id) for m in members],
        duplicate_of=merged_into,
        updated_at=modified or datetime.now(UTC) - timedelta(seconds=5),
    )
    return stored(event.to_document())


def stored(doc: dict[str, Any]) -> dict[str, Any]:
    with_search_fields([doc])
    return doc


@dataclass
class RunningApi:
    url: str
    env: dict[str, str]
    topics: dict[str, str]
    database: str
    log: Path

    def headers(self, role: str, sub: str = "tester") -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(sub, role, secret=SECRET)}"}


async def create_topics(kafka: KafkaSettings, names: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1) for name in names.values()])
    finally:
        await admin.close()


def api_topics(unique: str) -> dict[str, str]:
    return {
        "import_requests": f"import.requests.api-{unique}",
        "import_results": f"import.results.api-{unique}",
        "ingest_requests": f"ingest.requests.api-{unique}",
        "replies": f"api.replies.api-{unique}",
        "notifications": f"notifications.api-{unique}",
    }


def api_env(stack: Any, topics: dict[str, str], database: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        **stack.env(),
        "MARQUEE_ENV": "test",
        "ENABLE_AUTO_SYNC": "false",
        "MONGO_DATABASE": database,
        "API_HTTP_PORT": str(port),
        "API_JWT_SECRET": SECRET,
        "API_IMPORT_REQUESTS_TOPIC": topics["import_requests"],
        "API_IMPORT_RESULTS_TOPIC": topics["import_results"],
        "API_INGEST_REQUESTS_TOPIC": topics["ingest_requests"],
        "API_REPLY_TOPIC": topics["replies"],
        "API_RATE_LIMIT_PER_MINUTE": "0",
        "API_FEED_SETTLE_S": "0",
        "API_IMPORT_WAIT_S": "8",
        "API_DETAIL_FETCH_WAIT_S": "20",
        "API_DETAIL_STORE_WAIT_S": "30",
    }


def spawn(module: str, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A service subprocess whose output goes to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def start_api(env: dict[str, str], log: Path, timeout_s: float = 120) -> AsyncIterator[str]:
    """``python -m services.api`` until it is ready; yields its base URL."""
    url = f"http://127.0.0.1:{env['API_HTTP_PORT']}"
    proc = spawn("services.api", env, log)
    try:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                assert proc.poll() is None, tail(log)
                assert time.monotonic() < deadline, tail(log)
                try:
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
        yield url
    finally:
        stop(proc)


GIANTS = [
    record("ticketmaster", "tm1", "Electric Giants", "c1"),
    record("seatgeek", "sg1", "Electric Giants live", "c1", start=SOON + timedelta(minutes=30)),
]
MEETUP = [
    record("meetup", "mu1", "Python Nashville", "c2", category="community", subcategory="tech")
]
JAZZ = [record("eventbrite", "eb1", "Blue Monday Jazz", "c3", start=SOON + timedelta(days=1))]


@pytest.fixture
async def api(
    stack: Any,
    kafka_settings: KafkaSettings,
    mongo_settings: MongoSettings,
    unique: str,
    tmp_path: Path,
) -> AsyncIterator[RunningApi]:
    topics = api_topics(unique)
    await create_topics(kafka_settings, topics)
    database = f"api_{unique}"
    client = make_client(mongo_settings)
    db = get_database(client, mongo_settings, database)
    await ensure_indexes(db)
    await db[EXTERNAL_EVENTS].insert_many([document(e) for e in GIANTS + MEETUP + JAZZ])
    await db[EVENTS].insert_many(
        [canonical("c1", GIANTS), canonical("c2", MEETUP), canonical("c3", JAZZ)]
    )
    env = api_env(stack, topics, database, free_port())
    log = tmp_path / "api.log"
    try:
        async with start_api(env, log) as url:
            yield RunningApi(url, env, topics, database, log)
    finally:
        await client.drop_database(database)
        await client.close()


async def poll(check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.5)


async def test_search_detail_listing_and_changes_from_the_store(
    api: RunningApi, mongo_settings: MongoSettings
) -> None:
    user = api.headers("user")
    async with httpx.AsyncClient(base_url=api.url, headers=user, timeout=30) as http:
        ready = (await http.get("/readyz")).json()
        assert ready == {"status": "ready", "checks": {"kafka": "ok", "mongo": "ok"}}
        found = (await http.get("/external-events/search", params={"q": "giants"})).json()
        assert [e["id"] for e in found["events"]] == ["ticketmaster:tm1", "seatgeek:sg1"]
        assert (found["total_count"], found["total_exact"]) == (2, True)
        assert found["imported_events"] == []
        deduped = await http.get("/external-events/search", params={"q": "elec", "dedupe": "true"})
        assert [e["id"] for e in deduped.json()["events"]] == ["ticketmaster:tm1"]
        assert set(deduped.json()["events"][0]) == set(found["events"][0])
        near = await http.get(
            "/external-events/search",
            params={"q": "python", "near": "36.2,-86.8,10", "sort": "distance"},
        )
        assert near.json()["total_count"] == 1
        assert 0 < near.json()["events"][0]["distance_km"] < 10
        by_category = await http.get("/external-events/search", params={"q": "community"})
        assert [e["id"] for e in by_category.json()["events"]] == ["meetup:mu1"]
        detail = (await http.get("/external-events/seatgeek/sg1")).json()
        assert detail["title"] == "Electric Giants live"
        assert detail["start"]["utc"].endswith("Z")
        assert "terms" not in detail
        client = make_client(mongo_settings)
        db = get_database(client, mongo_settings, api.database)
        # What the normalizer writes is what the next request reads: no copy to refresh.
        late = record("meetup", "mu2", "Late Night Python", "c9")
        await db[EXTERNAL_EVENTS].insert_one(document(late))
        assert (await http.get("/external-events/meetup/mu2")).json()["title"] == late.title
        renamed = GIANTS[0].model_copy(update={"title": "Electric Giants Reunion", "version": 2})
        await db[EXTERNAL_EVENTS].replace_one({"_id": "ticketmaster:tm1"}, document(renamed))
        await db[EVENTS].replace_one(
            {"_id": "c1"}, canonical("c1", [renamed, GIANTS[1]], version=2)
        )
        await db[EVENTS].replace_one(
            {"_id": "c3"}, canonical("c3", JAZZ, version=2, merged_into="c1")
        )
        await client.close()
        events = (await http.get("/external-events/search", params={"q": "reunion"})).json()
        assert [(e["id"], e["version"]) for e in events["events"]] == [("ticketmaster:tm1", 2)]
        feed = (await http.get("/events/changes", params={"limit": 2})).json()
        assert feed["has_more"] is True
        rest = (await http.get("/events/changes", params={"after": feed["next_after"]})).json()
        changes = feed["changes"] + rest["changes"]
        assert {c["canonical_id"]: c["op"] for c in changes} == {
            "c1": "updated",
            "c2": "created",
            "c3": "merged",
        }
        assert next(c for c in changes if c["op"] == "merged")["merged_into"] == "c1"
        assert all(c["modified"].endswith("Z") for c in changes)
        tail = (await http.get("/events/changes", params={"after": rest["next_after"]})).json()
        assert (tail["changes"], tail["has_more"]) == ([], False)
        listed = (await http.get("/events")).json()
        assert sorted(e["id"] for e in listed["events"]) == ["c1", "c2"]
        metrics = (await http.get("/metrics")).text
        assert 'marquee_api_requests_total{route="/external-events/search",status="200"}' in metrics


async def test_schemathesis_every_check_passes(api: RunningApi, tmp_path: Path) -> None:
    """Every operation of the OpenAPI, fuzzed as an admin with valid and invalid input: every
    check passes (no 5xx, documented statuses and schemas, valid input accepted, invalid input
    refused)."""
    token = api.headers("admin")["Authorization"]
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{api.url}/openapi.json",
        "--header",
        f"Authorization: {token}",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        "15",
        "--seed",
        "7",
        "--request-timeout",
        "20",
        "--workers",
        "1",
        "--generation-codec",
        "ascii",
        # An event stream never ends: test_stream.py covers it.
        "--exclude-path",
        "/events/stream",
        cwd=tmp_path,  # its example database and reports stay out of the work tree
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "passed" in text.lower()
