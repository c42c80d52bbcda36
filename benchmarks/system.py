"""A private Marquee: its own Kafka, MongoDB-wire server, S3, sandbox and every service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.local import stack
from deploy.sandbox.credentials import client_env
from shared.cloudevents import ce_headers
from shared.contracts import IngestJob, JobKind, Provider
from shared.contracts.base import Contract
from shared.contracts.messages import Notification
from shared.contracts.topics import Topic
from shared.kafka import ensure_topics, make_producer
from shared.mongo import get_database, make_client
from shared.settings import ApiSettings, KafkaSettings, MongoSettings
from tests.stack import endpoints

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
EVENT_PROVIDERS = (Provider.TICKETMASTER, Provider.SEATGEEK, Provider.EVENTBRITE, Provider.MEETUP)
REPLIES = "bench.ingest.replies"  # the ingestor's answers to our sync jobs
# Consumer groups of the services (their defaults): what "caught up" is measured on.
GROUPS = {
    "normalizer": ("marquee-normalizer", "raw.events"),
    "importer": ("marquee-importer", "import.requests"),
    "importer-updates": ("marquee-importer-updates", "events.canonical"),
    "notifier": ("marquee-notifier", "notifications"),
    "ingestor": ("marquee-ingestor", "ingest.requests"),
}
SERVICES = ("normalizer", "importer", "notifier", "api", "ingestor")
# Settings a service reads from its environment: a benchmark's service gets only its own.
SETTING_PREFIXES = (
    "KAFKA_",
    "MONGO_",
    "S3_",
    "NORMALIZER_",
    "IMPORTER_",
    "NOTIFIER_",
    "API_",
    "INGESTOR_",
)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


T = TypeVar("T")


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, but SIGTERM and SIGINT cancel the run, so its ``finally`` blocks stop
    every process it started (a killed benchmark left its private Kafka and store behind)."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        return await main

    return asyncio.run(guarded())


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 when there are no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def service_env(servers: Mapping[str, str], **settings: str) -> dict[str, str]:
    """The environment of a service process talking to ``servers``, with ``settings``.

    Settings exported for the shared stack (`./marquee env`) must not leak in: a benchmark's
    figures must come from the settings it names, not from the shell it was started in.
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    return {**inherited, "MARQUEE_ENV": "test", **servers, **settings}


def on_shared_stack(
    run: Callable[[argparse.Namespace, dict[str, str]], Coroutine[Any, Any, T]],
    args: argparse.Namespace,
) -> T:
    """Run a benchmark against the stack the tests use (started if it is not running); returns
    what ``run`` returns, once the stack is released."""
    with endpoints() as ends:
        return asyncio.run(run(args, ends.env()))


@contextlib.asynccontextmanager
async def scratch_topics(
    kafka: KafkaSettings, names: Sequence[str], partitions: int
) -> AsyncIterator[None]:
    """Topics of one benchmark run on a shared broker, deleted afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        try:
            yield
        finally:
            await admin.delete_topics(list(names))
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def scratch_database(settings: MongoSettings, name: str) -> AsyncIterator[Any]:
    """A database of one benchmark run on a shared server, dropped afterwards."""
    client = make_client(settings, appname="marquee-bench")
    try:
        yield get_database(client, settings, name)
    finally:
        await client.drop_database(name)
        await client.close()


class Proc:
    """One process we started: start, signal, stop, restart; only ever our own pid."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        ready: Callable[[], Awaitable[None]] | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.ready_check = ready
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.supervised = True  # restarted by the supervisor when it exits on its own
        self.crashes = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n==== start {datetime.now(UTC).isoformat()} ====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env=self.env,
                start_new_session=True,  # a Ctrl-C of the script reaches it only through us
            )
        self.starts += 1

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    async def wait_exit(self, timeout_s: float) -> bool:
        if self.proc is None:
            return True
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.proc.wait, timeout_s)
        return not self.alive

    async def kill(self) -> None:
        """``kill -9``: no chance to finish anything."""
        self.signal(signal.SIGKILL)
        await self.wait_exit(30)

    async def stop(self, timeout_s: float = 30.0) -> None:
        if not self.alive:
            return
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a paused process cannot stop
        self.signal(signal.SIGTERM)
        if not await self.wait_exit(timeout_s):
            await self.kill()

    async def ready(self, timeout_s: float | None = None) -> None:
        if self.ready_check is None:
            return
        deadline = time.monotonic() + (timeout_s or self.ready_timeout_s)
        last = ""
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited during start:\n{self.tail()}")
            try:
                await self.ready_check()
                return
            except Exception as err:  # noqa: BLE001 - not ready yet, whatever the reason
                last = f"{type(err).__name__}: {err}"
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout_s}s ({last}):\n{self.tail()}")

    async def restart(self) -> None:
        self.start()
        await self.ready()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


async def poll_until(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.5
) -> bool:
    """Whether ``condition`` held within ``timeout_s``; a probe that raises counts as "not yet"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if await condition():
                return True
        except Exception:  # noqa: BLE001, S110 - e.g. the broker is still coming back
            pass
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)


def http_ready(port: int, path: str = "/readyz") -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        async with httpx.AsyncClient(timeout=3) as client:
            response = await client.get(f"http://{HOST}:{port}{path}")
            response.raise_for_status()

    return check


def in_thread(check: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await asyncio.to_thread(check)

    return run


class Webhook:
    """The organisers' endpoint the notifier posts to: remembers every delivery it gets."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.received: list[str] = []  # Idempotency-Key of every POST, copies included
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.delay_s = delay_s  # a slow endpoint keeps deliveries in flight for a while

    async def handle(self, request: web.Request) -> web.Response:
        Notification.model_validate_json(await request.read())
        await asyncio.sleep(self.delay_s)
        self.received.append(request.headers["Idempotency-Key"])
        return web.Response(status=200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = stack.free_port()
        await web.TCPSite(self.runner, HOST, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Options:
    """What a private pipeline is made of."""

    workdir: Path
    events: int = 300
    seed: int = 42
    horizon_days: int = 120
    partitions: int = 6
    normalizer_batch: int = 500
    importer_batch: int = 500
    spotify_lookups: int = 20
    provider_timeout_s: float = 10.0
    webhook_delay_s: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)


class Pipeline:
    """Kafka, the MongoDB-wire server, S3 (gofakes3) and the sandbox, then the five services, all
    private and local.

    Everything listens on 127.0.0.1 on free ports and keeps its data under ``workdir``;
    topic names, groups and the database are the defaults, which is safe because no other
    process talks to these servers.
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        self.run = options.workdir.resolve()
        # stack.py's own layout under our work dir: its Kafka and store helpers (storage
        # format, server.properties, argv) are reused, so a private broker is configured
        # exactly like the shared one.
        self.run_dir = stack.RunDir(self.run)
        self.logs = self.run_dir.logs
        self.procs: dict[str, Proc] = {}
        self.ports: dict[str, int] = {}
        self.sandbox_url = ""
        self.webhook = Webhook(options.webhook_delay_s)
        self.env: dict[str, str] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self.started_at = time.monotonic()
        # The sandbox's world starts today (midnight UTC), so syncs from now find its events.
        self.world_start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    # ---------------------------------------------------------------- servers

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=f"{HOST}:{self.ports['kafka']}", request_timeout_ms=15_000
        )

    @property
    def mongo(self) -> MongoSettings:
        return MongoSettings.model_validate(
            {"url": f"mongodb://{HOST}:{self.ports['mongo']}/", "socket_timeout_ms": 60_000}
        )

    async def start(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        await self._servers()
        await self._bootstrap()
        await self.webhook.start()
        self.env = self._service_env()
        for name in SERVICES:
            self.procs[name] = self._service(name)
            self.procs[name].start()
        for name in SERVICES:
            await self.procs[name].ready()
        self._supervisor = asyncio.create_task(self._supervise())
        say(f"pipeline up in {time.monotonic() - self.started_at:.0f}s (work dir {self.run})")

    async def _servers(self) -> None:
        # No-ops when the jars and the binary are already built (build logs go to our dir).
        stack.build_kafka(self.run_dir)
        stack.build_mongo(self.run_dir)
        stack.build_s3(self.run_dir)
        kafka_ports = {"port": stack.free_port(), "controller": stack.free_port()}
        stack.kafka_prepare(kafka_ports, self.run_dir)
        kafka_argv = stack.kafka_command(kafka_ports, self.run_dir)
        store_port = {"port": stack.free_port()}
        store_argv = stack.mongo_command(store_port, self.run_dir)
        s3_port = {"port": stack.free_port()}
        self.ports.update(kafka=kafka_ports["port"], mongo=store_port["port"], s3=s3_port["port"])
        self.procs["kafka"] = Proc(
            "kafka",
            kafka_argv,
            self.logs / "kafka.log",
            ready=in_thread(lambda: stack.kafka_ready(kafka_ports)),
            ready_timeout_s=180,
        )
        self.procs["mongo"] = Proc(
            "mongo",
            store_argv,
            self.logs / "mongo.log",
            ready=in_thread(lambda: stack.mongo_ready(store_port)),
        )
        self.procs["s3"] = Proc(
            "s3",
            stack.s3_command(s3_port, self.run_dir),
            self.logs / "s3.log",
            ready=in_thread(lambda: stack.s3_ready(s3_port)),
        )
        sandbox_port = stack.free_port()
        self.ports["sandbox"] = sandbox_port
        self.sandbox_url = f"http://{HOST}:{sandbox_port}"
        today = self.world_start.strftime("%Y-%m-%dT%H:%M:%SZ")
        # Rate limits and quotas off: the figures are the pipeline's, not the providers'.
        off = [
            *("--tm-daily-quota", "0", "--tm-per-second", "0", "--sg-per-second", "0"),
            *("--eb-per-hour", "0", "--meetup-points", "0", "--spotify-window-requests", "0"),
        ]
        self.procs["sandbox"] = Proc(
            "sandbox",
            [
                sys.executable,
                "-m",
                "deploy.sandbox",
                "--host",
                HOST,
                "--port",
                str(sandbox_port),
                "--seed",
                str(self.options.seed),
                "--events",
                str(self.options.events),
                "--start",
                today,
                *off,
            ],
            self.logs / "sandbox.log",
            ready=http_ready(sandbox_port, "/_sandbox/health"),
            ready_timeout_s=600,  # a big world takes a while to build
        )
        for name in ("kafka", "mongo", "s3", "sandbox"):
            self.procs[name].supervised = False
            self.procs[name].start()
        for name in ("kafka", "mongo", "s3", "sandbox"):
            await self.procs[name].ready()

    async def _bootstrap(self) -> None:
        env = self._base_env()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shared.bootstrap", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"bootstrap failed:\n{out.decode(errors='replace')}")
        await ensure_topics(self.kafka, [Topic(REPLIES, None, "job id")])

    def _base_env(self) -> dict[str, str]:
        servers = {
            "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{self.ports['kafka']}",
            "MONGO_URL": f"mongodb://{HOST}:{self.ports['mongo']}/",
            "S3_ENDPOINT_URL": f"http://{HOST}:{self.ports['s3']}",
        }
        return service_env(servers, KAFKA_TOPIC_PARTITIONS=str(self.options.partitions))

    def _service_env(self) -> dict[str, str]:
        with httpx.Client(timeout=10) as client:
            directory = client.get(f"{self.sandbox_url}/_sandbox/directory").json()
        o = self.options
        providers = ("TICKETMASTER", "SEATGEEK", "EVENTBRITE", "MEETUP", "SPOTIFY")
        for name in ("normalizer", "importer", "notifier", "api", "ingestor"):
            self.ports[name] = stack.free_port()
        return {
            **self._base_env(),
            **client_env(self.sandbox_url),
            "MEETUP_GROUPS": json.dumps(directory["meetup_groups"]),
            **{f"{p}_RATE_PER_S": "0" for p in providers},
            **{f"{p}_TIMEOUT_S": str(o.provider_timeout_s) for p in providers},
            "TICKETMASTER_QUOTA": "1000000",
            "EVENTBRITE_QUOTA": "1000000",
            "SPOTIFY_MAX_LOOKUPS_PER_SYNC": str(o.spotify_lookups),
            "INGESTOR_ENABLE_AUTO_SYNC": "false",
            # Every sync polls every window again: the suite wants each round's changes.
            "INGESTOR_FRESHNESS_MINUTES": "0",
            "INGESTOR_HORIZON_DAYS": str(o.horizon_days),
            "NORMALIZER_DATA_DIR": str(self.run / "normalizer"),
            "NORMALIZER_BATCH_SIZE": str(o.normalizer_batch),
            "IMPORTER_BATCH_SIZE": str(o.importer_batch),
            "NOTIFIER_WEBHOOK_URL": f"http://{HOST}:{self.webhook.port}/hook",
            "NOTIFIER_BACKOFF_MAX_S": "5",
            "NOTIFIER_MAX_ATTEMPTS": "50",
            "API_RATE_LIMIT_PER_MINUTE": "0",
            **{f"{n.upper()}_HTTP_PORT": str(self.ports[n]) for n in SERVICES},
            **o.extra_env,
        }

    def _service(self, name: str) -> Proc:
        argv = {
            "normalizer": ["services.normalizer"],
            "importer": ["services.importer", "worker"],
            "notifier": ["services.importer", "notifier"],
            "api": ["services.api"],
            "ingestor": ["services.ingestor", "serve"],
        }[name]
        return Proc(
            name,
            [sys.executable, "-m", *argv],
            self.logs / f"{name}.log",
            env=self.env,
            ready=http_ready(self.ports[name]),
            ready_timeout_s=300 if name == "api" else 180,
        )

    async def _supervise(self) -> None:
        """What an orchestrator does: a service that exits on its own is started again."""
        while True:
            for proc in self.procs.values():
                if proc.supervised and proc.proc is not None and not proc.alive:
                    proc.crashes += 1
                    say(f"{proc.name} exited on its own (code {proc.proc.returncode}); restarting")
                    proc.start()
            await asyncio.sleep(1)

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for name in [*reversed(SERVICES), "sandbox", "s3", "mongo", "kafka"]:
            proc = self.procs.get(name)
            if proc is not None:
                await proc.stop(20)
        await self.webhook.stop()

    # ---------------------------------------------------------------- helpers for the scripts

    @contextlib.asynccontextmanager
    async def db(self, timeout_ms: int | None = None) -> AsyncIterator[Any]:
        """The pipeline's database; ``timeout_ms`` raises the socket timeout (long scans)."""
        mongo = self.mongo
        if timeout_ms is not None:
            mongo = mongo.model_copy(update={"socket_timeout_ms": timeout_ms})
        client = make_client(mongo, appname="marquee-bench")
        try:
            yield get_database(client, self.mongo)
        finally:
            await client.close()

    async def sandbox(self, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.request(
                method, f"{self.sandbox_url}/_sandbox/{path}", json=body
            )
            response.raise_for_status()
            return response.json()

    async def send_jobs(
        self,
        kind: JobKind = JobKind.SYNC,
        params: dict[str, Any] | None = None,
        providers: Sequence[Provider] = EVENT_PROVIDERS,
    ) -> list[IngestJob]:
        """A sync job per event provider on ingest.requests; answers come on REPLIES."""
        jobs = [
            IngestJob(
                provider=p,
                kind=kind,
                params=params or {"days": self.options.horizon_days},
                requested_by="bench",
                reply_to=REPLIES,
            )
            for p in providers
        ]
        await self.send("ingest.requests", [(j.job_id.encode(), j) for j in jobs])
        return jobs

    async def send(self, topic: str, messages: Sequence[tuple[bytes, Contract | bytes]]) -> None:
        producer = make_producer(self.kafka)
        await producer.start()
        try:
            for key, message in messages:
                if isinstance(message, bytes):
                    await producer.send(topic, message, key=key)
                else:
                    await producer.send(
                        topic, message.to_json_bytes(), key=key,
                        headers=ce_headers(message, "/bench"),
                    )  # fmt: skip
            await producer.flush()
        finally:
            await producer.stop()

    async def group_lag(self, name: str) -> int:
        """Records the service's consumer group has not committed yet (all partitions)."""
        group, topic = GROUPS[name]
        ends = await end_offsets(self.kafka, topic)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap_servers)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        return sum(end - done.get(tp, 0) for tp, end in ends.items())

    def token(self, role: str = "admin", subject: str = "bench") -> str:
        from services.api.auth import mint

        # The services get no API_* from our environment: they sign with the default dev secret.
        secret = ApiSettings.model_fields["jwt_secret"].default.get_secret_value()
        return mint(subject, role, secret=secret, ttl_s=6 * 3600)

    def api_url(self, path: str) -> str:
        return f"http://{HOST}:{self.ports['api']}{path}"


async def partitions(kafka: KafkaSettings, topic: str) -> list[TopicPartition]:
    """The topic's partitions, from the broker's metadata (none if the topic does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = [t for t in described if t.get("topic") == topic and not t.get("error_code")]
    return [TopicPartition(topic, p["partition"]) for t in found for p in t["partitions"]]


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[TopicPartition, int]:
    parts = await partitions(kafka, topic)
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(parts) if parts else {}
        return ends
    finally:
        await consumer.stop()


async def read_topic(kafka: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """The whole topic, start to its current end, in offset order per partition."""
    parts = await partitions(kafka, topic)
    if not parts:
        return []
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while any([await consumer.position(p) < ends[p] for p in parts]):
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                records += batch
        return records
    finally:
        await consumer.stop()


class Tail:
    """Follows a topic from a position, stamping when each record was seen (no group)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.seen: list[tuple[float, ConsumerRecord[bytes, bytes]]] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer[bytes, bytes] | None = None

    async def start(self, from_beginning: bool = False) -> None:
        parts = await partitions(self.kafka, self.topic)
        consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        consumer.assign(parts)
        if from_beginning:
            await consumer.seek_to_beginning(*parts)
        else:
            await consumer.seek_to_end(*parts)
            for part in parts:  # resolve the position now, not at the first fetch
                await consumer.position(part)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.monotonic()
            for batch in batches.values():
                self.seen += [(now, r) for r in batch]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
