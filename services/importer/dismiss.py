"""An organiser deletes an imported local event: soft-deleted, and remembered as dismissed.

``delete_local_event`` is what the API's ``DELETE /local-events/{id}`` calls. The local event
keeps its document with ``deleted: true`` and ``deleted_at``; its claim in ``imports`` turns
``dismissed``, so a later import request for the same event is rejected (reason ``dismissed``)
unless it says ``options.force``, which re-creates it under the same id. The catalogue's
``is_imported`` flags are cleared. Safe to call again after a crash or twice.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.importer.store import EVENTS, EXTERNAL_EVENTS, IMPORTS, LOCAL_EVENTS
from shared.contracts.base import utc_now
from shared.mongo import Document


class LocalEventNotFound(LookupError):
    """No local event has that id."""


async def delete_local_event(
    db: AsyncDatabase[Document],
    local_event_id: str,
    *,
    deleted_by: str,
    now: datetime | None = None,
) -> Document:
    """Soft-delete a local event and dismiss its claim; returns the deleted document."""
    moment = now or utc_now()
    doc = await db[LOCAL_EVENTS].find_one({"_id": local_event_id})
    if doc is None:
        raise LocalEventNotFound(local_event_id)
    if not doc.get("deleted"):
        marks = {"deleted": True, "deleted_at": moment, "deleted_by": deleted_by}
        await db[LOCAL_EVENTS].update_one(
            {"_id": local_event_id},
            {"$set": {**marks, "updated_at": moment}, "$inc": {"version": 1}},
        )
        doc |= marks
    claim_id = doc.get("claim_id")
    if claim_id:
        # Only the claim that still points at this local event (not a later re-import's).
        await db[IMPORTS].update_one(
            {"_id": claim_id, "local_event_id": local_event_id},
            {"$set": {"state": "dismissed", "dismissed_by": deleted_by, "updated_at": moment}},
        )
        claim = await db[IMPORTS].find_one({"_id": claim_id}) or {}
        external = f"{claim.get('source')}:{claim.get('external_id')}"
        canonical = await db[EVENTS].find_one({"_id": claim_id}, ["sources"]) or {}
        keys = [external] + [
            f"{s.get('source')}:{s.get('external_id')}" for s in canonical.get("sources") or []
        ]
        clear = {"$set": {"is_imported": False, "imported_event": None}}
        for key in dict.fromkeys(keys):
            await db[EXTERNAL_EVENTS].update_one(
                {"_id": key, "imported_event": local_event_id}, clear
            )
        await db[EVENTS].update_one({"_id": claim_id, "imported_event": local_event_id}, clear)
    return doc
