"""Meetup GraphQL (``/gql-ext``) stream: a group's upcoming events, Relay cursor paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from services.ingestor.http import Page
from services.ingestor.streams import Paginator, Query, Stream, Window
from shared.contracts import Provider

PAGE_SIZE = 50

GROUP_EVENTS = """
query GroupEvents($urlname: String!, $first: Int, $after: String,
                  $afterDateTime: DateTime, $beforeDateTime: DateTime) {
  groupByUrlname(urlname: $urlname) {
    id urlname name
    events(first: $first, after: $after,
           filter: {afterDateTime: $afterDateTime, beforeDateTime: $beforeDateTime}) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node {
        token id title description dateTime endTime duration status eventType eventUrl
        venues { name address city state postalCode country lat lon }
        feeSettings { amount currency }
        featuredEventPhoto { id baseUrl highResUrl }
        group { id urlname name timezone }
      } }
    }
  }
}
"""


def _events(page: Page) -> dict[str, Any]:
    data = page.data if isinstance(page.data, dict) else {}
    # A group with nothing upcoming comes back as null.
    group = (data.get("data") or {}).get("groupByUrlname") or {}
    events = group.get("events")
    return events if isinstance(events, dict) else {}


@dataclass(frozen=True)
class RelayPaginator(Paginator):
    """``pageInfo{hasNextPage, endCursor}`` → the next call's ``after`` variable."""

    size: int = PAGE_SIZE

    def first(self, params: Query) -> Query:
        return {**params, "first": self.size, "after": None}

    def next(self, params: Query, page: Page, count: int) -> Query | None:
        info = _events(page).get("pageInfo") or {}
        if not info.get("hasNextPage") or not info.get("endCursor"):
            return None
        return {**params, "after": info["endCursor"]}


class MeetupEvents(Stream):
    """Events of one group (the query's ``urlname``), keyed by ``token``.

    ``token`` is the stable id: ``id`` changes for recurring events.
    """

    provider: ClassVar[Provider] = Provider.MEETUP
    name = "events"
    path = "gql-ext"
    primary_key = "token"
    windowed = False

    def paginator(self) -> Paginator:
        return RelayPaginator()

    def records(self, page: Page) -> list[dict[str, Any]]:
        edges = _events(page).get("edges") or []
        nodes = [e.get("node") for e in edges if isinstance(e, dict)]
        return [n for n in nodes if isinstance(n, dict) and (n.get("token") or n.get("id"))]

    def record_id(self, record: Any) -> str:
        return str(record.get("token") or record["id"])

    def total(self, page: Page) -> int | None:
        total = _events(page).get("totalCount")
        return int(total) if isinstance(total, int) else None

    def horizon_params(self, window: Window) -> Query:
        # DateTime inputs need a zone.
        return {
            "afterDateTime": window.start.isoformat(),
            "beforeDateTime": window.end.isoformat(),
        }

    async def fetch(self, page_params: Query) -> Page:
        return await self.client.request(
            "POST", self.path, json={"query": GROUP_EVENTS, "variables": dict(page_params)}
        )
