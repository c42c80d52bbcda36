"""Kafka message contracts, one model per topic value (see DESIGN.md: Topics)."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any, Self
from uuid import uuid4

import orjson
from pydantic import Field, model_validator

from shared.contracts.base import Contract, Provider, UtcDatetime, utc_now
from shared.contracts.documents import CanonicalEvent, Part


def new_id() -> str:
    """A fresh random identifier for jobs, requests and notifications."""
    return uuid4().hex


class JobKind(StrEnum):
    SYNC = "sync"
    SEARCH = "search"
    DETAIL = "detail"
    BACKFILL = "backfill"


class IngestJob(Contract):
    """A request to the ingestor (topic ``ingest.requests``, key: job id)."""

    schema_name = "ingest_job"

    job_id: str = Field(default_factory=new_id, min_length=1)
    provider: Provider
    kind: JobKind
    params: dict[str, Any] = Field(default_factory=dict)
    requested_by: str = Field(min_length=1)
    reply_to: str | None = Field(default=None, description="Topic for a request/reply answer")
    requested_at: UtcDatetime = Field(default_factory=utc_now)


class JobStatus(StrEnum):
    DONE = "done"
    STOPPED = "stopped"  # a budget was spent or a limit reached; the rest runs later
    FAILED = "failed"


class IngestReply(Contract):
    """The answer to an IngestJob with ``reply_to`` (sent to that topic, key: job id)."""

    schema_name = "ingest_reply"

    job_id: str = Field(min_length=1)
    status: JobStatus
    records: int = Field(default=0, ge=0)
    pages: int = Field(default=0, ge=0)
    calls: int = Field(default=0, ge=0)
    external_ids: list[str] = Field(
        default_factory=list, description="ids fetched, for search and detail jobs (first 500)"
    )
    message: str | None = Field(default=None, description="why it stopped or failed")
    resume_at: UtcDatetime | None = None
    finished_at: UtcDatetime = Field(default_factory=utc_now)


class Entity(StrEnum):
    EVENT = "event"
    VENUE = "venue"
    PERFORMER = "performer"
    CATEGORY = "category"


def payload_hash(payload: Any) -> str:
    """A stable content hash of a provider payload (key order does not matter)."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


class RawRecord(Contract):
    """One provider record exactly as fetched (topic ``raw.events``).

    Key: ``{provider}:{external_id}`` (see :meth:`key`). ``payload`` is verbatim; a tombstone
    says the provider no longer lists the record (cancelled or removed) and has no payload.
    """

    schema_name = "raw_record"

    provider: Provider
    entity: Entity = Entity.EVENT
    external_id: str = Field(min_length=1)
    fetched_at: UtcDatetime = Field(default_factory=utc_now)
    job_id: str | None = None
    payload: Any = None
    payload_hash: str = ""
    tombstone: bool = False

    @model_validator(mode="after")
    def _check_payload(self) -> Self:
        if self.tombstone:
            return self
        if self.payload is None:
            raise ValueError("a record that is not a tombstone needs a payload")
        if not self.payload_hash:
            self.payload_hash = payload_hash(self.payload)
        return self

    def key(self) -> str:
        return f"{self.provider.value}:{self.external_id}"


class ChangeOp(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    CANCELLED = "cancelled"
    MERGED = "merged"


class CanonicalChange(Contract):
    """A change to the canonical catalogue (topic ``events.canonical``, compacted, key: id).

    v2: the event's ``start_conflicts`` (canonical_event v2); a v1 change reads as a v2 one
    without them.
    """

    schema_name = "canonical_change"
    schema_version = 2

    op: ChangeOp
    canonical_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    event: CanonicalEvent
    merged_into: str | None = Field(default=None, description="Survivor id when op is merged")
    split_from: str | None = Field(
        default=None,
        description="When op is created: the event this one left (a source that turned out "
        "to be another performance)",
    )
    changed_at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _check_merge(self) -> Self:
        if (self.op is ChangeOp.MERGED) != (self.merged_into is not None):
            raise ValueError("merged_into is set exactly when op is 'merged'")
        return self


# 2,000 items of ~150 bytes stay well under Kafka's default 1 MB message size.
MAX_BULK_ITEMS = 2000


class ImportOptions(Part):
    force: bool = Field(default=False, description="Re-create even if the organiser deleted it")
    notify: bool = True


def _correlation_field() -> Any:
    """The id that ties an import's log lines together, from the HTTP request to the webhook."""
    return Field(
        default=None,
        max_length=128,
        description="Carried unchanged from the request to its result and notifications, and "
        "onto every log line about them (the API sets it from the caller's X-Request-ID)",
    )


class ImportRequest(Contract):
    """Import an external event as a local event (topic ``import.requests``).

    Name the event either by (provider, external_id) or by canonical_id, not both.
    """

    schema_name = "import_request"

    request_id: str = Field(default_factory=new_id, min_length=1)
    provider: Provider | None = None
    external_id: str | None = None
    canonical_id: str | None = None
    requested_by: str = Field(min_length=1)
    options: ImportOptions = Field(default_factory=ImportOptions)
    requested_at: UtcDatetime = Field(default_factory=utc_now)
    correlation_id: str | None = _correlation_field()

    @model_validator(mode="after")
    def _one_reference(self) -> Self:
        _check_reference(self.provider, self.external_id, self.canonical_id)
        return self

    def key(self) -> str:
        if self.canonical_id:
            return self.canonical_id
        assert self.provider is not None  # guaranteed by _one_reference
        return f"{self.provider.value}:{self.external_id}"


def _check_reference(
    provider: Provider | None, external_id: str | None, canonical_id: str | None
) -> None:
    by_source = provider is not None and bool(external_id)
    if (provider is None) != (external_id is None):
        raise ValueError("provider and external_id go together")
    if by_source == bool(canonical_id):
        raise ValueError("give either (provider, external_id) or canonical_id, not both")


class ImportItem(Part):
    """One event of a bulk import; its result is keyed ``request_id``."""

    request_id: str | None = Field(
        default=None, min_length=1, description='default: "{bulk request_id}.{index}"'
    )
    provider: Provider | None = None
    external_id: str | None = None
    canonical_id: str | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> Self:
        _check_reference(self.provider, self.external_id, self.canonical_id)
        return self


class BulkImportRequest(Contract):
    """Import many events in one message (topic ``import.requests``, key: request id).

    Each item is handled exactly like an ImportRequest of its own and gets its own
    ImportResult on ``import.results``, keyed by the item's request id.
    """

    schema_name = "bulk_import_request"

    request_id: str = Field(default_factory=new_id, min_length=1)
    requested_by: str = Field(min_length=1)
    items: list[ImportItem] = Field(min_length=1, max_length=MAX_BULK_ITEMS)
    options: ImportOptions = Field(default_factory=ImportOptions)
    requested_at: UtcDatetime = Field(default_factory=utc_now)
    correlation_id: str | None = _correlation_field()

    @staticmethod
    def item_request_id(bulk_request_id: str, index: int) -> str:
        """The request id of an item that names none: stable across redeliveries."""
        return f"{bulk_request_id}.{index}"

    def expand(self) -> list[ImportRequest]:
        """One ImportRequest per item, sharing the bulk's requester, options and time."""
        return [
            ImportRequest(
                request_id=item.request_id or self.item_request_id(self.request_id, i),
                provider=item.provider,
                external_id=item.external_id,
                canonical_id=item.canonical_id,
                requested_by=self.requested_by,
                options=self.options,
                requested_at=self.requested_at,
                correlation_id=self.correlation_id,
            )
            for i, item in enumerate(self.items)
        ]


class ImportStatus(StrEnum):
    IMPORTED = "imported"
    REJECTED = "rejected"


class FieldError(Part):
    field: str | None = None
    message: str
    code: str | None = None


class ImportResult(Contract):
    """The outcome of one import request (topic ``import.results``, key: request id)."""

    schema_name = "import_result"

    request_id: str = Field(min_length=1)
    status: ImportStatus
    local_event_id: str | None = None
    message: str | None = Field(default=None, description='e.g. "Event already imported"')
    errors: list[FieldError] = Field(default_factory=list)
    decided_at: UtcDatetime = Field(default_factory=utc_now)
    correlation_id: str | None = _correlation_field()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.status is ImportStatus.IMPORTED and not self.local_event_id:
            raise ValueError("an imported result names its local_event_id")
        if self.status is ImportStatus.REJECTED and not (self.errors or self.message):
            raise ValueError("a rejected result says why (message or errors)")
        return self


class Notification(Contract):
    """Something to tell a user (topic ``notifications``, key: user id)."""

    schema_name = "notification"

    notification_id: str = Field(default_factory=new_id, min_length=1)
    user_id: str = Field(min_length=1)
    type: str = Field(min_length=1, pattern=r"^[a-z_]+(\.[a-z_]+)+$", examples=["event.imported"])
    payload: dict[str, Any] = Field(default_factory=dict)
    created_at: UtcDatetime = Field(default_factory=utc_now)
    correlation_id: str | None = _correlation_field()
