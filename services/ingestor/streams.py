"""Provider streams: one class per (provider, entity) with its paginator and date-window slicing."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from services.ingestor.http import ApiClient, Page
from shared.contracts import Provider
from shared.contracts.messages import Entity

Query = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open UTC time slice [start, end) of event start times."""

    start: datetime
    end: datetime

    def halves(self) -> tuple[Window, Window]:
        middle = self.start + (self.end - self.start) / 2
        # Keep slices on whole seconds: providers take second-precision timestamps.
        middle = middle.replace(microsecond=0)
        return Window(self.start, middle), Window(middle, self.end)

    @property
    def label(self) -> str:
        return f"{self.start:%Y%m%dT%H%M%S}-{self.end:%Y%m%dT%H%M%S}"

    def splittable(self) -> bool:
        return self.end - self.start > timedelta(minutes=2)


# Windows are aligned to this Monday, so a partition (and its checkpoint) names the same
# slice of time on every sync, whatever day the sync runs.
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def aligned_windows(start: datetime, days: int, step_days: int = 1) -> Iterator[Window]:
    """Windows of ``step_days`` covering [start's UTC day, + days), aligned to :data:`EPOCH`.

    The first window may begin before ``start`` and the last end after the horizon: a few
    extra records, in exchange for partitions that stay put from one sync to the next.
    """
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = first + timedelta(days=days)
    lo = first - timedelta(days=(first - EPOCH).days % step_days)
    while lo < end:
        yield Window(lo, lo + timedelta(days=step_days))
        lo += timedelta(days=step_days)


class Paginator(ABC):
    """Knows how a provider pages: the next request's parameters, or None at the end."""

    @abstractmethod
    def first(self, params: Query) -> Query: ...

    @abstractmethod
    def next(self, params: Query, page: Page, count: int) -> Query | None: ...


@dataclass(frozen=True)
class PageNumberPaginator(Paginator):
    """``page`` + ``size`` parameters (Ticketmaster 0-based, SeatGeek 1-based).

    ``reachable`` is the deep-paging cap: no request may ask for a record past it.
    """

    page_param: str
    size_param: str
    size: int
    first_page: int
    reachable: int

    def first(self, params: Query) -> Query:
        return {**params, self.page_param: self.first_page, self.size_param: self.size}

    def next(self, params: Query, page: Page, count: int) -> Query | None:
        if count < self.size:
            return None
        number = int(params[self.page_param]) + 1
        if (number - self.first_page + 1) * self.size > self.reachable:
            return None
        return {**params, self.page_param: number}


class Stream(ABC):
    """One provider endpoint that lists records (Singer SDK style)."""

    provider: ClassVar[Provider]
    name: ClassVar[str]
    entity: ClassVar[Entity] = Entity.EVENT
    path: ClassVar[str]
    primary_key: ClassVar[str] = "id"
    # How many records one query can reach before deep paging breaks (None: unlimited).
    cap: ClassVar[int | None] = None
    # Whether a sync polls it by time windows (else: one partition per query, whole horizon).
    windowed: ClassVar[bool] = True
    # Window length: long enough that most windows fill whole pages (fewest calls), short
    # enough that few need splitting under the cap; re-polls and resumes go window by window.
    window_days: ClassVar[int] = 7

    def __init__(self, client: ApiClient | None = None) -> None:
        # Without a client a stream can still parse pages (replay from the archive).
        self._client = client

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            raise RuntimeError(f"{self.provider.value} {self.name} stream has no HTTP client")
        return self._client

    @abstractmethod
    def paginator(self) -> Paginator: ...

    @abstractmethod
    def records(self, page: Page) -> list[dict[str, Any]]: ...

    def total(self, page: Page) -> int | None:
        """How many records the query matches, if the provider says."""
        return None

    def record_id(self, record: Mapping[str, Any]) -> str:
        return str(record[self.primary_key])

    def window_params(self, window: Window) -> Query:
        """The query parameters that restrict this stream to ``window``."""
        raise NotImplementedError(f"{self.provider.value} {self.name} cannot slice by date")

    def detail_path(self, external_id: str) -> str | None:
        """Where one record is refetched (for cancellation checks), if anywhere."""
        return None

    def detail_record(self, page: Page) -> dict[str, Any] | None:
        return page.data if isinstance(page.data, dict) else None

    def horizon_params(self, window: Window) -> Query:
        """Parameters bounding an unwindowed stream's poll to the sync horizon."""
        return {}

    async def fetch(self, page_params: Query) -> Page:
        return await self.client.get(self.path, page_params)

    async def pages(self, params: Query, first: Page | None = None) -> AsyncIterator[Page]:
        """Every page of one query; ``first`` reuses a page already fetched (by the slicer).

        The next page is requested while the caller works on this one (publish, archive):
        the provider's latency overlaps our writes instead of adding to them.
        """
        paginator = self.paginator()
        current = paginator.first(params)
        page = first if first is not None else await self.fetch(current)
        while True:
            following = paginator.next(current, page, len(self.records(page)))
            ahead = asyncio.ensure_future(self.fetch(following)) if following else None
            try:
                yield page
            except GeneratorExit:
                if ahead is not None:
                    ahead.cancel()
                raise
            if ahead is None or following is None:
                return
            page, current = await ahead, following

    async def probe(self, params: Query) -> tuple[Page, int | None]:
        """The first page of a query and its total, to decide whether to slice further."""
        page = await self.fetch(self.paginator().first(params))
        return page, self.total(page)

    async def slices(
        self, params: Query, window: Window
    ) -> AsyncIterator[tuple[Window, Query, Page]]:
        """Split ``window`` until each slice's total fits under the deep-paging cap.

        Yields each final slice with its parameters and first page (no call is wasted:
        a slice's probe is its first page). A slice that cannot be split further but is still
        over the cap is fetched up to the cap and the loss is logged by the caller.
        """
        if not self.windowed:
            query = {**params, **self.horizon_params(window)}
            page, _total = await self.probe(query)
            yield window, query, page
            return
        pending = [window]
        while pending:
            current = pending.pop(0)
            query = {**params, **self.window_params(current)}
            page, total = await self.probe(query)
            over = self.cap is not None and total is not None and total > self.cap
            if over and current.splittable():
                pending[:0] = list(current.halves())
                continue
            yield current, query, page
