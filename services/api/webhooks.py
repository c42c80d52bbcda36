"""The ``webhook_subscriptions`` queries behind ``/webhooks``: by ``_id``, or a page in
(created_at, _id) order on the ``owner_created_id`` / ``created_id`` indexes. The secret is
written once and never read back here (the notifier reads it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import WEBHOOK_SUBSCRIPTIONS, Document

# Every read of this module leaves the secret out.
NO_SECRET: Document = {"secret": 0}


class Webhooks:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db[WEBHOOK_SUBSCRIPTIONS]

    async def create(self, doc: Document) -> None:
        await self.collection.insert_one(doc)

    async def get(self, subscription_id: str) -> Document | None:
        """A subscription that was not deleted, without its secret."""
        return await self.collection.find_one(
            {"_id": subscription_id, "deleted_at": None}, NO_SECRET
        )

    def page_query(
        self, owner: str | None, after: tuple[datetime, str] | None
    ) -> tuple[Document, list[tuple[str, int]]]:
        query: Document = {} if owner is None else {"owner": owner}
        if after is not None:
            moment, last_id = after
            query["$or"] = [
                {"created_at": {"$gt": moment}},
                {"created_at": moment, "_id": {"$gt": last_id}},
            ]
        sort = [("created_at", 1), ("_id", 1)]
        if owner is not None:
            sort.insert(0, ("owner", 1))
        return query, sort

    async def page(
        self, owner: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> tuple[list[Document], bool]:
        """Up to ``limit`` live subscriptions (of ``owner``, or everyone's) after ``after``,
        oldest first; and whether more follow."""
        query, sort = self.page_query(owner, after)
        # Deleted ones are few (a soft delete keeps the id): read past them, never scan.
        query["deleted_at"] = None
        found = await self.collection.find(query, NO_SECRET).sort(sort).limit(limit + 1).to_list()
        return found[:limit], len(found) > limit

    async def delete(self, subscription_id: str, deleted_at: datetime) -> None:
        """Deactivate; the secret is erased at once (deliveries still queued are dropped)."""
        update: dict[str, Any] = {
            "$set": {"active": False, "deleted_at": deleted_at, "updated_at": deleted_at},
            "$unset": {"secret": ""},
        }
        await self.collection.update_one({"_id": subscription_id, "deleted_at": None}, update)
