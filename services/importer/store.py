"""The importer's MongoDB access: every read by ``_id``, every claim an insert-only document."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from shared.mongo import Document

IMPORTS = "imports"  # the exactly-once claim per event (agreed with the API)
IMPORT_RESULTS = "import_results"  # results and the outbox of what to emit (agreed with the API)
IMPORT_REVIVALS = "import_revivals"  # insert-only gates of forced re-imports
LOCAL_EVENTS = "local_events"
EXTERNAL_EVENTS = "external_events"
EVENTS = "events"
NOTIFICATION_DELIVERIES = "notification_deliveries"

DUPLICATE_KEY = 11000

# On MongoDB the outbox scan uses an index; on FerretDB any non-_id filter scans the table,
# which is why it only runs at start (see relay).
INDEXES: dict[str, list[IndexModel]] = {
    IMPORT_RESULTS: [IndexModel([("emitted", ASCENDING)], name="emitted")],
}


class ImportStore:
    """Reads by ``_id`` (fast on MongoDB and the patched FerretDB) and idempotent writes."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        for collection, indexes in INDEXES.items():
            existing = set(await self.db[collection].index_information())
            for index in indexes:
                # One at a time, only when missing: FerretDB 1.24 dislikes repeated creates.
                if index.document["name"] not in existing:
                    await self.db[collection].create_indexes([index])

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

        Ordered inserts, resumed after each duplicate: an ordered bulk stops at its first error
        and says where on MongoDB and FerretDB alike (FerretDB's unordered bulk also stops at
        the first error, but then the rest is unknown). A duplicate ``_id`` is how a claim
        loses, and how a retried write learns it was already done.
        """
        existed: set[str] = set()
        rest = list(docs)
        while rest:
            try:
                await self.db[collection].insert_many(rest, ordered=True)
                return existed
            except BulkWriteError as err:
                errors = err.details.get("writeErrors") or []
                if not errors or errors[0].get("code") != DUPLICATE_KEY:
                    raise
                index = int(errors[0]["index"])
                existed.add(str(rest[index]["_id"]))
                rest = rest[index + 1 :]
        return existed

    async def set_fields(self, collection: str, updates: dict[str, dict[str, Any]]) -> None:
        """``$set`` per document, by ``_id``; a missing document is left missing."""
        if updates:
            await self.db[collection].bulk_write(
                [UpdateOne({"_id": key}, {"$set": fields}) for key, fields in updates.items()],
                ordered=True,
            )

    async def mark_emitted(self, request_ids: Sequence[str]) -> None:
        # One UpdateOne per id: on FerretDB an update_many over an $in costs ~6x more.
        await self.set_fields(IMPORT_RESULTS, {i: {"emitted": True} for i in request_ids})

    async def unemitted(self, limit: int) -> list[Document]:
        """Results stored but not yet on the topic (a crash came between the two)."""
        return await self.db[IMPORT_RESULTS].find({"emitted": False}).limit(limit).to_list()
