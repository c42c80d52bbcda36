"""Run a service until SIGINT/SIGTERM with health endpoints and dependency checks."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiokafka.admin import AIOKafkaAdminClient

from shared.health import Check, HealthServer
from shared.metrics import ServiceMetrics
from shared.mongo import make_client, ping
from shared.settings import KafkaSettings, MongoSettings, ServiceSettings

log = logging.getLogger(__name__)


def kafka_check(settings: KafkaSettings) -> Check:
    async def check() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=3_000
        )
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    return check


def mongo_check(settings: MongoSettings) -> Check:
    async def check() -> None:
        client = make_client(settings.model_copy(update={"server_selection_timeout_ms": 2_000}))
        try:
            await ping(client)
        finally:
            await client.close()

    return check


async def serve(
    name: str,
    settings: ServiceSettings,
    metrics: ServiceMetrics,
    work: Callable[[asyncio.Event], Awaitable[None]] | None = None,
) -> None:
    """Serve health endpoints, run ``work`` (if any) and stop cleanly on a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = HealthServer(
        metrics, {"kafka": kafka_check(settings.kafka), "mongo": mongo_check(settings.mongo)}
    )
    port = await health.start(settings.http_host, settings.http_port)
    log.info("%s health on http://%s:%d/healthz", name, settings.http_host, port)
    try:
        if work is None:
            await stop.wait()
        else:
            await work(stop)
    finally:
        await health.stop()
        log.info("%s stopped", name)


def run_placeholder(name: str, settings: ServiceSettings) -> int:
    """Run a service that has no work yet: health endpoints only (see its main module)."""
    from shared.logs import configure_logging

    configure_logging(name, settings.log_level)
    asyncio.run(serve(name, settings, ServiceMetrics(name)))
    return 0
