"""Composition root of the API: reads settings, wires the store, Kafka and auth, serves them.

``python -m services.api`` serves (uvicorn, one process); ``python -m services.api token``
mints a development token (see ``tokens.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from services.api.app import create_app
from services.api.auth import Authenticator, JwksKeys
from services.api.catalogue import Catalogue
from services.api.deps import Services
from services.api.export import Exports
from services.api.imports import Importer
from services.api.limits import RateLimiter, ResponseCache
from services.api.metrics import ApiMetrics
from services.api.ondemand import DetailFetcher
from services.api.replies import Replies
from services.api.store import Store
from services.api.stream import Hub
from shared.cloudevents import ce_headers
from shared.contracts import Contract, ImportResult, IngestReply
from shared.contracts.topics import Topic
from shared.kafka import ensure_topics, make_producer
from shared.logs import configure_logging
from shared.metrics import ServiceMetrics
from shared.mongo import get_database, make_client
from shared.service import kafka_check, mongo_check
from shared.settings import ApiSettings, load

log = logging.getLogger(__name__)


def authenticator(settings: ApiSettings) -> Authenticator:
    jwks = None
    if settings.jwt_algorithm == "RS256":
        if not settings.jwks_url:
            raise ValueError("API_JWT_ALGORITHM=RS256 needs API_JWKS_URL")
        jwks = JwksKeys(settings.jwks_url, settings.jwks_cache_s)
    return Authenticator(
        algorithm=settings.jwt_algorithm,
        secret=settings.jwt_secret.get_secret_value(),
        jwks=jwks,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        max_lifetime_s=(
            None if settings.environment in ("dev", "test") else settings.jwt_max_lifetime_s
        ),
    )


def api_topics(settings: ApiSettings) -> list[Topic]:
    """The topics the API uses, created if missing (its reply topic is its own)."""
    return [
        Topic(settings.import_requests_topic, None, "canonical id or {provider}:{id}"),
        Topic(settings.import_results_topic, ImportResult, "request id"),
        Topic(settings.ingest_requests_topic, None, "job id"),
        Topic(settings.reply_topic, IngestReply, "job id"),
    ]


@contextlib.asynccontextmanager
async def wire(settings: ApiSettings) -> AsyncIterator[Services]:
    """Every client and background task of one API process, stopped on exit."""
    metrics = ApiMetrics(ServiceMetrics("api"))
    mongo = make_client(settings.mongo, appname="marquee-api")
    db = get_database(mongo, settings.mongo)
    store = Store(db)
    producer = make_producer(settings.kafka)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    services: Services | None = None
    try:
        await ensure_topics(settings.kafka, api_topics(settings))
        await producer.start()

        async def send(topic: str, key: bytes, message: Contract) -> None:
            await producer.send_and_wait(
                topic, message.to_json_bytes(), key=key, headers=ce_headers(message, "/api")
            )

        import_replies: Replies[ImportResult] = Replies(
            settings.kafka,
            settings.import_results_topic,
            ImportResult,
            lambda r: r.request_id,
        )
        ingest_replies: Replies[IngestReply] = Replies(
            settings.kafka, settings.reply_topic, IngestReply, lambda r: r.job_id
        )
        catalogue = Catalogue(db)
        hub = Hub(
            catalogue,
            settings,
            on_delivered=metrics.stream_delivered.inc,
            on_dropped=lambda reason: metrics.stream_dropped.labels(reason).inc(),
        )
        metrics.stream_clients.set_function(lambda: len(hub.subscribers))
        services = Services(
            settings=settings,
            catalogue=catalogue,
            store=store,
            auth=authenticator(settings),
            limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
            cache=ResponseCache(settings.cache_duration_minutes * 60, settings.cache_max_entries),
            metrics=metrics,
            exporter=Exports(db),
            importer=Importer(
                store,
                import_replies,
                send,
                topic=settings.import_requests_topic,
                wait_s=settings.import_wait_s,
            ),
            fetcher=DetailFetcher(
                store,
                ingest_replies,
                send,
                topic=settings.ingest_requests_topic,
                reply_topic=settings.reply_topic,
                fetch_wait_s=settings.detail_fetch_wait_s,
                store_wait_s=settings.detail_store_wait_s,
                not_found_ttl_s=settings.not_found_ttl_s,
            ),
            checks={"kafka": kafka_check(settings.kafka), "mongo": mongo_check(settings.mongo)},
            stream=hub,
        )
        tasks = [
            asyncio.create_task(hub.run()),
            asyncio.create_task(import_replies.run(stop)),
            asyncio.create_task(ingest_replies.run(stop)),
        ]
        yield services
    finally:
        stop.set()
        if services is not None and services.stream is not None:
            services.stream.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await producer.stop()
        await mongo.close()


def build_app(settings: ApiSettings) -> FastAPI:
    """The app whose lifespan wires everything (``uvicorn`` runs it)."""
    holder: dict[str, Services] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with wire(settings) as services:
            holder["services"] = services
            app.state.services = services
            yield

    placeholder_db = get_database(make_client(settings.mongo), settings.mongo)
    placeholder = Services(
        settings=settings,
        catalogue=Catalogue(placeholder_db),
        store=Store(placeholder_db),
        auth=authenticator(settings),
        limiter=RateLimiter(0, 1),
        cache=ResponseCache(0, 0),
        metrics=ApiMetrics(ServiceMetrics("api_placeholder")),
        exporter=Exports(placeholder_db),
    )
    return create_app(placeholder, lifespan=lifespan)


class Server(uvicorn.Server):
    """Ends the open event streams as soon as shutdown starts: uvicorn waits for every
    connection to finish before the lifespan ends, and a stream would never finish."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        hub = getattr(getattr(self.app.state, "services", None), "stream", None)
        loop = getattr(hub, "loop", None)
        if isinstance(hub, Hub) and loop is not None:
            loop.call_soon_threadsafe(hub.close)
        super().handle_exit(sig, frame)


def run() -> int:
    settings = load(ApiSettings)
    configure_logging("api", settings.log_level)
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        loop="uvloop",
        http="httptools",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    Server(config, app).run()
    return 0
