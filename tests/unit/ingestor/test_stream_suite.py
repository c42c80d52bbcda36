"""The standard suite every provider stream passes, against the sandbox app and real samples.

The sandbox runs in-process (its ASGI app behind httpx's ASGI transport): the same code that
serves ``python -m deploy.sandbox``, without a socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from deploy.sandbox import Limits, World, create_app
from deploy.sandbox.credentials import client_env
from services.ingestor.budget import Budget
from services.ingestor.errors import AuthError, QuotaSpent
from services.ingestor.http import ApiClient, Page, RetryPolicy
from services.ingestor.providers.eventbrite import EventbriteEvents, EventbriteOrganizations
from services.ingestor.providers.meetup import MeetupEvents
from services.ingestor.providers.seatgeek import (
    SeatGeekEvents,
    SeatGeekPerformers,
    SeatGeekTaxonomies,
    SeatGeekVenues,
)
from services.ingestor.providers.ticketmaster import (
    TicketmasterAttractions,
    TicketmasterClassifications,
    TicketmasterEvents,
    TicketmasterVenues,
)
from services.ingestor.streams import Query, Stream, Window
from services.ingestor.wiring import auth_for
from shared.contracts import Provider
from shared.settings import IngestorSettings
from tests.sandbox import environ

SAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "provider-samples"
START = datetime(2026, 11, 23, tzinfo=UTC)
BASE = "http://sandbox"
OPEN = Limits(
    tm_per_second=0,
    tm_daily_quota=0,
    sg_per_second=0,
    eb_per_hour=0,
    meetup_points=0,
    spotify_window_requests=0,
)


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=11, events=4000)


@dataclass
class Case:
    """One stream and the query that exercises it."""

    cls: type[Stream]
    query: Callable[[World], Query]
    prefix: str

    @property
    def id(self) -> str:
        return f"{self.cls.provider.value}-{self.cls.name}"


def _group(world: World) -> Query:
    # The group with the most events, so cursor paging really pages.
    urlname = max(world.mu_by_group, key=lambda g: len(world.mu_by_group[g]))
    return {"urlname": urlname}


def _org(world: World) -> Query:
    return {"organization": sorted(world.eb_orgs)[0]}


CASES = [
    Case(TicketmasterEvents, lambda w: {}, "/ticketmaster/discovery/v2/"),
    Case(TicketmasterVenues, lambda w: {}, "/ticketmaster/discovery/v2/"),
    Case(TicketmasterAttractions, lambda w: {}, "/ticketmaster/discovery/v2/"),
    Case(TicketmasterClassifications, lambda w: {}, "/ticketmaster/discovery/v2/"),
    Case(SeatGeekEvents, lambda w: {}, "/seatgeek/2/"),
    Case(SeatGeekVenues, lambda w: {}, "/seatgeek/2/"),
    Case(SeatGeekPerformers, lambda w: {}, "/seatgeek/2/"),
    Case(SeatGeekTaxonomies, lambda w: {}, "/seatgeek/2/"),
    Case(EventbriteEvents, _org, "/eventbrite/v3/"),
    Case(EventbriteOrganizations, lambda w: {}, "/eventbrite/v3/"),
    Case(MeetupEvents, _group, "/meetup/"),
]


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the sandbox app and keeps them for the paging-cap checks."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


def settings_for_sandbox(**changes: Any) -> IngestorSettings:
    with environ(client_env(BASE)):
        settings = IngestorSettings()
    for name, value in changes.items():
        setattr(settings, name, value)
    return settings


def make_stream(
    case: Case,
    world: World,
    *,
    budget: Budget | None = None,
    limits: Limits | None = None,
    settings: IngestorSettings | None = None,
) -> tuple[Stream, Recorder, ApiClient]:
    app = create_app(world, limits or Limits(**{k: getattr(OPEN, k) for k in OPEN.__slots__}))
    recorder = Recorder(app)
    client = ApiClient(
        case.cls.provider,
        BASE + case.prefix,
        auth_for(settings or settings_for_sandbox(), case.cls.provider),
        budget or Budget(rate_per_s=0),
        transport=recorder,
        retry=RetryPolicy(max_attempts=4, base_s=0.0, cap_s=0.0),
    )
    return case.cls(client), recorder, client


async def all_pages(stream: Stream, params: Query, limit: int = 500) -> AsyncIterator[Page]:
    window = Window(START, START + timedelta(days=30))
    count = 0
    async for _w, query, first in (
        stream.slices(params, window) if stream.windowed else _one(stream, params, window)
    ):
        async for page in stream.pages(query, first):
            count += 1
            assert count <= limit, "paging did not terminate"
            yield page


async def _one(stream: Stream, params: Query, window: Window) -> AsyncIterator[Any]:
    query = {**params, **stream.horizon_params(window)}
    yield window, query, None


async def first_page(stream: Stream, params: Query) -> Page:
    window = Window(START, START + timedelta(days=30))
    bounds = stream.window_params(window) if stream.windowed else stream.horizon_params(window)
    return await stream.fetch(stream.paginator().first({**params, **bounds}))


def windowed(case: Case) -> bool:
    try:
        case.cls().window_params(Window(START, START + timedelta(days=1)))
    except NotImplementedError:
        return False
    return case.cls.windowed


def check_cap(case: Case, recorder: Recorder) -> None:
    """No request asks for a record past the provider's deep-paging cap."""
    for request in recorder.requests:
        params = request.url.params
        if case.cls.provider is Provider.TICKETMASTER:
            assert (int(params.get("page", 0)) + 1) * int(params.get("size", 20)) <= 1000
        if case.cls.provider is Provider.SEATGEEK:
            assert int(params.get("page", 1)) * int(params.get("per_page", 10)) <= 10_000


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_ids_present_unique_and_paging_terminates(case: Case, world: World) -> None:
    stream, recorder, client = make_stream(case, world)
    if not windowed(case):
        stream.windowed = False  # type: ignore[misc]
    ids: list[str] = []
    async with client:
        async for page in all_pages(stream, case.query(world)):
            ids += [stream.record_id(r) for r in stream.records(page)]
    assert ids, f"{case.id} returned nothing"
    assert all(ids)
    assert len(ids) == len(set(ids)), f"{case.id} returned an id twice"
    check_cap(case, recorder)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_no_call_past_the_quota(case: Case, world: World) -> None:
    stream, recorder, client = make_stream(case, world, budget=Budget(rate_per_s=0, quota=2))
    if not windowed(case):
        stream.windowed = False  # type: ignore[misc]
    async with client:
        try:
            async for _page in all_pages(stream, case.query(world)):
                pass
        except QuotaSpent:
            pass
    assert len(recorder.requests) <= 2


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_auth_failure_is_a_clear_error(case: Case, world: World) -> None:
    bad = settings_for_sandbox()
    for field in ("ticketmaster", "eventbrite", "meetup"):
        sub = getattr(bad, field)
        secret = "api_key" if field == "ticketmaster" else "token"
        setattr(sub, secret, getattr(sub, secret).__class__("wrong"))
    bad.seatgeek.client_id = bad.seatgeek.client_id.__class__("wrong")
    stream, _recorder, client = make_stream(case, world, settings=bad)
    async with client:
        with pytest.raises(AuthError, match=f"check the {case.cls.provider.value} credentials"):
            await stream.fetch(stream.paginator().first(case.query(world)))


@pytest.mark.parametrize("case", [c for c in CASES if c.cls.name == "events"], ids=lambda c: c.id)
@pytest.mark.parametrize("kind", ["5xx_burst", "malformed_json", "truncated"])
async def test_faults_are_retried_without_loss(case: Case, kind: str, world: World) -> None:
    clean, _r, client = make_stream(case, world)
    async with client:
        first = await first_page(clean, case.query(world))
    stream, recorder, client = make_stream(case, world)
    async with client:
        response = await client.http.post(
            f"{BASE}/_sandbox/faults",
            json={"provider": case.cls.provider.value, "kind": kind, "count": 2},
        )
        assert response.status_code < 300, response.text
        again = await first_page(stream, case.query(world))
    assert stream.records(again) == clean.records(first)
    assert stream.records(again)
    assert len(recorder.requests) >= 3  # two faulty answers, then the good one


# ------------------------------------------------------------------ real recorded samples


def sample(path: str) -> Any:
    file = SAMPLES / path
    if not file.exists():
        pytest.skip(f"{file} is not present (the samples folder sits beside the repo)")
    return orjson.loads(file.read_bytes())


def page_of(body: Any) -> Page:
    return Page("sample", 200, {}, orjson.dumps(body), body, 0.0)


def test_ticketmaster_sample_pages() -> None:
    recording = sample("ticketmaster/tm_sdkjs_event_all-200.json")
    body = recording[0]["response"]
    stream = TicketmasterEvents()
    records = stream.records(page_of(body))
    assert len(records) == 20
    assert len({stream.record_id(r) for r in records}) == 20
    assert stream.total(page_of(body)) == body["page"]["totalElements"]
    detail = sample("ticketmaster/tm_sdkjs_event_find-200.json")[0]["response"]
    assert stream.detail_record(page_of(detail)) == detail


def test_seatgeek_sample_page() -> None:
    body = sample("seatgeek/sg_viresh_TestData.validJson.extracted.json")
    stream = SeatGeekEvents()
    records = stream.records(page_of(body))
    assert records
    assert all(isinstance(stream.record_id(r), str) for r in records)
    assert stream.total(page_of(body)) == body["meta"]["total"]


def test_eventbrite_sample_page() -> None:
    body = sample("eventbrite/hackgvl_eventbrite__cancelled-event.json")
    stream = EventbriteEvents()
    records = stream.records(page_of(body))
    assert [stream.record_id(r) for r in records] == [str(body["events"][0]["id"])]
    assert stream.paginator().next({}, page_of(body), len(records)) is None


def test_meetup_sample_pages() -> None:
    stream = MeetupEvents()
    found = 0
    for name in sorted((SAMPLES / "meetup").glob("*.json")) if SAMPLES.exists() else []:
        body = orjson.loads(name.read_bytes())
        records = stream.records(page_of(body))
        found += len(records)
        assert all(stream.record_id(r) for r in records)
    if not SAMPLES.exists():
        pytest.skip("samples folder absent")
    assert found > 0
