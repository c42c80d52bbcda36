"""Eventbrite v3 streams: events per organization (no public search since 2019), venues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from services.ingestor.http import Page
from services.ingestor.streams import Paginator, Query, Stream, Window
from shared.contracts import Provider
from shared.contracts.messages import Entity

# A cancelled event can still read "live" or "completed": the truth is in
# event_sales_status.message_code, which only comes with this expansion.
# subcategory: its name (ids outside music have no table here, and the API names them).
EXPAND = "venue,ticket_availability,event_sales_status,category,subcategory"


@dataclass(frozen=True)
class ContinuationPaginator(Paginator):
    """``pagination{has_more_items, continuation}``: repeat the call with ``continuation=``."""

    def first(self, params: Query) -> Query:
        return {k: v for k, v in params.items() if k != "continuation"}

    def next(self, params: Query, page: Page, count: int) -> Query | None:
        data = page.data if isinstance(page.data, dict) else {}
        paging = data.get("pagination") or {}
        token = paging.get("continuation")
        if not paging.get("has_more_items") or not token:
            return None
        return {**params, "continuation": token}


class EventbriteStream(Stream):
    provider: ClassVar[Provider] = Provider.EVENTBRITE
    list_key: ClassVar[str]
    windowed = False

    def paginator(self) -> Paginator:
        return ContinuationPaginator()

    def records(self, page: Page) -> list[dict[str, Any]]:
        data = page.data if isinstance(page.data, dict) else {}
        found = data.get(self.list_key) or []
        return [r for r in found if isinstance(r, dict) and r.get("id")]

    def total(self, page: Page) -> int | None:
        data = page.data if isinstance(page.data, dict) else {}
        total = (data.get("pagination") or {}).get("object_count")
        return int(total) if isinstance(total, int) else None


class EventbriteEvents(EventbriteStream):
    """Events of one organization: the query's ``organization`` parameter picks it."""

    name = "events"
    path = "organizations/{organization}/events/"
    list_key = "events"

    def horizon_params(self, window: Window) -> Query:
        return {
            "expand": EXPAND,
            "status": "live,started,ended,completed,canceled",
            "time_filter": "current_future",
            "order_by": "start_asc",
        }

    async def fetch(self, page_params: Query) -> Page:
        params = dict(page_params)
        organization = params.pop("organization")
        return await self.client.get(self.path.format(organization=organization), params)

    def detail_path(self, external_id: str) -> str | None:
        return f"events/{external_id}/?expand={EXPAND}"


class EventbriteOrganizations(EventbriteStream):
    """The organizations the token belongs to (used when none are configured)."""

    name = "organizations"
    entity = Entity.CATEGORY
    path = "users/me/organizations/"
    list_key = "organizations"
