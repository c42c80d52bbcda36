"""Feed tokens: long-lived, revocable credentials for the URLs of feeds and widgets.

A calendar app keeps a subscription URL for months, longer than any JWT may live
(``API_JWT_MAX_LIFETIME_S`` outside dev and test). A feed token is ``mft_<id>_<secret>``: the
store keeps ``_id``, the owner, the owner's role when it was made, and only the SHA-256 of the
secret (collection ``feed_tokens``); a token is read by ``_id`` and compared in constant time, so
deleting it revokes it at once on every replica. It is good for the feed and widget routes
only (``services/api/routers/feeds.py``), never as ``Authorization: Bearer``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.api.auth import Principal, Role
from shared.mongo import FEED_TOKENS, Document

PREFIX = "mft_"
_TOKEN = re.compile(r"^mft_([0-9a-f]{24})_([A-Za-z0-9_-]{32,64})$")
# A caller's tokens, newest first (GET /feeds/tokens); the rest is read by _id.
INDEX_KEYS = [("owner", 1), ("created_at", -1)]
MAX_PER_OWNER = 100


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(id, the token to hand out once, the digest to store)."""
    token_id = secrets.token_hex(12)
    secret = secrets.token_urlsafe(32)
    return token_id, f"{PREFIX}{token_id}_{secret}", digest(secret)


def is_feed_token(value: str) -> bool:
    return value.startswith(PREFIX)


class FeedTokens:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db[FEED_TOKENS]

    async def create(self, owner: str, role: Role, label: str | None, now: datetime) -> Document:
        token_id, token, hashed = new_token()
        doc: Document = {
            "_id": token_id,
            "owner": owner,
            "role": role.name.lower(),
            "label": label,
            "hash": hashed,
            "created_at": now,
        }
        await self.collection.insert_one(doc)
        return {**doc, "token": token}

    async def count(self, owner: str) -> int:
        return await self.collection.count_documents({"owner": owner}, limit=MAX_PER_OWNER)

    async def mine(self, owner: str) -> list[Document]:
        found = self.collection.find({"owner": owner}, {"hash": 0}).sort(INDEX_KEYS)
        return await found.limit(MAX_PER_OWNER).to_list()

    async def delete(self, owner: str, token_id: str) -> bool:
        result = await self.collection.delete_one({"_id": token_id, "owner": owner})
        return result.deleted_count == 1

    async def principal(self, token: str) -> Principal | None:
        """The owner a live token names (with the role it was made with), else None."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        doc = await self.collection.find_one({"_id": match.group(1)})
        if doc is None or not hmac.compare_digest(str(doc.get("hash")), digest(match.group(2))):
            return None
        role = {r.name.lower(): r for r in Role}.get(str(doc.get("role")))
        if role is None:
            return None
        return Principal(str(doc["owner"]), role, math.inf)
