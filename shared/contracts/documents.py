"""Stored documents: per-source and canonical events, categories, local events, checkpoints."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.contracts.base import Contract, Provider, UtcDatetime, utc_now


class EventStatus(StrEnum):
    """schema.org EventStatusType values, without the URL prefix."""

    SCHEDULED = "EventScheduled"
    CANCELLED = "EventCancelled"
    POSTPONED = "EventPostponed"
    RESCHEDULED = "EventRescheduled"
    MOVED_ONLINE = "EventMovedOnline"


class Part(BaseModel):
    """A nested value object: tolerant of unknown fields like the contracts that hold it."""

    model_config = ConfigDict(extra="ignore")


class When(Part):
    """A point in time as UTC, as the venue's wall clock, and the IANA zone that links them."""

    utc: UtcDatetime | None = None
    local: str | None = Field(
        default=None, description="Venue wall-clock time, ISO 8601 without offset"
    )
    timezone: str | None = Field(default=None, description="IANA zone, e.g. Europe/London")
    date_tbd: bool = False
    time_tbd: bool = False


class Venue(Part):
    name: str | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    postal_code: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    timezone: str | None = None
    external_id: str | None = None


class Performer(Part):
    name: str
    external_id: str | None = None
    spotify_id: str | None = None
    genres: list[str] = Field(default_factory=list)
    popularity: int | None = Field(default=None, ge=0, le=100)
    match_confidence: float | None = Field(default=None, ge=0, le=1)


class PriceRange(Part):
    min: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value


class ProviderCategory(Part):
    source: Provider
    external_id: str | None = None
    name: str
    level: str | None = Field(default=None, description="segment, genre, subgenre, taxonomy …")


class EventFields(Contract):
    """Fields that a per-source record and a canonical event share."""

    title: str = Field(min_length=1)
    description: str | None = None
    category: str | None = None
    subcategory: str | None = None
    provider_categories: list[ProviderCategory] = Field(default_factory=list)
    status: EventStatus = EventStatus.SCHEDULED
    previous_start: UtcDatetime | None = None
    start: When
    end: When | None = None
    venue: Venue | None = None
    online: bool = False
    performers: list[Performer] = Field(default_factory=list)
    price_range: PriceRange | None = None
    ticket_url: str | None = None
    image_url: str | None = None
    version: int = Field(default=1, ge=1, description="Bumped on every stored change")
    created_at: UtcDatetime = Field(default_factory=utc_now)
    updated_at: UtcDatetime = Field(default_factory=utc_now)


class ExternalEvent(EventFields):
    """One provider's record of an event (collection ``external_events``).

    Unique on (source, external_id). ``start_utc`` and ``venue_city`` are flat copies kept for
    the seed indexes (source, start), (venue_city, start) and (category, start).
    """

    schema_name = "external_event"

    source: Provider
    external_id: str = Field(min_length=1)
    url: str | None = None
    start_utc: UtcDatetime | None = None
    venue_city: str | None = None
    content_hash: str = Field(description="Hash of the verbatim payload, for exact dedupe")
    source_updated_at: UtcDatetime | None = Field(
        default=None, description="The provider's own change time, where it sends one"
    )
    canonical_id: str | None = None
    is_imported: bool = False
    imported_event: str | None = Field(default=None, description="Local event id, once imported")
    last_synced: UtcDatetime = Field(default_factory=utc_now)


class SourceRef(Part):
    source: Provider
    external_id: str
    match_score: float | None = Field(default=None, ge=0, le=1)


class StartConflict(Part):
    """A source whose start is a whole number of hours off the event's while its wall clock is
    the same: most likely that provider's time-zone error (see docs/NORMALIZER.md)."""

    source: Provider
    external_id: str
    utc: UtcDatetime = Field(description="The start that source gives, in UTC")
    timezone: str | None = Field(default=None, description="The zone that source gives")
    hours: int = Field(description="Its start minus the event's, in whole hours")


class CanonicalEvent(EventFields):
    """One real performance, clustered across providers (collection ``events``).

    v2: ``start_conflicts`` (sources whose start is whole hours off with the same wall clock).
    """

    schema_name = "canonical_event"
    schema_version = 2

    id: str = Field(alias="_id", min_length=1)
    sources: list[SourceRef] = Field(min_length=1)
    start_conflicts: list[StartConflict] = Field(
        default_factory=list,
        description="Sources whose start is a whole number of hours off ``start`` although "
        "their wall clock agrees (a provider's time-zone error); empty when none is",
    )
    duplicate_of: str | None = Field(default=None, description="Survivor id after a merge")
    is_imported: bool = False
    imported_event: str | None = None


class Category(Contract):
    """A category in the canonical taxonomy or a provider's (collection ``categories``).

    Unique on (name, source); ``source`` is ``marquee`` for the canonical taxonomy.
    """

    schema_name = "category"

    name: str = Field(min_length=1)
    source: str = Field(min_length=1)
    external_id: str | None = None
    parent: str | None = None


class LocalEvent(Contract):
    """An event created on the organiser's platform from an external one (``local_events``).

    v2: ``deleted_at`` (a soft delete; the importer will not re-create it unless forced).
    """

    schema_name = "local_event"
    schema_version = 2

    id: str = Field(alias="_id", min_length=1)
    title: str = Field(min_length=1)
    description: str | None = None
    location: str | None = None
    start: UtcDatetime
    start_local: str | None = None
    timezone: str | None = None
    end: UtcDatetime | None = None
    created_by: str = Field(min_length=1)
    external_event_id: str
    source: Provider
    canonical_id: str | None = None
    venue_name: str | None = None
    venue_address: str | None = None
    status: EventStatus = EventStatus.SCHEDULED
    version: int = Field(default=1, ge=1)
    created_at: UtcDatetime = Field(default_factory=utc_now)
    updated_at: UtcDatetime = Field(default_factory=utc_now)
    deleted_at: UtcDatetime | None = Field(
        default=None, description="Set when the organiser deleted it: readers treat it as gone"
    )


class Checkpoint(Contract):
    """Sync progress per (provider, stream, partition) (collection ``checkpoints``)."""

    schema_name = "checkpoint"

    provider: Provider
    stream: str = Field(min_length=1)
    partition: str = Field(default="", description="e.g. a query or date window; '' for none")
    cursor: dict[str, Any] = Field(default_factory=dict)
    last_call_hash: str | None = Field(
        default=None, description="Hash of the last identical request, for should_skip"
    )
    last_success_at: UtcDatetime | None = None
    updated_at: UtcDatetime = Field(default_factory=utc_now)
