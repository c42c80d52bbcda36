"""Base classes and field types shared by every versioned contract."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Naive datetimes are refused (AwareDatetime); aware ones are normalised to UTC so that stored
# values compare and index consistently whatever offset the provider sent.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def utc_now() -> datetime:
    """The current instant as an aware UTC datetime."""
    return datetime.now(UTC)


class Provider(StrEnum):
    """External systems Marquee pulls from (Spotify only enriches performers)."""

    TICKETMASTER = "ticketmaster"
    SEATGEEK = "seatgeek"
    EVENTBRITE = "eventbrite"
    MEETUP = "meetup"
    SPOTIFY = "spotify"


class Contract(BaseModel):
    """A versioned message or document; unknown fields are tolerated and dropped.

    ``schema_version`` is bumped on every change to the generated JSON Schema
    (``tests/unit/test_schemas.py`` enforces it); a breaking change also gets an upcaster.
    """

    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)

    schema_name: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        """The CloudEvents ``ce_type`` for this contract, e.g. ``marquee.raw_record.v1``."""
        return f"marquee.{cls.schema_name}.v{cls.schema_version}"

    def to_json_bytes(self) -> bytes:
        """Serialise for Kafka or storage (JSON, UTC datetimes in ISO 8601)."""
        return self.model_dump_json(by_alias=True).encode()

    def to_document(self) -> dict[str, Any]:
        """A MongoDB document: datetimes stay datetimes, enums become strings."""
        return self.model_dump(by_alias=True, mode="python")
