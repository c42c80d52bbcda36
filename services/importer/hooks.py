"""Canonical changes matched against webhook subscriptions → ``canonical.changed`` notifications.

Subscriptions are few: the active ones are read whole (on the ``active`` index) and kept for
``refresh_s`` seconds, so a change costs no store round trip. Each match is a Notification for
the subscription's owner whose id is derived from (subscription, canonical id, version): a
redelivered change recomputes the same ids and the notifier drops the copies. The notifier
finds the URL and the secret by ``payload.subscription_id``; the secret never rides on Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase

from services.importer.ids import notification_id
from shared.contracts import CanonicalChange, Notification
from shared.contracts.base import utc_now
from shared.mongo import WEBHOOK_SUBSCRIPTIONS, Document
from shared.webhooks import CANONICAL_CHANGED, Subscription

log = logging.getLogger(__name__)

LoadSubscriptions = Callable[[], Awaitable[list[Document]]]
EmitNotifications = Callable[[Sequence[Notification]], Awaitable[None]]


def active_subscriptions(db: AsyncDatabase[Document]) -> LoadSubscriptions:
    async def load() -> list[Document]:
        found = db[WEBHOOK_SUBSCRIPTIONS].find(
            {"active": True}, ["owner", "filters", "created_at", "active"]
        )
        return [doc async for doc in found]

    return load


class SubscriptionCache:
    """The active subscriptions, read again once ``refresh_s`` has passed."""

    def __init__(
        self,
        load: LoadSubscriptions,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.load = load
        self.refresh_s = refresh_s
        self.clock = clock
        self._subs: list[Subscription] = []
        self._loaded_at: float | None = None

    async def current(self) -> list[Subscription]:
        now = self.clock()
        if self._loaded_at is None or now - self._loaded_at >= self.refresh_s:
            subs = []
            for doc in await self.load():  # a store error propagates: the batch is retried
                try:
                    subs.append(Subscription.from_document(doc))
                except (ValidationError, KeyError, TypeError) as err:
                    log.error(
                        "webhook subscription %s unreadable, skipped: %s", doc.get("_id"), err
                    )
            self._subs, self._loaded_at = subs, now
        return self._subs


def hook_notification(sub: Subscription, change: CanonicalChange) -> Notification:
    return Notification(
        notification_id=notification_id(
            sub.id, change.canonical_id, str(change.version), change.op.value, CANONICAL_CHANGED
        ),
        user_id=sub.owner,
        type=CANONICAL_CHANGED,
        payload={"subscription_id": sub.id, "change": orjson.loads(change.to_json_bytes())},
        created_at=utc_now(),
    )


@dataclass
class MatchOutcome:
    changes: int = 0
    matched: dict[str, int] = field(default_factory=dict)  # by subscription id
    notifications: list[Notification] = field(default_factory=list)


class HookMatcher:
    def __init__(self, subscriptions: SubscriptionCache, emit: EmitNotifications) -> None:
        self.subscriptions = subscriptions
        self.emit = emit

    async def process(self, changes: Sequence[CanonicalChange]) -> MatchOutcome:
        """Match a batch and emit the notifications (acks awaited: the caller then commits)."""
        outcome = MatchOutcome(changes=len(changes))
        subs = await self.subscriptions.current()
        for change in changes:
            for sub in subs:
                if sub.wants(change):
                    outcome.notifications.append(hook_notification(sub, change))
                    outcome.matched[sub.id] = outcome.matched.get(sub.id, 0) + 1
        if outcome.notifications:
            await self.emit(outcome.notifications)
        return outcome
