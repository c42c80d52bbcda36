"""End to end through the real services: a sandbox sync → ingestor → normalizer → API search →
import through the API → importer → local event → notification; and an on-demand detail fetch
(API → ingest.requests → ingestor → normalizer → API)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.contracts import Notification
from shared.mongo import EXTERNAL_EVENTS, get_database, make_client
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.test_api import api_env, api_topics, free_port, spawn, start_api, stop, tail
from tests.kafka_read import read_topic
from tests.sandbox import running_sandbox, sandbox_env


async def poll(check: Any, what: str, timeout_s: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not in time\n" + "\n".join(tail(p) for p in logs))
        await asyncio.sleep(1)


async def test_sync_search_import_notify_and_fetch_on_demand(
    stack: Any,
    kafka_settings: KafkaSettings,
    mongo_settings: MongoSettings,
    unique: str,
    tmp_path: Path,
) -> None:
    topics = api_topics(unique)
    topics["dlq"] = f"raw.events.dlq.api-{unique}"
    topics["raw"] = f"raw.events.api-{unique}"
    topics["canonical"] = f"events.canonical.api-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics(
        [
            NewTopic(
                n, 2, 1, topic_configs={"cleanup.policy": "compact"} if k == "canonical" else {}
            )
            for k, n in topics.items()
        ]
    )
    await admin.close()
    database = f"e2e_{unique}"
    app_id = f"normalizer-e2e-{unique}"
    names = ("normalizer", "importer", "ingestor", "api", "notifier")
    logs = [tmp_path / f"{name}.log" for name in names]
    with running_sandbox("--tm-per-second", "0", "--sg-per-second", "0", events=400) as sandbox:
        base = {
            **os.environ,
            **stack.env(),
            **sandbox_env(sandbox),
            "MARQUEE_ENV": "test",
            "ENABLE_AUTO_SYNC": "false",
            "MONGO_DATABASE": database,
            "S3_BUCKET": f"e2e-{unique}",
            "INGESTOR_RAW_TOPIC": topics["raw"],  # the CLI sync's too
        }
        normalizer = spawn(
            "services.normalizer",
            {
                **base,
                "NORMALIZER_APP_ID": app_id,
                "NORMALIZER_INPUT_TOPIC": topics["raw"],
                "NORMALIZER_CHANGES_TOPIC": topics["canonical"],
                "NORMALIZER_DLQ_TOPIC": topics["dlq"],
                "NORMALIZER_DATA_DIR": str(tmp_path / "faust"),
                "NORMALIZER_HTTP_PORT": "0",
                "NORMALIZER_BATCH_SIZE": "100",
            },
            logs[0],
        )
        importer = spawn(
            "services.importer",
            {
                **base,
                "IMPORTER_GROUP_ID": f"importer-{unique}",
                "IMPORTER_UPDATES_GROUP_ID": f"importer-updates-{unique}",
                "IMPORTER_HOOKS_GROUP_ID": f"importer-hooks-{unique}",
                "IMPORTER_REQUESTS_TOPIC": topics["import_requests"],
                "IMPORTER_RESULTS_TOPIC": topics["import_results"],
                "IMPORTER_NOTIFICATIONS_TOPIC": topics["notifications"],
                "IMPORTER_CHANGES_TOPIC": topics["canonical"],
                "IMPORTER_HTTP_PORT": "0",
            },
            logs[1],
        )
        ingestor = spawn(
            "services.ingestor",
            {
                **base,
                "INGESTOR_GROUP_ID": f"ingestor-{unique}",
                "INGESTOR_REQUESTS_TOPIC": topics["ingest_requests"],
                "INGESTOR_HTTP_PORT": "0",
            },
            logs[2],
        )
        notifier = spawn(
            "services.importer",
            {
                **base,
                "NOTIFIER_GROUP_ID": f"notifier-{unique}",
                "NOTIFIER_NOTIFICATIONS_TOPIC": topics["notifications"],
                "NOTIFIER_DLQ_TOPIC": f"notifications.dlq.api-{unique}",
                "NOTIFIER_HTTP_PORT": "0",
            },
            logs[4],
            "notifier",
        )
        env = {**api_env(stack, topics, database, free_port()), **base}
        env = {k: v for k, v in env.items() if not k.startswith("INGESTOR_")}
        client = make_client(mongo_settings)
        db = get_database(client, mongo_settings, database)
        try:
            async with start_api(env, logs[3]) as url:
                await e2e(url, env, base, db, kafka_settings, topics, sandbox, logs)
        finally:
            for proc in (normalizer, importer, ingestor, notifier):
                stop(proc)
            await client.drop_database(database)
            await client.close()


async def e2e(
    url: str,
    env: dict[str, str],
    base: dict[str, str],
    db: Any,
    kafka: KafkaSettings,
    topics: dict[str, str],
    sandbox: str,
    logs: list[Path],
) -> None:
    from services.api.auth import mint

    secret = env["API_JWT_SECRET"]
    organizer = {"Authorization": f"Bearer {mint('olga', 'organizer', secret=secret)}"}
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sync = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ingestor",
        "ingest",
        "--provider",
        "seatgeek",
        "--query",
        "concert",
        "--days",
        "3",
        "--start",
        today.isoformat().replace("+00:00", "Z"),
        env=base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(sync.communicate(), 300)
    assert sync.returncode == 0, out.decode()[-3000:]

    later = datetime.now(UTC) + timedelta(hours=2)

    async def stored() -> Any:
        # One that has not started: the importer refuses events in the past.
        return await db[EXTERNAL_EVENTS].find_one(
            {"source": "seatgeek", "start_utc": {"$gt": later}, "status": "EventScheduled"}
        )

    doc = await poll(stored, "normalized record in the store", 180, logs)
    key = str(doc["_id"])
    word = max(doc["title"].split(), key=len)
    async with httpx.AsyncClient(base_url=url, headers=organizer, timeout=60) as http:

        async def searched() -> Any:
            page = (
                await http.get("/external-events/search", params={"q": word, "limit": 100})
            ).json()
            return [e for e in page.get("events", []) if e["id"] == key]

        found = (await poll(searched, f"search for {word!r} finds {key}", 120, logs))[0]
        assert found["source"] == "seatgeek"
        source, external_id = key.split(":", 1)
        trace = f"trace-{time.time_ns()}"
        imported = await http.post(
            f"/external-events/{source}/{external_id}/import", headers={"X-Request-ID": trace}
        )
        assert imported.status_code in (201, 202), imported.text
        assert imported.headers["x-request-id"] == trace
        body = imported.json()
        if imported.status_code == 202:

            async def decided() -> Any:
                status = (await http.get(body["status_url"])).json()
                return status if status["status"] != "pending" else None

            body = await poll(decided, "import decided", 60, logs)
            assert body["status"] == "imported", body
        local_id = body["local_event_id"]
        local = (await http.get(f"/local-events/{local_id}")).json()
        assert local["external_event_id"] == external_id
        assert local["created_by"] == "olga"
        again = await http.post(f"/external-events/{source}/{external_id}/import")
        assert again.status_code == 400
        assert again.json()["error"] == "Event already imported"

        async def notified() -> Any:
            records = await read_topic(kafka, topics["notifications"], 2)
            notes = [Notification.model_validate_json(r.value) for r in records]
            return [n for n in notes if n.user_id == "olga"]

        notes = await poll(notified, "notification for the organiser", 60, logs)
        assert notes[0].type.startswith("event.")
        assert notes[0].correlation_id == trace

        # One id from the HTTP request to the delivered notification, in every service's log.
        def traced(log: Path) -> list[dict[str, Any]]:
            lines = [orjson.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
            return [x for x in lines if x.get("correlation_id") == trace]

        async def delivered() -> Any:
            return [x for x in traced(logs[4]) if x["service"] == "notifier"]

        await poll(delivered, "the notifier logs the delivery with the request's id", 60, logs)
        api_lines = traced(logs[3])
        assert any(x.get("path", "").endswith("/import") for x in api_lines), api_lines
        decisions = [x for x in traced(logs[1]) if x.get("status") == "imported"]
        assert [x["local_event_id"] for x in decisions] == [local_id]

        async def flagged() -> Any:
            page = (
                await http.get(
                    "/external-events/search", params={"q": word, "imported": "true", "limit": 100}
                )
            ).json()
            return [e for e in page["imported_events"] if e["id"] == key]

        ref = (await poll(flagged, "search shows it imported", 90, logs))[0]
        assert ref["local_event_id"] == local_id

        # On demand: a Ticketmaster record no sync fetched, through ingest.requests.
        async with httpx.AsyncClient(timeout=30) as plain:
            truth = (await plain.get(f"{sandbox}/_sandbox/truth")).json()["clusters"]
        soon = today + timedelta(days=5)
        wanted = next(
            r["external_id"]
            for c in truth
            if datetime.fromisoformat(c["start_utc"]) > soon
            for r in c["records"]
            if r["provider"] == "ticketmaster" and r["listed"]
        )
        fetched = await http.get(f"/external-events/ticketmaster/{wanted}")
        assert fetched.status_code == 200, fetched.text + "\n" + "\n".join(tail(p) for p in logs)
        assert fetched.json()["external_id"] == wanted
        missing = await http.get("/external-events/ticketmaster/NoSuchEvent000")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Event not found"}
