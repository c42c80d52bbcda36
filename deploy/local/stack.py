"""Local stack without Docker: real Kafka (KRaft), a MongoDB-wire server and S3 on loopback.

Usage: stack.py [--run-dir DIR] {up,down,status,env,logs} [component ...]

The MongoDB-wire server is SecantusDB's ``secantusd-rs`` (WiredTiger storage), built once with
cargo from crates.io at a pinned version into ``$MARQUEE_TOOLS_DIR`` (default
``~/.cache/marquee``, outside the clone, so every clone on a machine shares the build); the S3
server is gofakes3 with its bolt (one-file) backend, built the same way with ``go install``
from the Go module proxy, so the raw archive survives a restart. Jars,
data, logs and pid files live under ``$MARQUEE_CACHE_DIR`` (default ``.cache/`` in the repo,
git-ignored); one stack's data, logs and state under its run dir (``.cache/run`` for
``./marquee up``; the tests use their own).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("MARQUEE_CACHE_DIR", ROOT / ".cache")).resolve()
HOST = "127.0.0.1"

KAFKA_VERSION = os.environ.get("MARQUEE_KAFKA_VERSION", "4.1.2")
KAFKA_JARS = CACHE / "kafka" / f"jars-{KAFKA_VERSION}"
# Builds shared by every clone on this machine: outside the repo, so a clean clone reuses them.
TOOLS = Path(
    os.environ.get("MARQUEE_TOOLS_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "marquee"
).resolve()
SECANTUS_CRATE = "secantus-mdb"
# Pinned exactly: a beta whose next release may change behaviour. The crate declares rustc 1.98
# but builds and runs correctly on 1.95, hence --ignore-rust-version below.
SECANTUS_VERSION = "0.5.3-beta.196"
SECANTUS_ROOT = TOOLS / f"{SECANTUS_CRATE}-{SECANTUS_VERSION}"
SECANTUS_BIN = SECANTUS_ROOT / "bin" / "secantusd-rs"
GOFAKES3_MODULE = "github.com/johannesboyne/gofakes3"
GOFAKES3_VERSION = "v1.2.0"
GOFAKES3_BIN = TOOLS / f"gofakes3-{GOFAKES3_VERSION}" / "gofakes3"


@dataclass(frozen=True)
class RunDir:
    """Where one stack keeps its data, logs, pid files and state.

    Passed to every function that writes or reads there, so another program (the system
    benchmark) can run a private stack beside the shared one with the same helpers.
    """

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def kafka(self) -> Path:
        return self.root / "kafka"

    @property
    def mongo(self) -> Path:
        return self.root / "mongo"


DEFAULT_RUN = RunDir(CACHE / "run")


class StackError(RuntimeError):
    """A problem the user can act on; printed without a traceback."""


def say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- state and ports


def load_state(run: RunDir = DEFAULT_RUN) -> dict[str, dict[str, object]]:
    if run.state.exists():
        try:
            data: dict[str, dict[str, object]] = json.loads(run.state.read_text())
            return data
        except json.JSONDecodeError:
            say(f"ignoring unreadable {run.state}")
    return {}


def save_state(state: dict[str, dict[str, object]], run: RunDir = DEFAULT_RUN) -> None:
    run.root.mkdir(parents=True, exist_ok=True)
    tmp = run.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(run.state)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def choose_port(component: str, label: str, previous: object) -> int:
    """An env override (must be free), else the port used last time if free, else a new one."""
    env_name = f"MARQUEE_{component.upper()}_{label.upper()}"
    wanted = os.environ.get(env_name)
    if wanted:
        port = int(wanted)
        if not port_free(port):
            raise StackError(
                f"{env_name}={port} but {HOST}:{port} is busy (another process listens there); "
                f"free it or unset {env_name} to let the stack pick a port"
            )
        return port
    if isinstance(previous, int) and port_free(previous):
        return previous
    if isinstance(previous, int):
        say(f"{component}: port {previous} is now busy (not ours); picking another")
    return free_port()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return True
    return status != "Z"


def ours(pid: int, argv: object) -> bool:
    """Whether ``pid`` still runs the exact command this stack started (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return False
    return isinstance(argv, list) and [c.decode() for c in cmdline] == argv


# --------------------------------------------------------------------------- builds


def stamp_of(*paths: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_build(
    cmd: list[str], *, cwd: Path, env: dict[str, str] | None, what: str, run: RunDir
) -> None:
    log = run.logs / f"build-{what.split()[0]}.log"
    run.logs.mkdir(parents=True, exist_ok=True)
    say(f"building {what} (log: {log}) ...")
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        raise StackError(f"building {what} failed (exit {proc.returncode}; log: {log}):\n{tail}")
    say(f"built {what} in {time.monotonic() - started:.0f}s")


def build_kafka(run: RunDir = DEFAULT_RUN) -> None:
    pom = HERE / "kafka" / "pom.xml"
    stamp = KAFKA_JARS / ".stamp"
    want = stamp_of(pom, extra=KAFKA_VERSION)
    if stamp.exists() and stamp.read_text() == want:
        return
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StackError("Kafka needs Java 17+ and Maven (apt-get install openjdk-17-jdk maven)")
    shutil.rmtree(KAFKA_JARS, ignore_errors=True)
    run_build(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-Dkafka.version={KAFKA_VERSION}",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={KAFKA_JARS}",
        ],
        cwd=HERE / "kafka",
        env=None,
        what=f"kafka {KAFKA_VERSION} jars (Maven Central)",
        run=run,
    )
    stamp.write_text(want)


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """One build at a time per machine: two clones starting at once must not both build."""
    TOOLS.mkdir(parents=True, exist_ok=True)
    with (TOOLS / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_mongo(run: RunDir = DEFAULT_RUN) -> None:
    """``cargo install`` SecantusDB's server at the pinned version, once per machine."""
    if SECANTUS_BIN.exists():
        return
    with build_lock(SECANTUS_CRATE):
        if SECANTUS_BIN.exists():  # another process built it while we waited
            return
        if shutil.which("cargo") is None:
            raise StackError(
                "the embedded MongoDB-wire server (SecantusDB's secantusd-rs) is built with cargo, "
                "which is not on PATH: install Rust 1.95+ (https://rustup.rs), or set MONGO_URL "
                "to a running MongoDB 7 for the tests"
            )
        staging = SECANTUS_ROOT.with_name(SECANTUS_ROOT.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        run_build(
            [
                "cargo",
                "install",
                SECANTUS_CRATE,
                "--version",
                SECANTUS_VERSION,
                "--locked",  # the crate's own Cargo.lock: the dependency versions it shipped with
                "--ignore-rust-version",
                "--root",
                str(staging),
            ],
            cwd=TOOLS,
            env=None,
            what=f"secantus-mdb {SECANTUS_VERSION} (crates.io, cargo; 6-10 min cold on 2 cores)",
            run=run,
        )
        shutil.rmtree(SECANTUS_ROOT, ignore_errors=True)
        staging.rename(SECANTUS_ROOT)  # whole or not at all: a killed build leaves no binary


# --------------------------------------------------------------------------- components


@dataclass
class Component:
    name: str
    ports: tuple[str, ...]  # labels, the first is the client port
    build: Callable[[RunDir], None]
    command: Callable[[dict[str, int], RunDir], list[str]]
    ready: Callable[[dict[str, int]], None]  # raises until ready
    prepare: Callable[[dict[str, int], RunDir], None] = lambda ports, run: None
    start_timeout_s: float = 90.0
    # Once ready: checks what the server can do, returns a line to show (raises StackError).
    probe: Callable[[dict[str, int]], str] | None = None
    # Extra environment for the process, from its ports and the stack's state (services).
    env: Callable[[dict[str, int], dict[str, dict[str, object]], RunDir], dict[str, str]] | None = (
        None
    )

    def pidfile(self, run: RunDir) -> Path:
        return run.root / f"{self.name}.pid"

    def logfile(self, run: RunDir) -> Path:
        return run.logs / f"{self.name}.log"

    def pid(self, run: RunDir) -> int | None:
        try:
            pid = int(self.pidfile(run).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid


# Kafka ------------------------------------------------------------------------------------


def kafka_prepare(ports: dict[str, int], run: RunDir = DEFAULT_RUN) -> None:
    run.kafka.mkdir(parents=True, exist_ok=True)
    data = run.kafka / "data"
    props = run.kafka / "server.properties"
    props.write_text(
        "\n".join(
            [
                "# written by deploy/local/stack.py on every start",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{HOST}:{ports['controller']}",
                f"listeners=PLAINTEXT://{HOST}:{ports['port']},CONTROLLER://{HOST}:{ports['controller']}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{ports['port']}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=6",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=12",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.hours=168",
                "",
            ]
        )
    )
    log4j = run.kafka / "log4j2.yaml"
    log4j.write_text((HERE / "kafka" / "log4j2.yaml").read_text())
    if not (data / "meta.properties").exists():
        cluster_id = kafka_cluster_id()
        proc = subprocess.run(
            [
                "java",
                "-cp",
                f"{KAFKA_JARS}/*",
                f"-Dlog4j2.configurationFile={log4j}",
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")


def kafka_cluster_id() -> str:
    """A random Kafka cluster id that never starts with "-" (read as an option otherwise)."""
    # Kafka's own Uuid.randomUuid draws again for the same reason; one id in 64 started with "-".
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_command(ports: dict[str, int], run: RunDir = DEFAULT_RUN) -> list[str]:
    heap = os.environ.get("MARQUEE_KAFKA_HEAP", "512m")
    return [
        "java",
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={run.kafka / 'log4j2.yaml'}",
        f"-Dkafka.logs.dir={run.logs}",
        "-cp",
        f"{KAFKA_JARS}/*",
        "kafka.Kafka",
        str(run.kafka / "server.properties"),
    ]


def kafka_ready(ports: dict[str, int]) -> None:
    """A real client round trip: produce one record and read it back."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    # Connection errors are expected while the broker starts; the caller reports the last one.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    servers = f"{HOST}:{ports['port']}"
    topic = "_marquee_ready"
    token = uuid.uuid4().hex.encode()

    async def round_trip() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", request_timeout_ms=5000)
        try:
            await producer.start()
            meta = await producer.send_and_wait(topic, token, partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=servers, enable_auto_commit=False, request_timeout_ms=5000
        )
        try:
            await consumer.start()
            from aiokafka import TopicPartition

            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            batch = await consumer.getmany(tp, timeout_ms=5000)
            if not any(r.value == token for r in batch.get(tp, [])):
                raise RuntimeError("produced record not read back yet")
        finally:
            await consumer.stop()

    asyncio.run(asyncio.wait_for(round_trip(), 20))


# MongoDB wire: SecantusDB ------------------------------------------------------------------


def mongo_command(ports: dict[str, int], run: RunDir = DEFAULT_RUN) -> list[str]:
    config = run.mongo / "secantusd.toml"
    if not config.exists():
        # An explicit (empty) config turns off its search of ~/.secantus and /etc/secantus.
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("# written by deploy/local/stack.py; every setting is a flag\n")
    return [
        str(SECANTUS_BIN),
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(ports["port"]),
        "--storage-path",
        str(run.mongo / "data"),
        # Without it a j:true write is acknowledged before the log is fsynced.
        "--sync-on-commit",
        # WiredTiger's default takes 4 GB; a dev box shares its memory with Kafka and the
        # services. 2 GB holds a 100,000-performance catalogue's data and indexes: with 512 MB
        # each write evicted pages, and the normalizer made 282 records/s there instead of 456.
        "--cache-size",
        os.environ.get("MARQUEE_MONGO_CACHE_SIZE", "2G"),
        "--log-level",
        os.environ.get("MARQUEE_MONGO_LOG_LEVEL", "WARNING"),
    ]


def mongo_ready(ports: dict[str, int]) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://{HOST}:{ports['port']}/", serverSelectionTimeoutMS=2000
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


def mongo_probe(ports: dict[str, int]) -> str:
    """What the server is and the features checked; StackError when one is missing."""
    from pymongo import AsyncMongoClient

    from shared.mongo import StoreCapabilityError, probe_capabilities

    async def probe() -> str:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            f"mongodb://{HOST}:{ports['port']}/", serverSelectionTimeoutMS=5000
        )
        try:
            # The database the services use by default: the probe leaves nothing behind there.
            found = await probe_capabilities(client[os.environ.get("MONGO_DATABASE", "marquee")])
        finally:
            await client.close()
        return f"{found.server}: {', '.join(found.checked)}"

    try:
        return asyncio.run(probe())
    except StoreCapabilityError as err:
        raise StackError(str(err)) from err


# S3 (gofakes3, bolt backend) ---------------------------------------------------------------


def build_s3(run: RunDir = DEFAULT_RUN) -> None:
    """``go install`` gofakes3's server at the pinned version, once per machine."""
    if GOFAKES3_BIN.exists():
        return
    with build_lock("gofakes3"):
        if GOFAKES3_BIN.exists():  # another process built it while we waited
            return
        if shutil.which("go") is None:
            raise StackError(
                "the local S3 server (gofakes3) is built with Go, which is not on PATH: install "
                "Go 1.21+ (apt-get install golang-go), or set S3_ENDPOINT_URL to a running S3"
            )
        staging = GOFAKES3_BIN.parent.with_name(GOFAKES3_BIN.parent.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        run_build(
            ["go", "install", f"{GOFAKES3_MODULE}/cmd/gofakes3@{GOFAKES3_VERSION}"],
            cwd=TOOLS,
            env={**os.environ, "GOBIN": str(staging), "GOFLAGS": "-buildvcs=false"},
            what=f"gofakes3 {GOFAKES3_VERSION} (Go module proxy, go install; ~30 s cold)",
            run=run,
        )
        shutil.rmtree(GOFAKES3_BIN.parent, ignore_errors=True)
        staging.rename(GOFAKES3_BIN.parent)  # whole or not at all


def s3_command(ports: dict[str, int], run: RunDir = DEFAULT_RUN) -> list[str]:
    # One bbolt file holds every bucket and object: `down` and `up` keep the raw archive.
    data = run.root / "s3"
    data.mkdir(parents=True, exist_ok=True)
    return [
        str(GOFAKES3_BIN),
        "-backend",
        "bolt",
        "-bolt.db",
        str(data / "s3.db"),
        "-host",
        f"{HOST}:{ports['port']}",
        # A line per request would grow the log by the archive's size in lines; errors still show.
        "-quiet",
    ]


def s3_ready(ports: dict[str, int]) -> None:
    import urllib.request

    # ListBuckets: answered only once the bolt file is open.
    with urllib.request.urlopen(f"http://{HOST}:{ports['port']}/", timeout=2) as resp:
        if resp.status != 200:
            raise RuntimeError(f"S3 answered {resp.status}")


# provider sandbox ------------------------------------------------------------------------


def sandbox_command(ports: dict[str, int]) -> list[str]:
    # The demo world: MARQUEE_SANDBOX_EVENTS performances from seed MARQUEE_SANDBOX_SEED.
    return [
        sys.executable,
        "-m",
        "deploy.sandbox",
        "--host",
        HOST,
        "--port",
        str(ports["port"]),
        "--seed",
        os.environ.get("MARQUEE_SANDBOX_SEED", "42"),
        "--events",
        os.environ.get("MARQUEE_SANDBOX_EVENTS", "5000"),
        # The world starts today, so "the next 90 days" of the ingestor finds its events.
        "--start",
        os.environ.get("MARQUEE_SANDBOX_START", time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())),
    ]


def sandbox_ready(ports: dict[str, int]) -> None:
    import urllib.request

    url = f"http://{HOST}:{ports['port']}/_sandbox/health"
    with urllib.request.urlopen(url, timeout=2) as resp:
        if resp.status != 200:
            raise RuntimeError(f"sandbox answered {resp.status}")


def sandbox_env(base: str) -> dict[str, str]:
    """Provider settings aimed at the sandbox; for a real provider set the same variables.

    Call rates stay under the sandbox's (= the real providers') limits, a little faster than
    the conservative production defaults so the demo's first sync takes a minute, not ten.
    Meetup keeps its default: its points budget is what bounds the first sync already.
    """
    import urllib.request

    from deploy.sandbox.credentials import client_env

    # base is the loopback URL this script built from its own state file.
    with urllib.request.urlopen(f"{base}/_sandbox/directory", timeout=5) as resp:  # noqa: S310
        directory = json.loads(resp.read())
    return {
        **client_env(base),
        "MEETUP_GROUPS": json.dumps(directory["meetup_groups"], separators=(",", ":")),
        "TICKETMASTER_RATE_PER_S": "4",
        "SEATGEEK_RATE_PER_S": "8",
        "EVENTBRITE_RATE_PER_S": "8",
        "SPOTIFY_RATE_PER_S": "5",
        "SPOTIFY_MAX_LOOKUPS_PER_SYNC": "150",
    }


# services (started after the topics exist) -----------------------------------------------


def service(
    name: str, argv: tuple[str, ...], port_var: str, *, providers: bool = False, **extra: str
) -> tuple[
    Callable[[dict[str, int], RunDir], list[str]],
    Callable[[dict[str, int], dict[str, dict[str, object]], RunDir], dict[str, str]],
    Callable[[dict[str, int]], None],
]:
    """Command, environment and readiness check of one Marquee service process."""

    def command(ports: dict[str, int], run: RunDir) -> list[str]:
        return [sys.executable, "-m", *argv]

    def env(
        ports: dict[str, int], state: dict[str, dict[str, object]], run: RunDir
    ) -> dict[str, str]:
        # The ingestor calls the providers: the sandbox's, when this stack runs it.
        sandbox = providers and status_of(COMPONENTS["sandbox"], state, run)[0] == "running"
        return {
            **endpoints(state, sandbox=sandbox),
            "MARQUEE_ENV": os.environ.get("MARQUEE_ENV", "dev"),
            port_var: str(ports["port"]),
            **{k: v.format(run=run.root) for k, v in extra.items()},
        }

    def ready(ports: dict[str, int]) -> None:
        import urllib.request

        url = f"http://{HOST}:{ports['port']}/readyz"
        with urllib.request.urlopen(url, timeout=3) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{name} answered {resp.status}")

    return command, env, ready


SERVICES = {
    # The scheduler (a sync every INGESTOR_SYNC_INTERVAL_HOURS), on-demand jobs, health.
    "ingestor": service(
        "ingestor", ("services.ingestor", "serve"), "INGESTOR_HTTP_PORT", providers=True
    ),
    "normalizer": service(
        "normalizer",
        ("services.normalizer",),
        "NORMALIZER_HTTP_PORT",
        NORMALIZER_DATA_DIR="{run}/normalizer",
    ),
    "importer": service("importer", ("services.importer", "worker"), "IMPORTER_HTTP_PORT"),
    "notifier": service("notifier", ("services.importer", "notifier"), "NOTIFIER_HTTP_PORT"),
    "api": service("api", ("services.api",), "API_HTTP_PORT"),
}


def services_check(run: RunDir) -> None:
    import importlib.util

    if importlib.util.find_spec("services.normalizer") is None:
        raise StackError("the services package is not installed: run ./marquee setup first")


def sandbox_check(run: RunDir) -> None:
    import importlib.util

    if importlib.util.find_spec("deploy.sandbox") is None:
        raise StackError("the deploy package is not installed: run ./marquee setup first")


COMPONENTS: dict[str, Component] = {
    "kafka": Component(
        "kafka",
        ("port", "controller"),
        build_kafka,
        kafka_command,
        kafka_ready,
        prepare=kafka_prepare,
        start_timeout_s=120,
    ),
    "mongo": Component(
        "mongo", ("port",), build_mongo, mongo_command, mongo_ready, probe=mongo_probe
    ),
    "s3": Component("s3", ("port",), build_s3, s3_command, s3_ready),
    # The sandbox keeps nothing on disk: its command does not need the run dir.
    "sandbox": Component(
        "sandbox",
        ("port",),
        sandbox_check,
        lambda ports, run: sandbox_command(ports),
        sandbox_ready,
    ),
    **{
        name: Component(
            name,
            ("port",),
            services_check,
            command,
            ready,
            # The API loads its read model before it is ready: a large catalogue takes a while.
            start_timeout_s=300 if name == "api" else 120,
            env=env,
        )
        for name, (command, env, ready) in SERVICES.items()
    },
}
# Without these nothing runs; the sandbox only stands in for the providers.
CORE = ("kafka", "mongo", "s3")


# --------------------------------------------------------------------------- commands


def status_of(
    comp: Component, state: dict[str, dict[str, object]], run: RunDir
) -> tuple[str, int | None]:
    pid = comp.pid(run)
    if pid is None:
        return "stopped", None
    if not pid_alive(pid):
        return "stale pid file", pid
    if not ours(pid, state.get(comp.name, {}).get("argv")):
        return "pid reused by another process", pid
    return "running", pid


def start(comp: Component, state: dict[str, dict[str, object]], run: RunDir) -> Callable[[], None]:
    """Start ``comp`` if needed; returns a function that waits until it is ready."""
    entry = state.get(comp.name, {})
    status, pid = status_of(comp, state, run)
    if status == "running":
        ports = {label: int(str(entry[label])) for label in comp.ports}
        say(f"{comp.name}: already running (pid {pid}, port {ports['port']})")
        return lambda: wait_ready(comp, ports, pid, run)
    if status != "stopped":
        say(f"{comp.name}: removing {status} ({comp.pidfile(run)})")
        comp.pidfile(run).unlink(missing_ok=True)
    comp.build(run)
    ports = {label: choose_port(comp.name, label, entry.get(label)) for label in comp.ports}
    comp.prepare(ports, run)
    run.logs.mkdir(parents=True, exist_ok=True)
    argv = comp.command(ports, run)
    with comp.logfile(run).open("ab") as out:
        out.write(f"\n==== start {time.strftime('%Y-%m-%dT%H:%M:%S%z')} ====\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=run.root,
            start_new_session=True,  # survives the shell that ran `up`
            env={**os.environ, **comp.env(ports, state, run)} if comp.env else None,
        )
    comp.pidfile(run).write_text(str(proc.pid))
    state[comp.name] = {**ports, "pid": proc.pid, "argv": argv}
    save_state(state, run)
    say(f"{comp.name}: started pid {proc.pid} on {HOST}:{ports['port']}")
    return lambda: wait_ready(comp, ports, proc.pid, run)


def wait_ready(comp: Component, ports: dict[str, int], pid: int | None, run: RunDir) -> None:
    deadline = time.monotonic() + comp.start_timeout_s
    last = ""
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            tail = "".join(comp.logfile(run).read_text(errors="replace").splitlines(True)[-20:])
            raise StackError(f"{comp.name} exited during start; last log lines:\n{tail}")
        try:
            comp.ready(ports)
        except Exception as err:  # noqa: BLE001 - not ready yet, whatever the reason
            last = f"{type(err).__name__}: {err}"
            time.sleep(0.5)
            continue
        return
    raise StackError(
        f"{comp.name} not ready after {comp.start_timeout_s:.0f}s ({last}); see {comp.logfile(run)}"
    )


def stop(
    comp: Component, state: dict[str, dict[str, object]], run: RunDir, timeout_s: float = 20
) -> None:
    status, pid = status_of(comp, state, run)
    if status == "stopped":
        say(f"{comp.name}: not running")
        return
    if status != "running" or pid is None:
        say(f"{comp.name}: {status}; nothing of ours to stop")
        comp.pidfile(run).unlink(missing_ok=True)
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        say(f"{comp.name}: did not stop in {timeout_s:.0f}s, killing")
        os.killpg(pid, signal.SIGKILL)
    comp.pidfile(run).unlink(missing_ok=True)
    say(f"{comp.name}: stopped (pid {pid})")


def endpoints(state: dict[str, dict[str, object]], *, sandbox: bool = True) -> dict[str, str]:
    found = {
        "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{state['kafka']['port']}",
        "MONGO_URL": f"mongodb://{HOST}:{state['mongo']['port']}/",
        "S3_ENDPOINT_URL": f"http://{HOST}:{state['s3']['port']}",
    }
    if sandbox and "sandbox" in state:
        found.update(sandbox_env(f"http://{HOST}:{state['sandbox']['port']}"))
    return found


def select(names: list[str]) -> list[Component]:
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise StackError(f"unknown component(s) {', '.join(unknown)}; know {', '.join(COMPONENTS)}")
    return [COMPONENTS[n] for n in (names or list(COMPONENTS))]


def cmd_up(names: list[str], run: RunDir = DEFAULT_RUN) -> int:
    state = load_state(run)
    comps = select(names)
    # Servers and the sandbox first, ready, then the services that read their endpoints.
    for group in (
        [c for c in comps if c.name not in SERVICES],
        [c for c in comps if c.name in SERVICES],
    ):
        waiters = [start(comp, state, run) for comp in group]
        for wait in waiters:
            wait()
    for comp in comps:
        if comp.probe is not None:
            ports = {label: int(str(state[comp.name][label])) for label in comp.ports}
            say(f"{comp.name}: {comp.probe(ports)}")
    say("ready")
    return cmd_status(names, run)


def cmd_down(names: list[str], purge: bool, run: RunDir = DEFAULT_RUN) -> int:
    state = load_state(run)
    for comp in reversed(select(names)):
        stop(comp, state, run)
    if purge and not names:
        shutil.rmtree(run.root, ignore_errors=True)
        say(f"removed data and logs in {run.root}")
    return 0


def cmd_status(names: list[str], run: RunDir = DEFAULT_RUN) -> int:
    state = load_state(run)
    all_running = True
    print(f"{'component':<10} {'state':<30} {'pid':>8}  endpoint")
    for comp in select(names):
        status, pid = status_of(comp, state, run)
        entry = state.get(comp.name, {})
        endpoint = f"{HOST}:{entry['port']}" if "port" in entry else "-"
        if status == "running":
            try:
                comp.ready({label: int(str(entry[label])) for label in comp.ports})
            except Exception as err:  # noqa: BLE001 - shown to the user
                status = f"running, not answering ({type(err).__name__})"
                all_running = False
        else:
            all_running = False
        print(f"{comp.name:<10} {status:<30} {pid or '-':>8}  {endpoint}")
    return 0 if all_running else 3


def cmd_env(run: RunDir = DEFAULT_RUN) -> int:
    state = load_state(run)
    running = {c.name for c in COMPONENTS.values() if status_of(c, state, run)[0] == "running"}
    missing = [name for name in CORE if name not in running]
    if missing:
        say(f"not running: {', '.join(missing)} (start with: deploy/local/stack.py up)")
        return 1
    for key, value in endpoints(state, sandbox="sandbox" in running).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_logs(names: list[str], lines: int, follow: bool, run: RunDir = DEFAULT_RUN) -> int:
    files = [str(c.logfile(run)) for c in select(names) if c.logfile(run).exists()]
    if not files:
        say("no logs yet")
        return 1
    args = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + files
    return subprocess.call(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(os.environ.get("MARQUEE_RUN_DIR") or DEFAULT_RUN.root),
        help="where this stack keeps data, logs and state (default .cache/run; MARQUEE_RUN_DIR)",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, help_ in (
        ("up", "build what is missing, start, wait until ready"),
        ("down", "stop what this stack started"),
        ("status", "show each component (exit 3 if any is not answering)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("components", nargs="*", help=f"any of {', '.join(COMPONENTS)}")
        if name == "down":
            p.add_argument("--purge", action="store_true", help="also delete data and logs")
    sub.add_parser("env", help="print endpoints as shell exports")
    p = sub.add_parser("logs", help="show log tails")
    p.add_argument("components", nargs="*")
    p.add_argument("-n", "--lines", type=int, default=40)
    p.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args(argv)
    run = RunDir(args.run_dir.resolve())
    try:
        if args.cmd == "up":
            return cmd_up(args.components, run)
        if args.cmd == "down":
            return cmd_down(args.components, args.purge, run)
        if args.cmd == "status":
            return cmd_status(args.components, run)
        if args.cmd == "env":
            return cmd_env(run)
        return cmd_logs(args.components, args.lines, args.follow, run)
    except StackError as err:
        say(f"error: {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
