"""A real faust-streaming worker process round trip through the broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from shared.kafka import make_consumer, make_producer
from shared.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]


async def test_faust_worker_round_trip(
    kafka_settings: KafkaSettings, service_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    topic_in, topic_out = f"faust-in.{unique}", f"faust-out.{unique}"
    env = {
        **service_env,
        "SMOKE_ID": unique,
        "SMOKE_IN": topic_in,
        "SMOKE_OUT": topic_out,
        "SMOKE_DATA": str(tmp_path / "data"),
    }
    log_path = tmp_path / "faust.log"
    with log_path.open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "faust", "-A", "tests.integration.faust_echo", "worker"],
            # No web server: it would bind 0.0.0.0:6066, shared by every faust worker here.
            *["--without-web", "-l", "info"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    producer = make_producer(kafka_settings)
    consumer = make_consumer(kafka_settings, topic_out, group_id=f"faust-check-{unique}")
    await producer.start()
    await consumer.start()
    try:
        got: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 90
        sent = 0
        # Keep sending until the worker has joined its group and answers (start-up takes a while).
        while not got and asyncio.get_running_loop().time() < deadline:
            assert worker.returncode is None, log_path.read_text()[-3000:]
            await producer.send_and_wait(topic_in, f"hello {sent}".encode())
            sent += 1
            batch = await consumer.getmany(timeout_ms=2000)
            got += [r.value for records in batch.values() for r in records if r.value]
        assert got, "faust worker produced nothing:\n" + log_path.read_text()[-3000:]
        assert got[0].startswith(b"HELLO ")
    finally:
        await consumer.stop()
        await producer.stop()
        worker.terminate()
        try:
            await asyncio.wait_for(worker.wait(), 30)
        except TimeoutError:
            worker.kill()
            await worker.wait()
