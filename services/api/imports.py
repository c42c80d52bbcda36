"""Import requests: checks, ``import.requests`` out, the importer's answer awaited briefly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from services.api.auth import Principal, Role
from services.api.errors import ApiError, not_found, unavailable
from services.api.replies import Replies
from services.api.store import IMPORT_RESULTS, Store
from shared.contracts import Contract, ImportRequest, ImportResult, ImportStatus, Provider, new_id
from shared.logs import correlation_id
from shared.mongo import EXTERNAL_EVENTS, Document
from shared.search import ADDON, ADDON_REFUSED

log = logging.getLogger(__name__)

Send = Callable[[str, bytes, Contract], Awaitable[None]]  # topic, key, message
ALREADY = "Event already imported"
ON_PLATFORM = "This event is already on the platform."


@dataclass(slots=True)
class Outcome:
    """What one import request came to, as the HTTP layer reports it."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


class Importer:
    def __init__(
        self,
        store: Store,
        replies: Replies[ImportResult],
        send: Send,
        *,
        topic: str,
        wait_s: float,
    ) -> None:
        self.store = store
        self.replies = replies
        self.send = send
        self.topic = topic
        self.wait_s = wait_s

    async def _event(self, key: str) -> dict[str, Any] | None:
        """The per-source record's canonical id and add-on mark, from the store."""
        doc = await self.store.external(key)
        if doc is None:
            return None
        return {"canonical_id": doc.get("canonical_id"), ADDON: bool(doc.get(ADDON))}

    async def check(
        self, principal: Principal, source: str, external_id: str
    ) -> tuple[str | None, Outcome | None]:
        """(canonical id, None) when it may be imported; else (None, the refusal).

        An event already on the platform names its local event only to whoever may read it
        (the organizer who imported it, or an admin): another organizer would get 404 there."""
        key = f"{source}:{external_id}"
        if source not in {p.value for p in Provider} or source == Provider.SPOTIFY.value:
            return None, Outcome(404, {"error": "Event not found"})
        event = await self._event(key)
        if event is None:
            return None, Outcome(404, {"error": "Event not found"})
        if event[ADDON]:
            detail = {"field": None, "message": ADDON_REFUSED, "code": ADDON}
            return None, Outcome(400, {"error": ADDON_REFUSED, "details": [detail]})
        canonical_id = event.get("canonical_id")
        claims = await self.store.active_claims([key, canonical_id or ""])
        if claims:
            body: dict[str, Any] = {"error": ALREADY, "message": ON_PLATFORM}
            claim = claims[0]
            if principal.can(Role.ADMIN) or claim.get("requested_by") == principal.subject:
                body["local_event_id"] = claim.get("local_event_id")
            return None, Outcome(400, body)
        return canonical_id, None

    async def request(
        self, principal: Principal, source: str, external_id: str, links: Links
    ) -> Outcome:
        try:
            _canonical, refusal = await self.check(principal, source, external_id)
        except PyMongoError as err:
            raise unavailable("Store unavailable") from err
        if refusal is not None:
            return refusal
        request_id = new_id()
        try:
            result = await self.replies.ask(
                request_id,
                lambda: self._send_with_id(principal, source, external_id, request_id),
                self.wait_s,
            )
        except (KafkaError, PyMongoError) as err:
            log.warning("import request not sent: %s", err)
            raise unavailable("Import service unavailable") from err
        return self.outcome(result, request_id, links)

    async def _send_with_id(
        self, principal: Principal, source: str, external_id: str, request_id: str
    ) -> str:
        request = ImportRequest(
            request_id=request_id,
            provider=Provider(source),
            external_id=external_id,
            requested_by=principal.subject,
            # The HTTP request's id (X-Request-ID): the importer and notifier log it too.
            correlation_id=correlation_id.get(),
        )
        await self.store.record_import_request(
            {
                "_id": request.request_id,
                "requested_by": principal.subject,
                "source": source,
                "external_id": external_id,
                "requested_at": request.requested_at,
                "correlation_id": request.correlation_id,
            }
        )
        await self.send(self.topic, request.key().encode(), request)
        return request.request_id

    def outcome(self, result: ImportResult | None, request_id: str, links: Links) -> Outcome:
        if result is None:
            return Outcome(
                202,
                {
                    "message": "Import accepted; not finished yet",
                    "request_id": request_id,
                    "status": "pending",
                    "status_url": links.status(request_id),
                },
            )
        if result.status is ImportStatus.IMPORTED:
            assert result.local_event_id is not None  # the contract guarantees it
            return Outcome(
                201,
                {
                    "message": "Event imported successfully",
                    "local_event_id": result.local_event_id,
                    "local_event_url": links.local_event(result.local_event_id),
                    "request_id": request_id,
                },
            )
        message = result.message or "Import rejected"
        body: dict[str, Any] = {"error": message, "request_id": request_id}
        if "already imported" in message.lower():
            body["error"] = ALREADY
            body["message"] = ON_PLATFORM
            # The importer names the local event only to the organizer who imported it.
            if result.local_event_id:
                body["local_event_id"] = result.local_event_id
        if result.errors:
            body["details"] = [e.model_dump(mode="json") for e in result.errors]
        return Outcome(400, body)

    async def bulk(
        self, principal: Principal, items: list[tuple[str, str]], links: Links
    ) -> list[dict[str, Any]]:
        """Checks and sends every item, then waits once for all answers (same short wait)."""
        results: list[dict[str, Any]] = []
        waiting: list[tuple[int, str, asyncio.Future[ImportResult]]] = []
        for source, external_id in items:
            entry: dict[str, Any] = {"source": source, "external_id": external_id}
            results.append(entry)
            try:
                _canonical, refusal = await self.check(principal, source, external_id)
            except PyMongoError as err:
                raise unavailable("Store unavailable") from err
            if refusal is not None:
                entry.update(status=refusal.status, **refusal.body)
                continue
            request_id = new_id()
            future = self.replies.expect(request_id)
            try:
                await self._send_with_id(principal, source, external_id, request_id)
            except (KafkaError, PyMongoError) as err:
                self.replies.forget(request_id)
                raise unavailable("Import service unavailable") from err
            waiting.append((len(results) - 1, request_id, future))
        if waiting:
            await asyncio.wait([f for _, _, f in waiting], timeout=self.wait_s)
        for index, request_id, future in waiting:
            answer = future.result() if future.done() and not future.cancelled() else None
            self.replies.forget(request_id)
            outcome = self.outcome(answer, request_id, links)
            results[index].update({**outcome.body, "status": outcome.status})
        return results

    async def status(self, principal: Principal, request_id: str, links: Links) -> dict[str, Any]:
        try:
            asked = await self.store.import_request(request_id)
            stored = await self.store.import_result(request_id)
        except PyMongoError as err:
            raise unavailable("Store unavailable") from err
        owner = asked.get("requested_by") if asked else None
        if not principal.can(Role.ADMIN) and owner != principal.subject:
            raise not_found("Import")
        if stored is None and asked is None:
            raise not_found("Import")
        return describe(request_id, asked, stored, links)

    async def mine(
        self, principal: Principal, links: Links, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The caller's latest import requests, newest first, each as ``status`` describes it
        (with the per-source record's title): the "my imported events" page."""
        try:
            asked = await self.store.import_requests_of(principal.subject, limit)
            ids = [str(a["_id"]) for a in asked]
            results = await self.store.by_ids(IMPORT_RESULTS, ids)
            records = await self.store.by_ids(
                EXTERNAL_EVENTS, [f"{a.get('source')}:{a.get('external_id')}" for a in asked]
            )
        except PyMongoError as err:
            raise unavailable("Store unavailable") from err
        items = []
        for doc in asked:
            request_id = str(doc["_id"])
            try:
                item = describe(request_id, doc, results.get(request_id), links)
            except ApiError:
                item = {"request_id": request_id, "status": "unreadable"}
            record = records.get(f"{doc.get('source')}:{doc.get('external_id')}") or {}
            item["title"] = record.get("title")
            item["canonical_id"] = record.get("canonical_id")
            items.append(item)
        return items


def describe(
    request_id: str, asked: Document | None, stored: Document | None, links: Links
) -> dict[str, Any]:
    """Where one import request stands: pending until the importer's result is stored."""
    body: dict[str, Any] = {"request_id": request_id, "status": "pending"}
    if asked is not None:
        body.update(source=asked.get("source"), external_id=asked.get("external_id"))
        body["requested_at"] = asked.get("requested_at")
        if asked.get("correlation_id"):
            body["correlation_id"] = asked["correlation_id"]
    if stored is not None:
        try:
            result = ImportResult.model_validate({**stored, "request_id": request_id})
        except ValueError as err:
            raise ApiError(502, "Unreadable import result") from err
        body["status"] = result.status.value
        body["decided_at"] = result.decided_at
        if result.local_event_id:
            body["local_event_id"] = result.local_event_id
            body["local_event_url"] = links.local_event(result.local_event_id)
        if result.message:
            body["message"] = result.message
        if result.errors:
            body["details"] = [e.model_dump(mode="json") for e in result.errors]
    return body


@dataclass(frozen=True, slots=True)
class Links:
    """Absolute links in responses: the configured public URL or the request's own base."""

    base: str

    def local_event(self, local_id: str) -> str:
        return f"{self.base}/local-events/{local_id}"

    def status(self, request_id: str) -> str:
        return f"{self.base}/imports/{request_id}"
