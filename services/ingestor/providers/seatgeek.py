"""SeatGeek Platform v2 streams: events (sliced by date), venues, performers, taxonomies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from services.ingestor.http import Page
from services.ingestor.streams import PageNumberPaginator, Paginator, Query, Stream, Window
from shared.contracts import Provider
from shared.contracts.messages import Entity

PER_PAGE = 50  # the current maximum
# Deep paging breaks near 10,000 results (an empty page with total 0).
REACHABLE = 10_000


class SeatGeekStream(Stream):
    provider: ClassVar[Provider] = Provider.SEATGEEK
    list_key: ClassVar[str]

    def paginator(self) -> Paginator:
        return PageNumberPaginator("page", "per_page", PER_PAGE, 1, REACHABLE)

    def records(self, page: Page) -> list[dict[str, Any]]:
        data = page.data if isinstance(page.data, dict) else {}
        found = data.get(self.list_key) or []
        return [r for r in found if isinstance(r, dict) and r.get("id") is not None]

    def total(self, page: Page) -> int | None:
        data = page.data if isinstance(page.data, dict) else {}
        total = (data.get("meta") or {}).get("total")
        return int(total) if isinstance(total, int) else None


class SeatGeekEvents(SeatGeekStream):
    name = "events"
    path = "events"
    list_key = "events"
    cap = REACHABLE

    def window_params(self, window: Window) -> Query:
        # datetime_utc is UTC without a Z; lte is inclusive, so stop a second early to keep
        # windows half-open (an event on the boundary is fetched once).
        last = window.end - timedelta(seconds=1)
        return {
            "datetime_utc.gte": f"{window.start:%Y-%m-%dT%H:%M:%S}",
            "datetime_utc.lte": f"{last:%Y-%m-%dT%H:%M:%S}",
            "sort": "datetime_utc.asc",
        }

    def detail_path(self, external_id: str) -> str | None:
        # Cancelled events vanish from listings; a 404 here confirms it.
        return f"events/{external_id}"


class SeatGeekVenues(SeatGeekStream):
    name = "venues"
    entity = Entity.VENUE
    path = "venues"
    list_key = "venues"
    cap = REACHABLE


class SeatGeekPerformers(SeatGeekStream):
    name = "performers"
    entity = Entity.PERFORMER
    path = "performers"
    list_key = "performers"
    cap = REACHABLE


class SeatGeekTaxonomies(SeatGeekStream):
    name = "taxonomies"
    entity = Entity.CATEGORY
    path = "taxonomies"
    list_key = "taxonomies"
