"""The local stack as `./marquee up` runs it: the ingestor service, an S3 archive kept on disk."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.contracts import IngestJob, IngestReply, JobKind, JobStatus, Provider
from tests.integration.test_ingestor import listed_ids
from tests.sandbox import running_sandbox, sandbox_env
from tests.stack import Endpoints, stack_script

ROOT = Path(__file__).resolve().parents[2]
INGESTOR = (sys.executable, "-m", "services.ingestor")
QUIET = ("--log-file", os.devnull)  # the JSON log lines are not what these tests read


@pytest.fixture
def local(stack: Endpoints) -> Endpoints:
    if stack.origin != "local stack":
        # The stack script starts and stops the project's own servers; named or containerised
        # ones are not its to restart.
        pytest.skip(f"servers from {stack.origin}: the stack script does not manage them")
    return stack


@pytest.fixture
def stack_services(local: Endpoints, service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The sandbox and the ingestor service started by the stack script, as `up` starts them."""
    env = {
        **service_env,
        "MARQUEE_SANDBOX_EVENTS": "300",
        # The scheduler's first sync would crawl the whole sandbox: this test asks for one event.
        "INGESTOR_ENABLE_AUTO_SYNC": "false",
    }
    env.pop("ENABLE_AUTO_SYNC", None)
    up = stack_script("up", "sandbox", "ingestor", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield env
    finally:
        stack_script("down", "ingestor", "sandbox", env=env)


async def test_the_stack_runs_the_ingestor_service_on_the_sandbox(
    stack_services: dict[str, str], kafka_settings: Any
) -> None:
    status = stack_script("status", env=stack_services)
    rows = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
    assert "ingestor" in rows, status.stdout
    assert re.search(r"^ingestor\s+running\s+\d+", rows["ingestor"]), status.stdout
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in stack_script("env", env=stack_services).stdout.splitlines()
    )
    sandbox = env["TICKETMASTER_BASE_URL"].split("/ticketmaster")[0]
    now = datetime.now(UTC)
    wanted = sorted(listed_ids(sandbox, "ticketmaster", now, now + timedelta(days=60)))[0]
    # An on-demand detail job, as the API sends one for an event not stored yet.
    job = IngestJob(
        provider=Provider.TICKETMASTER,
        kind=JobKind.DETAIL,
        params={"external_id": wanted},
        requested_by="test",
        reply_to=stack_services["INGESTOR_REQUESTS_TOPIC"] + ".replies",
    )
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
        job.reply_to,
        bootstrap_servers=kafka_settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    producer: AIOKafkaProducer[bytes, bytes] = AIOKafkaProducer(
        bootstrap_servers=kafka_settings.bootstrap_servers
    )
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(
            stack_services["INGESTOR_REQUESTS_TOPIC"], job.to_json_bytes(), key=job.job_id.encode()
        )
        message = await asyncio.wait_for(consumer.getone(), 60)
    finally:
        await consumer.stop()
        await producer.stop()
    reply = IngestReply.model_validate_json(message.value or b"")
    assert (reply.job_id, reply.status, reply.external_ids) == (
        job.job_id,
        JobStatus.DONE,
        [wanted],
    )


def test_the_raw_archive_survives_a_restart_of_s3(
    local: Endpoints, service_env: dict[str, str]
) -> None:
    began = datetime.now(UTC) - timedelta(seconds=1)
    with running_sandbox(events=300) as sandbox:
        # Performers are not looked up: the replay below covers the SeatGeek pages only.
        env = {**service_env, **sandbox_env(sandbox), "SPOTIFY_MAX_LOOKUPS_PER_SYNC": "0"}
        ingest = subprocess.run(
            [*INGESTOR, "ingest", "--provider", "seatgeek", "--days", "30", *QUIET],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert ingest.returncode == 0, ingest.stderr
    published = int(re.search(r"(\d+) records published", ingest.stdout)[1])  # type: ignore[index]
    assert published > 0, ingest.stdout
    # Down and up again, as `./marquee down` / `up` do.
    assert stack_script("down", "s3").returncode == 0
    up = stack_script("up", "s3")
    assert up.returncode == 0, up.stdout + up.stderr
    # The same port again, or the rest of the session would lose its S3.
    assert f"S3_ENDPOINT_URL={local.s3_url}" in stack_script("env").stdout
    replay = subprocess.run(
        [*INGESTOR, "replay", "--provider", "seatgeek", "--since", began.isoformat(), *QUIET],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert replay.returncode == 0, replay.stderr
    found = re.search(r"replayed (\d+) archived pages: (\d+) records", replay.stdout)
    assert found, replay.stdout
    assert int(found[1]) > 0
    assert int(found[2]) == published
