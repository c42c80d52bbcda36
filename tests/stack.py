"""Where the integration tests find their servers: env vars, testcontainers, or a private stack.

The private stack is the local stack in a run dir of its own (``.cache/test-run``), never the
demo's (``.cache/run``): a test run cannot read or write what ``./marquee up`` holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deploy" / "local" / "stack.py"
ENV_KEYS = {"kafka": "KAFKA_BOOTSTRAP_SERVERS", "mongo": "MONGO_URL", "s3": "S3_ENDPOINT_URL"}
CACHE = Path(os.environ.get("MARQUEE_CACHE_DIR", ROOT / ".cache")).resolve()
DEMO_RUN = CACHE / "run"
TEST_RUN = Path(os.environ.get("MARQUEE_TEST_RUN_DIR") or CACHE / "test-run").resolve()


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    mongo_url: str
    s3_url: str
    origin: str

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "MONGO_URL": self.mongo_url,
            "S3_ENDPOINT_URL": self.s3_url,
        }


def docker_available() -> bool:
    """Whether a Docker engine answers (the client alone is not enough)."""
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def stack_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """deploy/local/stack.py on the tests' run dir (never the demo's), in ``env`` if given."""
    # A cold start builds the MongoDB-wire server with cargo first (6-10 min on 2 cores).
    # Ports pinned for the demo (MARQUEE_KAFKA_PORT, ...) are the demo's: pick our own.
    given = os.environ if env is None else env
    env = {k: v for k, v in given.items() if not re.fullmatch(r"MARQUEE_\w+_PORT", k)}
    return subprocess.run(
        [sys.executable, str(STACK), "--run-dir", str(TEST_RUN), *args],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )


def demo_endpoints() -> dict[str, str]:
    """The endpoints of the demo stack (``./marquee up``) as its state file records them."""
    try:
        state = json.loads((DEMO_RUN / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    found = {}
    for component, key in ENV_KEYS.items():
        port = state.get(component, {}).get("port")
        if port:
            scheme = {"kafka": "{}", "mongo": "mongodb://{}/", "s3": "http://{}"}[component]
            found[key] = scheme.format(f"127.0.0.1:{port}")
    return found


@contextlib.contextmanager
def localstack_script(components: list[str]) -> Iterator[dict[str, str]]:
    """Start the named components of the tests' own stack unless running; stop what we started.

    When this call started every one of them (and ``MARQUEE_KEEP_STACK`` is not 1), the run
    dir is deleted afterwards too: the tests leave no data behind.
    """
    status = stack_script("status", *components)
    running = {
        line.split()[0]
        for line in status.stdout.splitlines()[1:]
        if line.split()[1:2] == ["running"] and "not answering" not in line
    }
    to_start = [c for c in components if c not in running]
    if to_start:
        up = stack_script("up", *to_start)
        if up.returncode != 0:
            stack_script("down", *to_start)  # leave nothing half-started behind
            raise RuntimeError(f"local stack failed to start:\n{up.stdout}\n{up.stderr}")
    env = stack_script("env")
    found = dict(
        line.removeprefix("export ").split("=", 1)
        for line in env.stdout.splitlines()
        if line.startswith("export ")
    )
    try:
        yield {key: found[key] for c in components for key in [ENV_KEYS[c]]}
    finally:
        if to_start and os.environ.get("MARQUEE_KEEP_STACK") != "1":
            stack_script("down", *to_start)
            if set(to_start) == set(ENV_KEYS):
                shutil.rmtree(TEST_RUN / "kafka", ignore_errors=True)
                shutil.rmtree(TEST_RUN / "mongo", ignore_errors=True)
                shutil.rmtree(TEST_RUN / "s3", ignore_errors=True)


@contextlib.contextmanager
def containers() -> Iterator[dict[str, str]]:
    """The same servers from official images, where a Docker engine runs."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    with (
        KafkaContainer("apache/kafka:4.1.2").with_kraft() as kafka,
        MongoDbContainer("mongo:7") as mongo,
        DockerContainer("motoserver/moto:5.1.18").with_exposed_ports(5000) as moto,
    ):
        wait_for_logs(moto, "Running on", timeout=60)
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
            "MONGO_URL": mongo.get_connection_url(),
            "S3_ENDPOINT_URL": (
                f"http://{moto.get_container_host_ip()}:{moto.get_exposed_port(5000)}"
            ),
        }


@contextlib.contextmanager
def endpoints() -> Iterator[Endpoints]:
    """Servers named by the environment win; the rest come from Docker or the local stack."""
    given = {key: os.environ[key] for key in ENV_KEYS.values() if os.environ.get(key)}
    demo = demo_endpoints()
    for key, value in given.items():
        if demo.get(key) == value:
            raise RuntimeError(
                f"{key}={value} is the demo stack's (./marquee up); the tests never touch the "
                f"demo: unset {key} so they start their own servers, or name other servers"
            )
    missing = [c for c, key in ENV_KEYS.items() if key not in given]
    if not missing:
        yield Endpoints(
            given["KAFKA_BOOTSTRAP_SERVERS"], given["MONGO_URL"], given["S3_ENDPOINT_URL"], "env"
        )
        return
    use_docker = os.environ.get("MARQUEE_TEST_DOCKER", "auto") != "0" and docker_available()
    source = containers() if use_docker else localstack_script(missing)
    with source as started:
        merged = {**started, **given}
        yield Endpoints(
            merged["KAFKA_BOOTSTRAP_SERVERS"],
            merged["MONGO_URL"],
            merged["S3_ENDPOINT_URL"],
            "testcontainers" if use_docker else "local stack",
        )
