"""Composition root of the importer: reads settings, wires clients, runs until stopped.

``python -m services.importer`` (``worker``): import requests → local events and results,
plus canonical changes → local event updates, plus canonical changes matched against webhook
subscriptions → notifications (its own group), plus the outbox relay at start.
``python -m services.importer notifier``: notifications → webhook (or the log), DLQ.
``python -m services.importer relay``: emit stored-but-unemitted results once, then exit.
``python -m services.importer notifier-replay-dlq [--max N]``: dead letters back to delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from services.importer.consumer import TRANSIENT, Sinks, retrying, run_loop
from services.importer.failpoints import failpoint
from services.importer.hooks import HookMatcher, SubscriptionCache, active_subscriptions
from services.importer.metrics import ImporterMetrics, NotifierMetrics
from services.importer.notifier import (
    Backoff,
    Delivery,
    LogDelivery,
    Notifier,
    Received,
    StoredTargets,
    SubscriptionDelivery,
    WebhookDelivery,
)
from services.importer.pipeline import Importer
from services.importer.requests import parse
from services.importer.store import ImportStore
from services.importer.updates import Updater
from shared.contracts import CanonicalChange
from shared.kafka import make_consumer, make_producer
from shared.logs import configure_logging
from shared.metrics import ServiceMetrics
from shared.mongo import get_database, make_client
from shared.service import serve
from shared.settings import ImporterSettings, NotifierSettings, load

log = logging.getLogger(__name__)

Records = list[ConsumerRecord[bytes, bytes]]


async def _consume(
    settings: ImporterSettings | NotifierSettings,
    topic: str,
    group_id: str,
    handle: Callable[[Records], Awaitable[None]],
    stop: asyncio.Event,
    *,
    max_records: int,
    timeout_ms: int,
) -> None:
    consumer = make_consumer(settings.kafka, topic, group_id=group_id)
    if not await retrying(consumer.start, stop, f"{topic} consumer"):
        return
    try:
        await run_loop(
            consumer, handle, stop=stop, name=topic, max_records=max_records, timeout_ms=timeout_ms
        )
    finally:
        await consumer.stop()


async def _until_first_ends(
    stop: asyncio.Event, jobs: list[Coroutine[Any, Any, None]], base: ServiceMetrics
) -> None:
    """Run the jobs until a signal, or until one of them ends (then stop the others)."""
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(job) for job in jobs]
    base.up.set(1)
    waiter: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    base.up.set(0)
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def apply_changes(
    updater: Updater, changes: list[CanonicalChange], metrics: ImporterMetrics
) -> None:
    """Apply a batch; a change that makes it fail for a non-transient reason is tried alone,
    and if it still fails, logged and counted: the next change of that event carries its
    whole state, so skipping one costs less than stopping every import behind it."""
    try:
        metrics.observe_updates(await updater.process(changes))
        return
    except TRANSIENT:
        raise
    except Exception:
        if len(changes) == 1:
            log.exception(
                "canonical change %s v%d failed; skipped",
                changes[0].canonical_id,
                changes[0].version,
            )
            metrics.updates.labels("failed").inc()
            return
    for change in changes:
        await apply_changes(updater, [change], metrics)


def read_changes(records: Records, metrics: ImporterMetrics) -> list[CanonicalChange]:
    parsed = []
    for record in records:
        try:
            parsed.append(CanonicalChange.model_validate_json(record.value or b""))
        except ValidationError as err:
            # The normalizer owns this topic and its DLQ; a subscriber logs and counts what it
            # cannot read rather than stopping every import.
            log.error("unreadable canonical change at offset %d: %s", record.offset, err)
            metrics.updates.labels("unreadable").inc()
    return parsed


def importer_work(
    settings: ImporterSettings, metrics: ImporterMetrics, *, once_relay: bool = False
) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def work(stop: asyncio.Event) -> None:
        mongo = make_client(settings.mongo, appname="marquee-importer")
        producer = make_producer(settings.kafka)
        try:
            store = ImportStore(get_database(mongo, settings.mongo))
            if not await retrying(store.ensure_indexes, stop, "indexes"):
                return
            if not await retrying(producer.start, stop, "producer"):
                return
            sinks = Sinks(
                producer,
                results_topic=settings.results_topic,
                notifications_topic=settings.notifications_topic,
            )
            importer = Importer(store, sinks.emit, failpoint=failpoint(settings.failpoint))

            async def relay() -> None:
                async def once() -> None:
                    sent = await importer.relay()
                    metrics.relayed.inc(sent)
                    if sent:
                        log.info("outbox relay emitted %d stored results", sent)

                await retrying(once, stop, "outbox relay")

            if once_relay:
                await relay()
                return

            async def requests(records: Records) -> None:
                items = [p for r in records for p in parse(r.value)]
                with metrics.batch_seconds.time():
                    outcome = await importer.process_isolating(items, TRANSIENT)
                metrics.observe(outcome)

            updater = Updater(store, sinks.notifications)

            async def changes(records: Records) -> None:
                await apply_changes(updater, read_changes(records, metrics), metrics)

            matcher = HookMatcher(
                SubscriptionCache(active_subscriptions(store.db), settings.hooks_refresh_s),
                sinks.notifications,
            )

            async def hooks(records: Records) -> None:
                # Produced (acks awaited) before the loop commits: at least once, and the
                # notification ids are deterministic, so the notifier drops redelivered copies.
                metrics.observe_hooks(await matcher.process(read_changes(records, metrics)))

            jobs = [
                _consume(
                    settings, settings.requests_topic, settings.group_id, requests, stop,
                    max_records=settings.batch_size, timeout_ms=settings.batch_wait_ms,
                ),
            ]  # fmt: skip
            if settings.relay_on_start:

                async def relay_then_idle() -> None:
                    await relay()
                    await stop.wait()  # one pass at start; the worker goes on until stopped

                jobs.append(relay_then_idle())
            if settings.updates_enabled:
                jobs.append(
                    _consume(
                        settings, settings.changes_topic, settings.updates_group_id, changes,
                        stop, max_records=settings.batch_size, timeout_ms=1000,
                    )
                )  # fmt: skip
            if settings.hooks_enabled:
                # Its own group: webhook matching neither waits for nor holds up local-event
                # updates, and ops scale or pause it apart (IMPORTER_HOOKS_ENABLED).
                jobs.append(
                    _consume(
                        settings, settings.changes_topic, settings.hooks_group_id, hooks,
                        stop, max_records=settings.batch_size, timeout_ms=500,
                    )
                )  # fmt: skip
            await _until_first_ends(stop, jobs, metrics.base)
        finally:
            await producer.stop()
            await mongo.close()

    return work


def notifier_work(
    settings: NotifierSettings, metrics: NotifierMetrics
) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def work(stop: asyncio.Event) -> None:
        mongo = make_client(settings.mongo, appname="marquee-notifier")
        producer = make_producer(settings.kafka)
        http = httpx.AsyncClient(timeout=settings.timeout_s)
        try:
            store = ImportStore(get_database(mongo, settings.mongo))
            if not await retrying(producer.start, stop, "producer"):
                return
            sinks = Sinks(
                producer,
                dlq_topic=settings.dlq_topic,
                source_topic=settings.notifications_topic,
            )
            deliver: Delivery = LogDelivery()
            if settings.webhook_url:
                secret = (
                    settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
                )
                deliver = WebhookDelivery(http, settings.webhook_url, secret)
                log.info("delivering notifications to %s", settings.webhook_url)
            else:
                log.info("no NOTIFIER_WEBHOOK_URL: notifications are logged")
            notifier = Notifier(
                store,
                deliver,
                sinks.dead_letters,
                backoff=Backoff(
                    settings.backoff_initial_s, settings.backoff_max_s, settings.max_attempts
                ),
                concurrency=settings.concurrency,
                stop=stop,
                targets=StoredTargets(store, settings.subscriptions_cache_s),
                to_subscription=SubscriptionDelivery(
                    http, allow_private=settings.environment in ("dev", "test")
                ),
            )

            async def handle(records: Records) -> None:
                received = [Received(r.value or b"", r.key, r.partition, r.offset) for r in records]
                metrics.observe(await notifier.process(received))

            job = _consume(
                settings, settings.notifications_topic, settings.group_id, handle, stop,
                max_records=settings.batch_size, timeout_ms=500,
            )  # fmt: skip
            await _until_first_ends(stop, [job], metrics.base)
        finally:
            await http.aclose()
            await producer.stop()
            await mongo.close()

    return work


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.importer", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="worker",
        choices=["worker", "notifier", "relay", "notifier-replay-dlq"],
    )
    parser.add_argument("--max", type=int, default=None, help="replay at most this many")
    args = parser.parse_args(argv)
    if args.command == "notifier-replay-dlq":
        from services.importer.replay import replay_dlq

        sent = asyncio.run(replay_dlq(load(NotifierSettings), limit=args.max))
        print(f"replayed {sent} dead-lettered notifications")
        return 0
    if args.command == "notifier":
        notifier_settings = load(NotifierSettings)
        configure_logging("notifier", notifier_settings.log_level)
        base = ServiceMetrics("notifier")
        work = notifier_work(notifier_settings, NotifierMetrics(base))
        asyncio.run(serve("notifier", notifier_settings, base, work))
        return 0
    settings = load(ImporterSettings)
    configure_logging("importer", settings.log_level)
    base = ServiceMetrics("importer")
    metrics = ImporterMetrics(base)
    if args.command == "relay":

        async def relay_once() -> None:
            await importer_work(settings, metrics, once_relay=True)(asyncio.Event())

        asyncio.run(relay_once())
        return 0
    asyncio.run(serve("importer", settings, base, importer_work(settings, metrics)))
    return 0
