"""The topic table: names, value contracts and topic-level settings, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts.base import Contract
from shared.contracts.documents import (
    CanonicalEvent,
    Category,
    Checkpoint,
    ExternalEvent,
    LocalEvent,
)
from shared.contracts.messages import (
    BulkImportRequest,
    CanonicalChange,
    ImportRequest,
    ImportResult,
    IngestJob,
    IngestReply,
    Notification,
    RawRecord,
)


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    value: type[Contract] | None
    key: str
    compacted: bool = False


INGEST_REQUESTS = Topic("ingest.requests", IngestJob, "job id")
RAW_EVENTS = Topic("raw.events", RawRecord, "{provider}:{external_id}")
# The DLQ carries the original raw.events bytes unchanged; the error rides in headers.
RAW_EVENTS_DLQ = Topic("raw.events.dlq", None, "same as the input record")
# Compacted: a subscriber that reads from the start gets the latest version of every event.
EVENTS_CANONICAL = Topic("events.canonical", CanonicalChange, "canonical id", compacted=True)
# Also carries BulkImportRequest (told apart by ce_type, or by its ``items`` field).
IMPORT_REQUESTS = Topic("import.requests", ImportRequest, "canonical id or {provider}:{id}")
IMPORT_RESULTS = Topic("import.results", ImportResult, "request id")
NOTIFICATIONS = Topic("notifications", Notification, "user id")
# Notifications the notifier gave up on: the original bytes, the error rides in headers.
NOTIFICATIONS_DLQ = Topic("notifications.dlq", None, "same as the input record")

TOPICS: tuple[Topic, ...] = (
    INGEST_REQUESTS,
    RAW_EVENTS,
    RAW_EVENTS_DLQ,
    EVENTS_CANONICAL,
    IMPORT_REQUESTS,
    IMPORT_RESULTS,
    NOTIFICATIONS,
    NOTIFICATIONS_DLQ,
)

ALL_CONTRACTS: tuple[type[Contract], ...] = (
    IngestJob,
    IngestReply,
    RawRecord,
    CanonicalChange,
    ImportRequest,
    BulkImportRequest,
    ImportResult,
    Notification,
    ExternalEvent,
    CanonicalEvent,
    Category,
    LocalEvent,
    Checkpoint,
)
