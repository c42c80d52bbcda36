"""Canonical changes (``events.canonical``) applied to the local events imported from them.

Only time, zone and status follow the catalogue: title and description belong to the organiser
once imported. Notifications are emitted *before* the write, with ids derived from the local
event and the canonical version: a crash after the emit and before the write replays the same
change, recomputes the same notification id, and the notifier drops the copy; a crash after the
write finds nothing left to change. The write is guarded by the canonical version it read, so an
old change never overwrites a newer one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pymongo import UpdateOne

from services.importer.ids import notification_id
from services.importer.pipeline import ACTIVE
from services.importer.rules import Clock
from services.importer.store import EVENTS, IMPORTS, LOCAL_EVENTS, ImportStore
from shared.contracts import CanonicalChange, CanonicalEvent, ChangeOp, EventStatus, Notification
from shared.contracts.base import utc_now
from shared.mongo import Document

log = logging.getLogger(__name__)

EmitNotifications = Callable[[Sequence[Notification]], Awaitable[None]]

EVENT_UPDATED = "event.updated"
EVENT_CANCELLED = "event.cancelled"


@dataclass
class UpdateOutcome:
    applied: dict[str, int] = field(default_factory=dict)  # by kind: cancelled, time, ...
    stale: int = 0
    unchanged: int = 0
    ignored: int = 0  # not imported, dismissed or deleted
    notifications: list[Notification] = field(default_factory=list)

    def count(self, kind: str) -> None:
        self.applied[kind] = self.applied.get(kind, 0) + 1


@dataclass(frozen=True, slots=True)
class _Plan:
    local_id: str
    guard: Any  # the canonical_version the write expects to find
    fields: dict[str, Any]
    bump: bool


def _latest(changes: Sequence[CanonicalChange]) -> dict[str, CanonicalChange]:
    latest: dict[str, CanonicalChange] = {}
    for change in changes:
        seen = latest.get(change.canonical_id)
        if seen is None or change.version >= seen.version:
            latest[change.canonical_id] = change
    return latest


def diff(local: Document, event: CanonicalEvent) -> dict[str, tuple[Any, Any]]:
    """The fields of ``local`` that ``event`` changes: name → (old, new)."""
    wanted: dict[str, Any] = {
        "start": event.start.utc,
        "start_local": event.start.local,
        "timezone": event.start.timezone,
        "end": event.end.utc if event.end else None,
        "status": event.status.value,
    }
    if wanted["start"] is None:  # a start that became unknown is not a time change to apply
        del wanted["start"], wanted["start_local"]
    if wanted["timezone"] is None:
        del wanted["timezone"]
    return {k: (local.get(k), v) for k, v in wanted.items() if local.get(k) != v}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class Updater:
    """Applies a batch of canonical changes; idempotent, version-guarded."""

    def __init__(
        self, store: ImportStore, emit: EmitNotifications, *, clock: Clock = utc_now
    ) -> None:
        self.store = store
        self.emit = emit
        self.clock = clock

    async def process(self, changes: Sequence[CanonicalChange]) -> UpdateOutcome:
        outcome = UpdateOutcome()
        latest = _latest(changes)
        claims = {
            k: c
            for k, c in (await self.store.by_ids(IMPORTS, latest)).items()
            if c.get("state") == ACTIVE
        }
        outcome.ignored += len(latest) - len(claims)
        if not claims:
            return outcome
        merged_into = {
            str(c.merged_into)
            for k, c in latest.items()
            if k in claims and c.op is ChangeOp.MERGED and c.merged_into
        }
        survivors = await self.store.by_ids(EVENTS, merged_into)
        locals_ = await self.store.by_ids(
            LOCAL_EVENTS, [str(c["local_event_id"]) for c in claims.values()]
        )
        now = self.clock()
        plans: list[_Plan] = []
        aliases: list[Document] = []
        for canonical_id, claim in claims.items():
            change = latest[canonical_id]
            local = locals_.get(str(claim["local_event_id"]))
            if local is None or local.get("deleted"):
                outcome.ignored += 1
                continue
            plan = self._plan(change, claim, local, survivors, now, outcome)
            if plan is not None:
                plans.append(plan)
            if change.op is ChangeOp.MERGED and change.merged_into:
                aliases.append(_alias(claim, change.merged_into, now))
        # Notify first (see the module docstring), then write.
        if outcome.notifications:
            await self.emit(outcome.notifications)
        if plans:
            await self.store.db[LOCAL_EVENTS].bulk_write(
                [
                    UpdateOne(
                        {"_id": p.local_id, "canonical_version": p.guard},
                        {"$set": p.fields, **({"$inc": {"version": 1}} if p.bump else {})},
                    )
                    for p in plans
                ],
                ordered=True,
            )
        if aliases:
            # The survivor of a merge leads to the same local event from now on; if it was
            # imported on its own already, both local events stay (logged, nothing deleted).
            taken = await self.store.insert_new(IMPORTS, aliases)
            for alias in taken:
                log.warning("merge survivor %s was imported separately; two local events", alias)
        return outcome

    def _plan(
        self,
        change: CanonicalChange,
        claim: Document,
        local: Document,
        survivors: dict[str, Document],
        now: datetime,
        outcome: UpdateOutcome,
    ) -> _Plan | None:
        stored_version = local.get("canonical_version")
        event = change.event
        version = change.version
        canonical_id = change.canonical_id
        if change.op is ChangeOp.MERGED:
            target = str(change.merged_into)
            doc = survivors.get(target)
            if doc is None:
                if local.get("canonical_id") == target:
                    outcome.stale += 1
                    return None
                # The normalizer emits before it writes: the survivor may not be stored yet.
                # Follow it anyway; its next change (any version) brings times and status.
                outcome.count("merged")
                follow = {"canonical_id": target, "canonical_version": 0}
                return _Plan(str(local["_id"]), stored_version, follow, bump=False)
            try:
                event = CanonicalEvent.model_validate(doc)
            except ValidationError as err:
                log.warning("merge survivor %s unreadable: %s", change.merged_into, err)
                outcome.ignored += 1
                return None
            canonical_id, version = event.id, event.version
            if local.get("canonical_id") == canonical_id and (stored_version or 0) >= version:
                outcome.stale += 1
                return None
        elif local.get("canonical_id") != canonical_id or (stored_version or 0) >= version:
            outcome.stale += 1  # moved to a merge survivor, or an older or repeated change
            return None
        changes = diff(local, event)
        fields: dict[str, Any] = {"canonical_version": version, "canonical_id": canonical_id}
        if not changes:
            outcome.unchanged += 1
            return _Plan(str(local["_id"]), stored_version, fields, bump=False)
        fields |= {k: new for k, (_old, new) in changes.items()}
        fields["updated_at"] = now
        cancelled = "status" in changes and changes["status"][1] == EventStatus.CANCELLED.value
        kind = EVENT_CANCELLED if cancelled else EVENT_UPDATED
        outcome.count("cancelled" if cancelled else "start" if "start" in changes else "other")
        outcome.notifications.append(
            Notification(
                notification_id=notification_id(str(local["_id"]), str(version), kind),
                user_id=str(local.get("created_by") or claim.get("requested_by")),
                type=kind,
                payload={
                    "local_event_id": str(local["_id"]),
                    "canonical_id": canonical_id,
                    "canonical_version": version,
                    "title": local.get("title"),
                    "changes": {
                        k: {"old": _jsonable(old), "new": _jsonable(new)}
                        for k, (old, new) in changes.items()
                    },
                },
                created_at=now,
            )
        )
        return _Plan(str(local["_id"]), stored_version, fields, bump=True)


def _alias(claim: Document, survivor: str, now: datetime) -> Document:
    return {
        **{k: v for k, v in claim.items() if k not in ("_id", "created_at", "updated_at")},
        "_id": survivor,
        "canonical_id": survivor,
        "alias_of": claim["_id"],
        "created_at": now,
        "updated_at": now,
    }
