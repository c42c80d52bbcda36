"""Fixtures: a shared read-only world and a factory for in-process sandbox clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from deploy.sandbox import Limits, State, World, create_app

TM_AUTH = {"apikey": "sandbox-tm-key"}
SG_AUTH = {"client_id": "sandbox-sg-id"}
EB_AUTH = {"Authorization": "Bearer sandbox-eb-token"}
MU_AUTH = {"Authorization": "Bearer sandbox-meetup-token"}
SP_BASIC = ("sandbox-spotify-id", "sandbox-spotify-secret")

# Limits that never get in the way; throttling tests switch on the one they exercise.
OPEN = {
    "tm_per_second": 0,
    "tm_daily_quota": 0,
    "sg_per_second": 0,
    "eb_per_hour": 0,
    "meetup_points": 0,
    "spotify_window_requests": 0,
}


class FakeClock:
    """Monotonic and wall clock in one; tests move it by hand."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="session")
def world() -> World:
    """Read-only: tests that advance the clock build their own World."""
    return World(seed=42, events=2000)


Client = tuple[httpx.AsyncClient, FakeClock]
MakeClient = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
def make_client() -> MakeClient:
    @asynccontextmanager
    async def factory(w: World, **limits: Any) -> AsyncIterator[Client]:
        clock = FakeClock()
        state = State(Limits(**{**OPEN, **limits}), clock=clock, wall=clock)
        app = create_app(w, state=state)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            yield client, clock

    return factory
