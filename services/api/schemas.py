"""Response models: they document the API (OpenAPI); hot paths send pre-rendered JSON."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import CanonicalEvent, ExternalEvent, FieldError

ADDON_DESCRIPTION = (
    "a parking pass, VIP upgrade or pre-game pass sold beside a performance (listed only with"
    " include_addons=true; never imported as an event)"
)


class ExternalEventOut(ExternalEvent):
    """A per-source record as served (``id`` = ``{source}:{external_id}``)."""

    id: str
    content_hash: str | None = None  # type: ignore[assignment]
    addon: bool = Field(default=False, description=ADDON_DESCRIPTION)
    distance_km: float | None = Field(
        default=None, description="from lat/lon, when the request gave them"
    )


class CanonicalEventOut(CanonicalEvent):
    """A canonical event as served."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str = Field(min_length=1)
    addon: bool = Field(default=False, description=ADDON_DESCRIPTION)


class Error(BaseModel):
    error: str
    details: list[FieldError] | None = None
    retry_after: int | None = None


class ImportedRef(BaseModel):
    id: str
    source: str | None = None
    external_id: str | None = None
    local_event_id: str
    local_event_url: str


class SearchResponse(BaseModel):
    events: list[ExternalEventOut] = Field(
        description="per-source records; with dedupe, one per canonical event"
    )
    imported_events: list[ImportedRef]
    total_count: int = Field(
        description="matches counted from this page's position on (this page included)"
    )
    total_exact: bool = Field(
        description="true when total_count is every match left; false: at least that many"
    )
    next_cursor: str | None = None


class EventsResponse(BaseModel):
    events: list[CanonicalEventOut]
    total_count: int = Field(
        description="matches counted from this page's position on (this page included)"
    )
    total_exact: bool = Field(
        description="true when total_count is every match left; false: at least that many"
    )
    next_cursor: str | None = None


class Change(BaseModel):
    op: Literal["created", "updated", "cancelled", "merged"]
    canonical_id: str
    version: int
    modified: str
    merged_into: str | None = None
    event: CanonicalEventOut


class ChangesResponse(BaseModel):
    changes: list[Change]
    next_after: str | None
    has_more: bool


class ImportCreated(BaseModel):
    message: str
    local_event_id: str
    local_event_url: str
    request_id: str


class ImportAccepted(BaseModel):
    message: str
    request_id: str
    status: Literal["pending"]
    status_url: str


class ImportItem(BaseModel):
    source: str = Field(min_length=1, max_length=40)
    external_id: str = Field(min_length=1, max_length=200)


class BulkImportRequest(BaseModel):
    items: list[ImportItem] = Field(min_length=1, max_length=100)


class BulkImportResponse(BaseModel):
    results: list[dict[str, Any]]


class ImportStatusOut(BaseModel):
    request_id: str
    status: Literal["pending", "imported", "rejected"]
    source: str | None = None
    external_id: str | None = None
    local_event_id: str | None = None
    local_event_url: str | None = None
    message: str | None = None


class CategoryNode(BaseModel):
    name: str
    source: str
    parent: str | None = None
    external_id: str | None = None
    count: int = 0
    children: list[CategoryNode] = Field(default_factory=list)


class CategoriesResponse(BaseModel):
    categories: list[CategoryNode]


class ExportResult(BaseModel):
    appended: int
    total_rows: int
    download_url: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "missing, expired or invalid token"},
    403: {"model": Error, "description": "the token's role may not do this"},
    422: {"model": Error, "description": "a parameter or the body has the wrong type"},
    429: {"model": Error, "description": "rate limit; retry_after seconds"},
}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": Error, "description": "invalid parameter (details per field)"},
    503: {"model": Error, "description": "the store is unreachable; retry_after"},
}


# --- /recommendations -------------------------------------------------------------------------


class RecommendedArtist(BaseModel):
    asked: str = Field(description="as given in `artists`")
    name: str
    spotify_id: str | None = None
    genres: list[str]


class Recommendation(BaseModel):
    event: CanonicalEventOut
    score: float = Field(description="genre similarity + liked artist + popularity + nearness")
    distance_km: float
    why: list[str] = Field(min_length=1, description='e.g. "shares genre rock with Artist X"')
    artists: list[str] = Field(description="the liked artists it is recommended for")


class RecommendationsResponse(BaseModel):
    recommendations: list[Recommendation]
    artists: list[RecommendedArtist] = Field(description="the liked artists found")
    unmatched: list[str] = Field(description="asked artists that are no known id or name")
    total_count: int = Field(description="recommendations from this page's position on")
    next_cursor: str | None = None
