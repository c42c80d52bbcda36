"""Deliver ``notifications`` to a webhook (or the log), at least once, deduplicated by id.

Each notification is POSTed with retries and exponential backoff (honouring ``Retry-After``);
after ``max_attempts`` failures, or at once for an answer that retrying cannot fix (a 4xx other
than 408/429), it is dead-lettered to ``notifications.dlq`` with the reason in headers. A
delivered id is recorded in ``notification_deliveries`` (insert-only), so a re-emitted copy is
not sent again. The id also rides in the ``Idempotency-Key`` header, for the rare copy sent
between a delivery and its record (a crash there).

A notification whose payload names a ``subscription_id`` (a ``canonical.changed`` match, see
``hooks.py``) goes to that webhook subscription's URL, signed with its secret, both read from
the store (``Targets``, cached briefly); the same retries, headers and DLQ apply. One whose
subscription was deleted or deactivated is dropped (logged and counted), not dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from services.importer.store import NOTIFICATION_DELIVERIES
from shared.cloudevents import ce_headers
from shared.contracts import Notification
from shared.contracts.base import utc_now
from shared.mongo import WEBHOOK_SUBSCRIPTIONS, Document
from shared.webhooks import blocked_address

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    retry: bool = False
    error: str = ""
    retry_after: float | None = None
    dropped: bool = False  # its webhook subscription is gone: nothing to deliver to


class DeliveryLog(Protocol):
    """Where delivered ids are remembered (``ImportStore`` in the service)."""

    async def by_ids(
        self, collection: str, ids: Iterable[str], fields: Sequence[str] | None = None
    ) -> dict[str, Document]: ...

    async def insert_new(self, collection: str, docs: Sequence[Document]) -> set[str]: ...


class Delivery(Protocol):
    """Hands one notification to its destination."""

    async def __call__(self, note: Notification, body: bytes) -> Attempt: ...


class LogDelivery:
    """No webhook set: the seed's ``send_event_import_notification`` logs the notification."""

    async def __call__(self, note: Notification, body: bytes) -> Attempt:
        log.info(
            "notification %s for %s: %s",
            note.type,
            note.user_id,
            note.payload.get("title") or note.payload.get("local_event_id") or "",
            extra={**_context(note), "payload": note.payload},
        )
        return Attempt(ok=True)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Marquee-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_signed(
    client: httpx.AsyncClient, url: str, secret: str | None, note: Notification, body: bytes
) -> Attempt:
    """One POST of the notification JSON (CloudEvents headers, optional HMAC signature)."""
    headers = {
        k: v.decode() for k, v in ce_headers(note, "/notifier", event_id=note.notification_id)
    }
    headers["Idempotency-Key"] = note.notification_id
    if note.correlation_id:
        headers["X-Correlation-ID"] = note.correlation_id
    if secret:
        headers["X-Marquee-Signature"] = signature(secret, body)
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as err:  # refused, reset, timed out: the webhook may come back
        return Attempt(ok=False, retry=True, error=f"{type(err).__name__}: {err}")
    if response.is_success:
        return Attempt(ok=True)
    error = f"HTTP {response.status_code}: {response.text[:200]}"
    retry = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
    return Attempt(ok=False, retry=retry, error=error, retry_after=_retry_after(response))


class WebhookDelivery:
    """POST the notification JSON (CloudEvents headers, optional HMAC-SHA256 signature)."""

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str | None = None) -> None:
        self.client = client
        self.url = url
        self.secret = secret

    async def __call__(self, note: Notification, body: bytes) -> Attempt:
        return await post_signed(self.client, self.url, self.secret, note, body)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a subscription's notifications go. ``repr`` leaves the secret out of any log."""

    url: str
    secret: str = field(repr=False)


class Targets(Protocol):
    """The live webhook subscriptions by id (a missing id: deleted, deactivated or unknown)."""

    async def resolve(self, ids: Iterable[str]) -> dict[str, Target]: ...


class StoredTargets:
    """``webhook_subscriptions`` read by ``_id $in``, each answer (gone too) kept ``ttl_s``."""

    def __init__(
        self,
        store: DeliveryLog,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._seen: dict[str, tuple[Target | None, float]] = {}

    async def resolve(self, ids: Iterable[str]) -> dict[str, Target]:
        now = self.clock()
        wanted = set(ids)
        fresh = {i for i in wanted if i in self._seen and now - self._seen[i][1] < self.ttl_s}
        stale = wanted - fresh
        if stale:
            docs = await self.store.by_ids(
                WEBHOOK_SUBSCRIPTIONS, stale, ["url", "secret", "active", "deleted_at"]
            )
            if len(self._seen) > 10_000:
                self._seen.clear()
            for sid in stale:
                doc = docs.get(sid)
                live = doc is not None and doc.get("active") and not doc.get("deleted_at")
                target = (
                    Target(str(doc["url"]), str(doc["secret"]))
                    if live and doc is not None and doc.get("url") and doc.get("secret")
                    else None
                )
                self._seen[sid] = (target, now)
        return {i: t for i in wanted if (t := self._seen[i][0]) is not None}


Resolve = Callable[[str], Awaitable[list[str]]]


async def resolve_host(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    return [str(info[4][0]) for info in infos]


class SubscriptionDelivery:
    """POST to a subscription's own URL with its own secret. Outside dev/test, a URL whose
    host resolves to a loopback or private address is refused (dead-lettered with the reason):
    a name registered as public may point inward later."""

    def __init__(
        self, client: httpx.AsyncClient, *, allow_private: bool, resolve: Resolve = resolve_host
    ) -> None:
        self.client = client
        self.allow_private = allow_private
        self.resolve = resolve

    async def __call__(self, target: Target, note: Notification, body: bytes) -> Attempt:
        if not self.allow_private:
            host = urlsplit(target.url).hostname or ""
            try:
                addresses = [host] if blocked_address(host) else await self.resolve(host)
            except OSError as err:  # a name that does not resolve now may resolve later
                return Attempt(ok=False, retry=True, error=f"cannot resolve {host}: {err}")
            inward = [a for a in addresses if blocked_address(a)]
            if inward:
                return Attempt(
                    ok=False, error=f"{host} resolves to a private address ({inward[0]}): refused"
                )
        return await post_signed(self.client, target.url, target.secret, note, body)


def subscription_of(note: Notification) -> str | None:
    value = note.payload.get("subscription_id")
    return value if isinstance(value, str) and value else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None  # an HTTP date: the normal backoff applies


@dataclass(frozen=True, slots=True)
class Received:
    """One record of the notifications topic."""

    value: bytes
    key: bytes | None
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Received
    error: str  # class
    reason: str
    attempts: int
    note: Notification | None = None  # None: the record was not a readable notification


DeadLetters = Callable[[Sequence[DeadLetter]], Awaitable[None]]


@dataclass
class NotifyOutcome:
    delivered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    dropped: int = 0  # for a webhook subscription that is gone
    attempts: int = 0
    seconds: list[float] = field(default_factory=list)


class Stopping(Exception):
    """The service is stopping mid-retry: the batch is left uncommitted, redelivered later."""


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0
    max_attempts: int = 8

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential with jitter, at least what the server asked for, at most ``max_s``."""
        base = min(self.initial_s * 2.0 ** (attempt - 1), self.max_s)
        wait = base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret
        return float(min(max(wait, retry_after or 0.0), self.max_s))


class Notifier:
    def __init__(
        self,
        store: DeliveryLog,
        deliver: Delivery,
        dead_letters: DeadLetters,
        *,
        backoff: Backoff,
        concurrency: int,
        stop: asyncio.Event,
        targets: Targets | None = None,
        to_subscription: SubscriptionDelivery | None = None,
    ) -> None:
        self.store = store
        self.deliver = deliver
        self.targets = targets
        self.to_subscription = to_subscription
        self.dead_letters = dead_letters
        self.backoff = backoff
        self.limit = asyncio.Semaphore(concurrency)
        self.stop = stop

    async def process(self, records: Sequence[Received]) -> NotifyOutcome:
        outcome = NotifyOutcome()
        dead: list[DeadLetter] = []
        first: dict[str, tuple[Received, Notification]] = {}
        for record in records:
            try:
                note = Notification.model_validate_json(record.value)
            except ValidationError as err:
                dead.append(DeadLetter(record, type(err).__name__, str(err)[:500], 0))
                continue
            if note.notification_id in first:
                outcome.duplicates += 1
            else:
                first[note.notification_id] = (record, note)
        done = await self.store.by_ids(NOTIFICATION_DELIVERIES, first, ["_id"])
        outcome.duplicates += len(done)
        todo = [(r, n) for key, (r, n) in first.items() if key not in done]
        # Subscriptions are read here, before any delivery: a store error fails the batch whole
        # (retried by the loop), never one delivery inside the task group.
        wanted = {s for _r, n in todo if (s := subscription_of(n)) is not None}
        found = await self.targets.resolve(wanted) if wanted and self.targets else {}
        sends: list[tuple[Received, Notification, Delivery]] = []
        for record, note in todo:
            sid = subscription_of(note)
            if sid is None:
                sends.append((record, note, self.deliver))
            elif (target := found.get(sid)) is not None and self.to_subscription is not None:
                sends.append((record, note, functools.partial(self.to_subscription, target)))
            else:
                outcome.dropped += 1
                log.info(
                    "notification %s dropped: webhook subscription %s is deleted or inactive",
                    note.notification_id,
                    sid,
                    extra={**_context(note), "subscription_id": sid},
                )
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._one(r, n, d)) for r, n, d in sends]
        except* Stopping:
            raise Stopping("stopping mid-delivery") from None
        results = [t.result() for t in tasks]
        delivered = []
        for record, note, attempt, tries, seconds in results:
            outcome.attempts += tries
            if attempt.ok:
                delivered.append(
                    {"_id": note.notification_id, "user_id": note.user_id, "type": note.type,
                     "attempts": tries, "delivered_at": utc_now()}
                )  # fmt: skip
                outcome.seconds.append(seconds)
                log.info(
                    "notification %s delivered after %d attempt(s)",
                    note.notification_id,
                    tries,
                    extra={**_context(note), "attempts": tries, "seconds": round(seconds, 3)},
                )
            else:
                dead.append(DeadLetter(record, "DeliveryFailed", attempt.error, tries, note))
        await self.store.insert_new(NOTIFICATION_DELIVERIES, delivered)
        outcome.delivered = len(delivered)
        if dead:
            await self.dead_letters(dead)
            for letter in dead:
                log.warning(
                    "notification dead-lettered after %d attempts: %s",
                    letter.attempts,
                    letter.reason,
                    extra={} if letter.note is None else _context(letter.note),
                )
        outcome.dead_lettered = len(dead)
        return outcome

    async def _one(
        self, record: Received, note: Notification, deliver: Delivery
    ) -> tuple[Received, Notification, Attempt, int, float]:
        started = utc_now()
        body = note.to_json_bytes()
        tries = 0
        async with self.limit:
            while True:
                tries += 1
                attempt = await deliver(note, body)
                if attempt.ok or not attempt.retry or tries >= self.backoff.max_attempts:
                    return record, note, attempt, tries, _since(started)
                delay = self.backoff.delay(tries, attempt.retry_after)
                log.info(
                    "notification %s: attempt %d failed (%s); next in %.1fs",
                    note.notification_id,
                    tries,
                    attempt.error,
                    delay,
                    extra=_context(note),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                if self.stop.is_set():
                    raise Stopping(note.notification_id)


def _context(note: Notification) -> dict[str, Any]:
    """The fields every log line about a notification carries (its request's correlation id)."""
    return {
        "correlation_id": note.correlation_id,
        "notification_id": note.notification_id,
        "notification_type": note.type,
        "user_id": note.user_id,
        "request_id": note.payload.get("request_id"),
        **({"subscription_id": s} if (s := subscription_of(note)) else {}),
    }


def _since(started: datetime) -> float:
    return (utc_now() - started).total_seconds()
