"""The API's ``_id`` lookups and writes (imports, requests); listings are in catalogue.py."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo.asynchronous.database import AsyncDatabase

from services.api.catalogue import HIDDEN
from shared.mongo import (
    CATEGORIES,
    EVENTS,
    EXTERNAL_EVENTS,
    IMPORT_REQUESTS,
    LOCAL_EVENTS,
    Document,
)

IMPORTS = "imports"
IMPORT_RESULTS = "import_results"
PROVIDER_STATS = "provider_stats"


class Store:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def external(self, key: str) -> Document | None:
        return await self.db[EXTERNAL_EVENTS].find_one({"_id": key}, HIDDEN)

    async def canonical(self, canonical_id: str) -> Document | None:
        return await self.db[EVENTS].find_one({"_id": canonical_id}, HIDDEN)

    async def local_event(self, local_id: str) -> Document | None:
        return await self.db[LOCAL_EVENTS].find_one({"_id": local_id})

    async def active_claims(self, ids: Sequence[str]) -> list[Document]:
        wanted = [i for i in dict.fromkeys(ids) if i]
        if not wanted:
            return []
        found = self.db[IMPORTS].find({"_id": {"$in": wanted}})
        return [doc async for doc in found if doc.get("state", "active") == "active"]

    async def import_result(self, request_id: str) -> Document | None:
        return await self.db[IMPORT_RESULTS].find_one({"_id": request_id})

    async def import_request(self, request_id: str) -> Document | None:
        return await self.db[IMPORT_REQUESTS].find_one({"_id": request_id})

    async def import_requests_of(self, subject: str, limit: int) -> list[Document]:
        """A user's latest import requests, newest first (the ``requested_by_at`` index)."""
        found = (
            self.db[IMPORT_REQUESTS]
            .find({"requested_by": subject})
            .sort([("requested_by", 1), ("requested_at", -1)])
            .limit(limit)
        )
        return [doc async for doc in found]

    async def by_ids(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        wanted = [i for i in dict.fromkeys(ids) if i]
        if not wanted:
            return {}
        found = self.db[collection].find({"_id": {"$in": wanted}}, HIDDEN)
        return {str(doc["_id"]): doc async for doc in found}

    async def record_import_request(self, doc: Document) -> None:
        await self.db[IMPORT_REQUESTS].insert_one(doc)

    async def provider_stats(self) -> list[Document]:
        return [doc async for doc in self.db[PROVIDER_STATS].find({})]

    async def categories(self) -> list[Document]:
        return [doc async for doc in self.db[CATEGORIES].find({})]
