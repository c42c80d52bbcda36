"""Sync checkpoints per (provider, stream, partition) in MongoDB: load, save, should_skip."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson
from pymongo.asynchronous.collection import AsyncCollection

from services.ingestor.store import StoreRetry
from shared.contracts import Checkpoint, Provider
from shared.contracts.base import utc_now
from shared.mongo import Document


def call_hash(path: str, params: Mapping[str, Any]) -> str:
    """Identifies one provider call (path + parameters, order-free, credentials excluded)."""
    body = orjson.dumps(
        {"path": path, "params": {k: str(v) for k, v in params.items()}},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(body).hexdigest()[:32]


class ProgressManager:
    """The seed's progress manager: where each stream partition got to, and when.

    Documents are keyed by ``_id = provider:stream:partition``: one natural key, so every read
    and write is an ``_id`` lookup. Both are idempotent, so a call that fails on a dropped
    connection is simply retried (``retry``): a store restart mid-sync costs time, not the job.
    """

    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        freshness: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = utc_now,
        retry: StoreRetry | None = None,
    ) -> None:
        self.collection = collection
        self.freshness = freshness
        self.clock = clock
        self.retry = retry or StoreRetry()

    @staticmethod
    def key(provider: Provider, stream: str, partition: str) -> str:
        return f"{provider.value}:{stream}:{partition}"

    async def load(self, provider: Provider, stream: str, partition: str = "") -> Checkpoint:
        key = self.key(provider, stream, partition)
        found = await self.retry.call(
            f"checkpoint read {key}", lambda: self.collection.find_one({"_id": key})
        )
        if found is None:
            return Checkpoint(provider=provider, stream=stream, partition=partition)
        return Checkpoint.model_validate(found)

    async def save(self, checkpoint: Checkpoint) -> None:
        checkpoint.updated_at = self.clock()
        doc = checkpoint.to_document()
        key = self.key(checkpoint.provider, checkpoint.stream, checkpoint.partition)
        await self.retry.call(
            f"checkpoint write {key}",
            lambda: self.collection.replace_one({"_id": key}, {"_id": key, **doc}, upsert=True),
        )

    async def should_skip(self, provider: Provider, stream: str, partition: str, call: str) -> bool:
        """True when this exact call succeeded within the freshness window: don't repeat it."""
        checkpoint = await self.load(provider, stream, partition)
        return (
            checkpoint.last_call_hash == call
            and checkpoint.last_success_at is not None
            and self.clock() - checkpoint.last_success_at < self.freshness
        )

    async def done(
        self,
        provider: Provider,
        stream: str,
        partition: str,
        call: str,
        cursor: Mapping[str, Any] | None = None,
    ) -> Checkpoint:
        """Record a fully fetched partition (all its pages published)."""
        checkpoint = await self.load(provider, stream, partition)
        checkpoint.last_call_hash = call
        checkpoint.last_success_at = self.clock()
        if cursor is not None:
            checkpoint.cursor = dict(cursor)
        await self.save(checkpoint)
        return checkpoint
