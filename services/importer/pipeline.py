"""A batch of import requests to claims, local events, results and notifications, exactly once.

Order of effects, chosen so that a crash anywhere loses nothing and doubles nothing:

1. a stored result for the request id → that result again (a redelivery answers the same);
2. the claim: an insert-only ``imports`` document whose ``_id`` is the event (its canonical id);
   a duplicate key means another request holds it → "Event already imported". The claim holds
   the request id, so the *same* request, replayed after a crash, sees its own claim and resumes;
3. the local event, under an id derived from the claim (a retried insert finds it there);
4. the result, with its notifications and the catalogue keys to flag, stored in
   ``import_results`` with ``emitted: false`` (the outbox);
5. result and notifications sent to Kafka (acks=all);
6. the catalogue's ``is_imported`` / ``imported_event`` flags (idempotent ``$set``; after the
   emit, so the answer does not wait for catalogue writes), then
   ``emitted: true``: a result marked emitted has its flags set too;
7. and only then (by the caller) the consumer offsets are committed. A replay or the relay
   finds a stored result not marked emitted and redoes 5 and 6 from what is stored.

A request that fails validation is rejected before it claims anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.importer.failpoints import Failpoint, no_failpoint
from services.importer.ids import local_event_id, notification_id, revival_id
from services.importer.requests import Invalid, Parsed
from services.importer.rules import (
    ALREADY_IMPORTED,
    DISMISSED,
    IMPORTED,
    NOT_FOUND,
    R_ALREADY_IMPORTED,
    R_DISMISSED,
    R_INTERNAL,
    R_INVALID_REQUEST,
    R_NOT_FOUND,
    VALIDATION_ERROR,
    Clock,
    Target,
    Unusable,
    local_event,
    rejection_message,
    rejection_reason,
    resolve,
    validate,
)
from services.importer.store import (
    EVENTS,
    EXTERNAL_EVENTS,
    IMPORT_RESULTS,
    IMPORT_REVIVALS,
    IMPORTS,
    LOCAL_EVENTS,
    ImportStore,
)
from shared.contracts import (
    FieldError,
    ImportRequest,
    ImportResult,
    ImportStatus,
    LocalEvent,
    Notification,
    utc_now,
)
from shared.mongo import Document

log = logging.getLogger(__name__)

Emit = Callable[[Sequence[ImportResult], Sequence[Notification]], Awaitable[None]]

ACTIVE = "active"
DISMISSED_STATE = "dismissed"
EVENT_IMPORTED = "event.imported"


@dataclass
class Outcome:
    """What a batch decided and emitted."""

    results: list[ImportResult] = field(default_factory=list)  # emitted: new and replayed
    notifications: list[Notification] = field(default_factory=list)
    imported: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # by reason
    replayed: int = 0
    latencies: list[float] = field(default_factory=list)  # request → decision, seconds
    flags: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {EXTERNAL_EVENTS: {}, EVENTS: {}}
    )  # catalogue marks still to set: collection → _id → fields
    unemitted: list[str] = field(default_factory=list)  # request ids to mark emitted

    def collect(self, doc: Document) -> None:
        """A stored result to (re-)emit, with what its first emit may not have finished."""
        result, notes = _stored(doc)
        self.results.append(result)
        self.notifications += notes
        if doc.get("emitted"):
            return
        self.unemitted.append(result.request_id)
        mark = {"is_imported": True, "imported_event": result.local_event_id}
        for collection, keys in (doc.get("flags") or {}).items():
            if collection in self.flags:
                for key in keys:
                    self.flags[collection][str(key)] = mark

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def add(self, other: Outcome) -> None:
        self.results += other.results
        self.notifications += other.notifications
        self.unemitted += other.unemitted
        for collection, marks in other.flags.items():
            self.flags.setdefault(collection, {}).update(marks)
        self.imported += other.imported
        self.replayed += other.replayed
        self.latencies += other.latencies
        for reason, count in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + count


@dataclass
class _Accepted:
    request: ImportRequest
    target: Target
    local: LocalEvent
    revived: bool = False


@dataclass
class _Batch:
    """The state of one batch while it is decided."""

    now: datetime
    docs: list[Document] = field(default_factory=list)  # new import_results documents
    accepted: list[_Accepted] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)


class Importer:
    """Decides and applies import requests; idempotent, so redelivered batches are harmless."""

    def __init__(
        self,
        store: ImportStore,
        emit: Emit,
        *,
        clock: Clock = utc_now,
        failpoint: Failpoint = no_failpoint,
    ) -> None:
        self.store = store
        self.emit = emit
        self.clock = clock
        self.failpoint = failpoint

    async def process(self, items: Sequence[Parsed]) -> Outcome:
        """Decide, store, emit, mark emitted. Raises only on store or broker errors."""
        outcome = await self.decide(items)
        await self.publish(outcome)
        return outcome

    async def process_isolating(
        self, items: Sequence[Parsed], transient: tuple[type[BaseException], ...]
    ) -> Outcome:
        """``process``, but an item that makes it fail for another reason than a transient
        store/broker error is rejected on its own (``internal_error``) instead of stopping the
        stream: a poison request is answered, never skipped, never retried forever."""
        try:
            return await self.process(items)
        except transient:
            raise
        except Exception as err:  # isolate the poison item, keep the stream
            if len(items) == 1:
                log.exception("request %s failed; rejecting it", items[0].request_id)
                return await self._internal_error(items[0], err)
            log.warning("batch failed (%s); retrying its requests one by one", err)
        total = Outcome()
        for item in items:
            total.add(await self.process_isolating([item], transient))
        return total

    async def publish(self, outcome: Outcome) -> None:
        self.failpoint("after-results")
        await self.emit(outcome.results, outcome.notifications)
        self.failpoint("after-emit")
        await asyncio.gather(
            *(self.store.set_fields(c, marks) for c, marks in outcome.flags.items() if marks)
        )
        await self.store.mark_emitted(outcome.unemitted)

    async def relay(self, limit: int = 1000) -> int:
        """Emit results stored but never marked emitted (a crash between store and emit)."""
        sent = 0
        while True:
            docs = await self.store.unemitted(limit)
            if not docs:
                return sent
            outcome = Outcome()
            for doc in docs:
                outcome.collect(doc)
            await self.publish(outcome)
            sent += len(docs)

    async def decide(self, items: Sequence[Parsed]) -> Outcome:
        batch = _Batch(now=_millis(self.clock()))
        first: dict[str, Parsed] = {}
        for item in items:
            first.setdefault(item.request_id, item)  # the same request twice: answered once
        requests = [i for i in first.values() if isinstance(i, ImportRequest)]
        # Both reads at once: two round trips in the time of one.
        stored, (externals, canonicals) = await asyncio.gather(
            self.store.by_ids(IMPORT_RESULTS, first), self._catalogue(requests)
        )
        fresh: list[ImportRequest] = []
        for request_id, item in first.items():
            if request_id in stored:
                continue
            if isinstance(item, Invalid):
                self._reject(batch, item, R_INVALID_REQUEST, VALIDATION_ERROR, item.errors)
            else:
                fresh.append(item)
        targets = self._targets(fresh, externals, canonicals, batch)
        claims = await self.store.by_ids(
            IMPORTS, [t.claim_id for t in targets.values() if isinstance(t, Target)]
        )
        for wave in _waves(fresh, targets):
            await self._wave(batch, wave, targets, claims)
        await self._apply(batch)
        return await self._store_results(batch, stored)

    async def _catalogue(
        self, requests: Sequence[ImportRequest]
    ) -> tuple[dict[str, Document], dict[str, Document]]:
        """The per-source and canonical records the requests name."""
        by_source = [r.key() for r in requests if not r.canonical_id]
        externals = await self.store.by_ids(EXTERNAL_EVENTS, by_source)
        wanted = {r.canonical_id for r in requests if r.canonical_id}
        wanted |= {str(d["canonical_id"]) for d in externals.values() if d.get("canonical_id")}
        return externals, await self._canonicals(wanted)

    def _targets(
        self,
        requests: Sequence[ImportRequest],
        externals: Mapping[str, Document],
        canonicals: Mapping[str, Document],
        batch: _Batch,
    ) -> dict[str, Target | None]:
        targets: dict[str, Target | None] = {}
        for request in requests:
            try:
                targets[request.request_id] = resolve(request, externals, canonicals)
            except Unusable as err:
                self._reject(
                    batch, request, rejection_reason(err.errors), VALIDATION_ERROR, err.errors
                )
        return targets

    async def _canonicals(self, ids: Iterable[str]) -> dict[str, Document]:
        """Canonical events, and the survivors of any that were merged (a few hops at most)."""
        found: dict[str, Document] = {}
        wanted = set(ids)
        for _hop in range(4):
            if not wanted:
                break
            got = await self.store.by_ids(EVENTS, sorted(wanted))
            found |= got
            wanted = {str(d["duplicate_of"]) for d in got.values() if d.get("duplicate_of")}
            wanted -= set(found)
        return found

    async def _wave(
        self,
        batch: _Batch,
        wave: list[ImportRequest],
        targets: dict[str, Target | None],
        claims: dict[str, Document],
    ) -> None:
        """Requests for distinct events: claim each, atomically, or reject it."""
        to_claim: list[_Accepted] = []
        to_revive: list[tuple[_Accepted, int]] = []
        for request in wave:
            if request.request_id not in targets:
                continue  # rejected while resolving
            target = targets[request.request_id]
            if target is None:
                where = "canonical_id" if request.canonical_id else "external_id"
                errors = [FieldError(field=where, message=NOT_FOUND, code=R_NOT_FOUND)]
                self._reject(batch, request, R_NOT_FOUND, NOT_FOUND, errors)
                continue
            claim = claims.get(target.claim_id)
            local_id = local_event_id(target.claim_id)
            if claim is not None and claim.get("request_id") == request.request_id:
                # This very request claimed it before a crash: the decision stands; finish it.
                self._resume(batch, request, target, local_id, revived=_generation(claim) > 0)
                continue
            if claim is not None and claim.get("state") != DISMISSED_STATE:
                self._already(batch, request, claim)
                continue
            if claim is not None and not request.options.force:
                errors = [FieldError(field=None, message=DISMISSED, code=R_DISMISSED)]
                self._reject(batch, request, R_DISMISSED, DISMISSED, errors)
                continue
            errors = validate(target.event, batch.now, addon=target.addon)
            if errors:
                reason = rejection_reason(errors)
                self._reject(batch, request, reason, rejection_message(errors), errors)
                continue
            accepted = _Accepted(request, target, local_event(target, request, local_id, batch.now))
            if claim is None:
                to_claim.append(accepted)
            else:
                accepted.revived = True
                to_revive.append((accepted, _generation(claim) + 1))
        await self._claim(batch, to_claim, claims)
        await self._revive(batch, to_revive, claims)
        self.failpoint("after-claims")

    async def _claim(
        self, batch: _Batch, candidates: list[_Accepted], claims: dict[str, Document]
    ) -> None:
        docs = [_claim_doc(a, batch.now) for a in candidates]
        lost = await self.store.insert_new(IMPORTS, docs)
        holders = await self.store.by_ids(IMPORTS, lost) if lost else {}
        for accepted, doc in zip(candidates, docs, strict=True):
            claim_id = accepted.target.claim_id
            if claim_id not in lost:
                claims[claim_id] = doc
                batch.accepted.append(accepted)
                continue
            holder = holders.get(claim_id, {})
            claims[claim_id] = holder
            if holder.get("request_id") == accepted.request.request_id:
                batch.accepted.append(accepted)  # ours, from an attempt that crashed
            else:
                self._already(batch, accepted.request, holder)

    async def _revive(
        self, batch: _Batch, candidates: list[tuple[_Accepted, int]], claims: dict[str, Document]
    ) -> None:
        """A forced re-import of a dismissed event: an insert-only gate per generation decides
        the one winner (a duplicate key tells the losers, with no read-modify-write to race)."""
        if not candidates:
            return
        gates: list[Document] = [
            {
                "_id": revival_id(a.target.claim_id, generation),
                "claim_id": a.target.claim_id,
                "request_id": a.request.request_id,
                "created_at": batch.now,
            }
            for a, generation in candidates
        ]
        lost = await self.store.insert_new(IMPORT_REVIVALS, gates)
        holders = await self.store.by_ids(IMPORT_REVIVALS, lost) if lost else {}
        won: dict[str, dict[str, Any]] = {}
        for (accepted, generation), gate in zip(candidates, gates, strict=True):
            holder = holders.get(gate["_id"], gate)
            if holder.get("request_id") != accepted.request.request_id:
                self._already(batch, accepted.request, claims.get(accepted.target.claim_id, {}))
                continue
            fields = _claim_doc(accepted, batch.now)
            del fields["_id"], fields["created_at"]
            fields["generation"] = generation
            won[accepted.target.claim_id] = fields
            claims[accepted.target.claim_id] = {"_id": accepted.target.claim_id, **fields}
            batch.accepted.append(accepted)
        await self.store.set_fields(IMPORTS, won)

    def _resume(
        self, batch: _Batch, request: ImportRequest, target: Target, local_id: str, *, revived: bool
    ) -> None:
        try:
            local = local_event(target, request, local_id, batch.now)
        except Unusable as err:
            # The catalogue lost the start time since the claim: the claim stays with the
            # request (its id is in the claim), and the answer says why nothing was created.
            self._reject(batch, request, rejection_reason(err.errors), VALIDATION_ERROR, err.errors)
            return
        batch.accepted.append(_Accepted(request, target, local, revived))

    async def _apply(self, batch: _Batch) -> None:
        """Local events, then the catalogue's flags, then results (with notifications)."""
        fresh = [_local_doc(a) for a in batch.accepted if not a.revived]
        await self.store.insert_new(LOCAL_EVENTS, fresh)  # an existing one is our earlier write
        for accepted in (a for a in batch.accepted if a.revived):
            doc = _local_doc(accepted)
            # Only a deleted one is replaced: a replay after success changes nothing (the
            # upsert then collides with the live document, which is the answer).
            with contextlib.suppress(DuplicateKeyError):
                await self.store.db[LOCAL_EVENTS].replace_one(
                    {"_id": doc["_id"], "deleted": True}, doc, upsert=True
                )
        self.failpoint("after-local-events")
        for accepted in batch.accepted:
            self._imported(batch, accepted)

    async def _store_results(self, batch: _Batch, stored: dict[str, Document]) -> Outcome:
        outcome = batch.outcome
        existed = await self.store.insert_new(IMPORT_RESULTS, batch.docs)
        # Decided twice at once (a rebalance): the first stored answer is the answer.
        stored = stored | (await self.store.by_ids(IMPORT_RESULTS, existed) if existed else {})
        for doc in batch.docs:
            if doc["_id"] not in existed:
                outcome.collect(doc)
                _log_decision(doc)
        for doc in stored.values():
            outcome.collect(doc)
            outcome.replayed += 1
        return outcome

    def _imported(self, batch: _Batch, accepted: _Accepted) -> None:
        request, local = accepted.request, accepted.local
        result = ImportResult(
            request_id=request.request_id,
            status=ImportStatus.IMPORTED,
            local_event_id=local.id,
            message=IMPORTED,
            decided_at=batch.now,
            correlation_id=request.correlation_id,
        )
        notes = []
        if request.options.notify:
            notes.append(
                Notification(
                    notification_id=notification_id(request.request_id, EVENT_IMPORTED),
                    user_id=request.requested_by,
                    type=EVENT_IMPORTED,
                    payload={
                        "request_id": request.request_id,
                        "local_event_id": local.id,
                        "title": local.title,
                        "start": local.start.isoformat(),
                        "timezone": local.timezone,
                        "source": local.source.value,
                        "external_event_id": local.external_event_id,
                        "canonical_id": local.canonical_id,
                    },
                    created_at=batch.now,
                    correlation_id=request.correlation_id,
                )
            )
        batch.outcome.imported += 1
        batch.outcome.latencies.append((batch.now - request.requested_at).total_seconds())
        doc = _result_doc(result, request.requested_by, notes, accepted.target.claim_id)
        doc["flags"] = {
            EXTERNAL_EVENTS: list(accepted.target.external_keys),
            EVENTS: list(accepted.target.canonical_keys),
        }
        batch.docs.append(doc)

    def _already(self, batch: _Batch, request: ImportRequest, claim: Document) -> None:
        # The holder's local event id only for its own requester: others learn nothing more.
        same_user = claim.get("requested_by") == request.requested_by
        errors = [FieldError(field=None, message=ALREADY_IMPORTED, code=R_ALREADY_IMPORTED)]
        local = str(claim["local_event_id"]) if same_user and claim.get("local_event_id") else None
        self._reject(batch, request, R_ALREADY_IMPORTED, ALREADY_IMPORTED, errors, local)

    def _reject(
        self,
        batch: _Batch,
        item: Parsed,
        reason: str,
        message: str,
        errors: list[FieldError],
        local_id: str | None = None,
    ) -> None:
        result = ImportResult(
            request_id=item.request_id,
            status=ImportStatus.REJECTED,
            local_event_id=local_id,
            message=message,
            errors=errors,
            decided_at=batch.now,
            correlation_id=item.correlation_id,
        )
        batch.outcome.reject(reason)
        if isinstance(item, ImportRequest):
            batch.outcome.latencies.append((batch.now - item.requested_at).total_seconds())
        batch.docs.append(_result_doc(result, item.requested_by, [], None))

    async def _internal_error(self, item: Parsed, err: Exception) -> Outcome:
        batch = _Batch(now=_millis(self.clock()))
        message = f"Internal error: {type(err).__name__}: {err}"[:500]
        errors = [FieldError(field=None, message=message, code=R_INTERNAL)]
        self._reject(batch, item, R_INTERNAL, message, errors)
        outcome = await self._store_results(
            batch, await self.store.by_ids(IMPORT_RESULTS, [item.request_id])
        )
        await self.publish(outcome)
        return outcome


def _waves(
    requests: Sequence[ImportRequest], targets: Mapping[str, Target | None]
) -> list[list[ImportRequest]]:
    """Split requests so no two in a wave name the same event: the n-th request for an event
    goes in wave n, and sees the claims of the waves before it."""
    waves: list[list[ImportRequest]] = []
    seen: dict[str, int] = {}
    for request in requests:
        target = targets.get(request.request_id)
        key = target.claim_id if target is not None else f"request:{request.request_id}"
        index = seen.get(key, 0)
        seen[key] = index + 1
        if index == len(waves):
            waves.append([])
        waves[index].append(request)
    return waves


def _millis(moment: datetime) -> datetime:
    """BSON keeps milliseconds: a result emitted now equals the one stored and replayed later."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _generation(claim: Document) -> int:
    value = claim.get("generation", 0)
    return value if isinstance(value, int) else 0


def _claim_doc(accepted: _Accepted, now: datetime) -> Document:
    request, target = accepted.request, accepted.target
    return {
        "_id": target.claim_id,
        "local_event_id": accepted.local.id,
        "request_id": request.request_id,
        "requested_by": request.requested_by,
        "source": target.source.value,
        "external_id": target.external_id,
        "canonical_id": target.canonical_id,
        "state": ACTIVE,
        "generation": 0,
        "created_at": now,
        "updated_at": now,
    }


def _local_doc(accepted: _Accepted) -> Document:
    doc = accepted.local.to_document()
    # Bookkeeping beside the contract's fields: the soft-delete flag the revival filter
    # matches, the claim it belongs to, and the canonical version it reflects (update guard).
    doc["deleted"] = False
    doc["claim_id"] = accepted.target.claim_id
    doc["canonical_version"] = accepted.target.canonical_version
    doc["request_id"] = accepted.request.request_id
    return doc


def _result_doc(
    result: ImportResult, requested_by: str | None, notes: list[Notification], claim_id: str | None
) -> Document:
    return {
        **result.to_document(),
        "_id": result.request_id,
        "requested_by": requested_by,
        "claim_id": claim_id,
        "notifications": [n.to_document() for n in notes],
        "emitted": False,
    }


def _log_decision(doc: Document) -> None:
    """One line per decision, carrying the request's correlation id (the API's X-Request-ID)."""
    log.info(
        "import %s %s",
        doc.get("request_id") or doc["_id"],
        doc.get("status"),
        extra={
            "correlation_id": doc.get("correlation_id"),
            "request_id": doc["_id"],
            "status": doc.get("status"),
            "local_event_id": doc.get("local_event_id"),
            "requested_by": doc.get("requested_by"),
            "reason": None if doc.get("status") == "imported" else doc.get("message"),
        },
    )


def _stored(doc: Document) -> tuple[ImportResult, list[Notification]]:
    """A stored result, and its notifications unless they were emitted already."""
    result = ImportResult.model_validate(doc)
    if doc.get("emitted"):
        return result, []
    return result, [Notification.model_validate(n) for n in doc.get("notifications") or []]
