"""Budgets (rate, quota, provider headers) and date-window slicing under deep-paging caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.ingestor.budget import Budget
from services.ingestor.http import ApiClient, ApiKeyParam, Page
from services.ingestor.providers.ticketmaster import TicketmasterEvents
from services.ingestor.streams import Window, aligned_windows
from shared.contracts import Provider


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_quota_counts_and_rolls_over() -> None:
    clock = Clock()
    budget = Budget(rate_per_s=0, quota=2, period_s=60, clock=clock, wall=clock)
    await budget.acquire()
    await budget.acquire()
    assert budget.spent()
    assert budget.resume_at() == 160.0
    clock.now = 161.0
    assert not budget.spent()
    assert budget.remaining == 2


def test_headers_override_the_local_count() -> None:
    budget = Budget(rate_per_s=0, quota=5000, wall=lambda: 1_000.0)
    budget.observe_headers({"rate-limit-available": "0", "rate-limit-reset": "2000000"})
    assert budget.spent()
    assert budget.resume_at() == 2000.0


def test_windows_are_aligned_and_stable() -> None:
    start = datetime(2027, 3, 17, 17, 45, tzinfo=UTC)  # a Wednesday
    weeks = list(aligned_windows(start, 10, 7))
    assert weeks[0].start == datetime(2027, 3, 15, tzinfo=UTC)  # that week's Monday
    assert weeks[-1].end >= start + timedelta(days=10)
    assert all(w.end - w.start == timedelta(days=7) for w in weeks)
    # A sync a day later polls the same partitions (plus, eventually, a new one at the end).
    later = list(aligned_windows(start + timedelta(days=1), 10, 7))
    assert later[: len(weeks)] == weeks
    days = list(aligned_windows(start, 3))
    assert [d.start.day for d in days] == [17, 18, 19]


def _events_response(request: httpx.Request) -> httpx.Response:
    lo = datetime.fromisoformat(request.url.params["startDateTime"])
    # endDateTime is inclusive: the stream asks for one second before the window's end.
    hi = datetime.fromisoformat(request.url.params["endDateTime"]) + timedelta(seconds=1)
    # 120 events per hour, evenly spread, so a day (2,880) is far over the 1,000 cap.
    total = int((hi - lo).total_seconds() // 30)
    page, size = int(request.url.params["page"]), int(request.url.params["size"])
    assert (page + 1) * size <= 1000, "asked past the deep-paging cap"
    count = max(min(size, total - page * size), 0)
    body: dict[str, Any] = {"page": {"totalElements": total, "number": page, "size": size}}
    if count:
        body["_embedded"] = {"events": [{"id": f"{lo:%H%M}-{page}-{i}"} for i in range(count)]}
    return httpx.Response(200, json=body)


async def test_slicing_keeps_every_query_under_the_cap() -> None:
    transport = httpx.MockTransport(_events_response)
    api = ApiClient(
        Provider.TICKETMASTER,
        "http://127.0.0.1:9/",
        ApiKeyParam("k"),
        Budget(rate_per_s=0),
        transport=transport,
    )
    stream = TicketmasterEvents(api)
    day = Window(datetime(2027, 3, 14, tzinfo=UTC), datetime(2027, 3, 15, tzinfo=UTC))
    ids: list[str] = []
    slices = 0
    async for _window, params, first in stream.slices({}, day):
        slices += 1
        pages: list[Page] = [p async for p in stream.pages(params, first)]
        for page in pages:
            ids += [r["id"] for r in stream.records(page)]
    await api.aclose()
    assert len(ids) == len(set(ids)) == 2880
    assert slices == 4  # 2,880 → 1,440 → 720 each: four quarter-days
