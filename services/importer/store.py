"""The importer's MongoDB access: every read by ``_id``, every claim an insert-only document."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from shared.mongo import Document, duplicates_only

IMPORTS = "imports"  # the exactly-once claim per event (agreed with the API)
IMPORT_RESULTS = "import_results"  # results and the outbox of what to emit (agreed with the API)
IMPORT_REVIVALS = "import_revivals"  # insert-only gates of forced re-imports
LOCAL_EVENTS = "local_events"
EXTERNAL_EVENTS = "external_events"
EVENTS = "events"
NOTIFICATION_DELIVERIES = "notification_deliveries"

INDEXES: dict[str, list[IndexModel]] = {
    IMPORT_RESULTS: [IndexModel([("emitted", ASCENDING)], name="emitted")],
}


class ImportStore:
    """Reads by ``_id`` and idempotent, insert-only or ``_id``-keyed writes."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        for collection, indexes in INDEXES.items():
            await self.db[collection].create_indexes(indexes)  # idempotent

    async def by_ids(
        self, collection: str, ids: Iterable[str], fields: Sequence[str] | None = None
    ) -> dict[str, Document]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        found = self.db[collection].find({"_id": {"$in": wanted}}, list(fields) if fields else None)
        return {str(doc["_id"]): doc async for doc in found}

    async def insert_new(self, collection: str, docs: Sequence[Document]) -> set[str]:
        """Insert each document unless its ``_id`` exists; returns the ids that existed.

        One unordered bulk: every insert is tried, and each duplicate ``_id`` is reported. A
        duplicate is how a claim loses, and how a retried write learns it was already done.
        """
        if not docs:
            return set()
        try:
            await self.db[collection].insert_many(list(docs), ordered=False)
        except BulkWriteError as err:
            return {str(docs[i]["_id"]) for i in duplicates_only(err)}
        return set()

    async def set_fields(self, collection: str, updates: dict[str, dict[str, Any]]) -> None:
        """``$set`` per document, by ``_id``; a missing document is left missing."""
        if updates:
            await self.db[collection].bulk_write(
                [UpdateOne({"_id": key}, {"$set": fields}) for key, fields in updates.items()],
                ordered=True,
            )

    async def mark_emitted(self, request_ids: Sequence[str]) -> None:
        if request_ids:
            await self.db[IMPORT_RESULTS].update_many(
                {"_id": {"$in": list(request_ids)}}, {"$set": {"emitted": True}}
            )

    async def unemitted(self, limit: int) -> list[Document]:
        """Results stored but not yet on the topic (a crash came between the two)."""
        return await self.db[IMPORT_RESULTS].find({"emitted": False}).limit(limit).to_list()
