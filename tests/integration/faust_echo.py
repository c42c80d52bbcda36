"""A tiny faust-streaming app for the smoke test: upper-cases values from one topic to another."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable

import faust

app = faust.App(
    f"marquee-smoke-{os.environ['SMOKE_ID']}",
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS'].split(',')[0]}",
    store="memory://",
    datadir=os.environ["SMOKE_DATA"],
    web_enabled=False,
    topic_partitions=1,
    producer_acks=-1,
)
source = app.topic(os.environ["SMOKE_IN"], value_type=bytes, value_serializer="raw")
sink = app.topic(os.environ["SMOKE_OUT"], value_type=bytes, value_serializer="raw")


@app.agent(source, concurrency=1)
async def echo(stream: AsyncIterable[bytes]) -> None:
    async for value in stream:
        await sink.send(value=value.upper())
