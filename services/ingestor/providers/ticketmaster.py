"""Ticketmaster Discovery v2 streams: events (sliced by date), venues, attractions, segments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from services.ingestor.http import Page
from services.ingestor.streams import PageNumberPaginator, Paginator, Query, Stream, Window
from shared.contracts import Provider
from shared.contracts.messages import Entity

# size x page must stay under 1,000: with 200 a query reaches pages 0-4, i.e. 1,000 records.
PAGE_SIZE = 200
REACHABLE = 1000


def _utc(moment: Any) -> str:
    # Discovery wants UTC with a Z and no fractions: 2027-03-14T19:00:00Z.
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


class TicketmasterStream(Stream):
    provider: ClassVar[Provider] = Provider.TICKETMASTER
    embedded_key: ClassVar[str]

    def paginator(self) -> Paginator:
        return PageNumberPaginator("page", "size", PAGE_SIZE, 0, REACHABLE)

    def records(self, page: Page) -> list[dict[str, Any]]:
        # `_embedded` is missing entirely when nothing matches.
        data = page.data if isinstance(page.data, dict) else {}
        found = (data.get("_embedded") or {}).get(self.embedded_key) or []
        return [r for r in found if isinstance(r, dict) and r.get("id")]

    def total(self, page: Page) -> int | None:
        data = page.data if isinstance(page.data, dict) else {}
        total = (data.get("page") or {}).get("totalElements")
        return int(total) if isinstance(total, int | str) and str(total).isdigit() else None


class TicketmasterEvents(TicketmasterStream):
    name = "events"
    path = "events.json"
    embedded_key = "events"
    cap = REACHABLE

    def window_params(self, window: Window) -> Query:
        # Both bounds are inclusive: stop a second early so windows do not overlap.
        return {
            "startDateTime": _utc(window.start),
            "endDateTime": _utc(window.end - timedelta(seconds=1)),
            "sort": "date,asc",
            # The default silently drops events whose date or time is still TBA/TBD.
            "includeTBA": "yes",
            "includeTBD": "yes",
        }

    def detail_path(self, external_id: str) -> str | None:
        return f"events/{external_id}.json"


class TicketmasterVenues(TicketmasterStream):
    name = "venues"
    entity = Entity.VENUE
    path = "venues.json"
    embedded_key = "venues"
    cap = REACHABLE


class TicketmasterAttractions(TicketmasterStream):
    name = "attractions"
    entity = Entity.PERFORMER
    path = "attractions.json"
    embedded_key = "attractions"
    cap = REACHABLE


class TicketmasterClassifications(TicketmasterStream):
    name = "classifications"
    entity = Entity.CATEGORY
    path = "classifications.json"
    embedded_key = "classifications"

    def record_id(self, record: Any) -> str:
        segment = record.get("segment") or {}
        return str(record.get("id") or segment.get("id"))

    def records(self, page: Page) -> list[dict[str, Any]]:
        data = page.data if isinstance(page.data, dict) else {}
        found = (data.get("_embedded") or {}).get(self.embedded_key) or []
        # A classification's id sits on its segment (or its type for non-event ones).
        return [r for r in found if isinstance(r, dict) and (r.get("segment") or r.get("id"))]
