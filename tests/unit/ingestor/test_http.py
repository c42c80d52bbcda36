"""The provider HTTP client against scripted responses: retries, throttling, auth, quotas."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from services.ingestor.budget import Budget
from services.ingestor.errors import Action, AuthError, ProviderError, QuotaSpent, classify
from services.ingestor.http import (
    ApiClient,
    ApiKeyParam,
    BasicAuth,
    BearerToken,
    ClientCredentials,
    RetryPolicy,
)
from shared.contracts import Provider

Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def scripted(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return httpx.MockTransport(handle), seen


def client(
    provider: Provider,
    transport: httpx.MockTransport,
    *,
    auth: object = None,
    budget: Budget | None = None,
    sleep: Sleeps | None = None,
) -> ApiClient:
    return ApiClient(
        provider,
        "http://127.0.0.1:9/api/",
        auth or ApiKeyParam("sekret-key"),  # type: ignore[arg-type]
        budget or Budget(rate_per_s=0),
        transport=transport,
        retry=RetryPolicy(max_attempts=3, base_s=0.01, cap_s=0.05, max_wait_s=60),
        sleep=sleep or Sleeps(),
    )


def j(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


async def test_api_key_added_and_scrubbed_from_urls() -> None:
    transport, seen = scripted(j(200, {"ok": True}))
    async with client(Provider.TICKETMASTER, transport) as api:
        page = await api.get("events.json", {"size": 20})
    assert seen[0].url.params["apikey"] == "sekret-key"
    assert "sekret-key" not in page.url
    assert page.data == {"ok": True}


async def test_transient_errors_are_retried_with_backoff() -> None:
    sleeps = Sleeps()
    transport, seen = scripted(j(503, {}), httpx.Response(200, content=b'{"trunc'), j(200, [1]))
    async with client(Provider.SEATGEEK, transport, sleep=sleeps) as api:
        page = await api.get("events")
    assert page.data == [1]
    assert len(seen) == 3
    assert len(sleeps.calls) == 2


async def test_gives_up_after_max_attempts_with_a_clear_error() -> None:
    transport, seen = scripted(j(500, {"error": "boom"}))
    async with client(Provider.SEATGEEK, transport) as api:
        with pytest.raises(ProviderError, match="gave up after 3 attempts"):
            await api.get("events")
    assert len(seen) == 3


async def test_retry_after_is_honoured() -> None:
    waited: list[float] = []
    now = [100.0]

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds

    budget = Budget(rate_per_s=0, sleep=sleep, clock=lambda: now[0])
    transport, _ = scripted(j(429, {}, {"Retry-After": "7"}), j(200, {}))
    async with client(Provider.SPOTIFY, transport, budget=budget) as api:
        await api.get("artists/x")
    # The wait is taken as a pause of the budget, so every caller sharing it slows down.
    assert budget._next_slot > 0
    assert waited == [7.0]


async def test_long_rate_limit_wait_stops_the_job() -> None:
    transport, _ = scripted(j(429, {}, {"Retry-After": "3600"}))
    async with client(Provider.SPOTIFY, transport) as api:
        with pytest.raises(QuotaSpent) as caught:
            await api.get("artists/x")
    assert caught.value.resume_at is not None


async def test_ticketmaster_quota_violation_stops_with_reset_time() -> None:
    body = {"fault": {"detail": {"errorcode": "policies.ratelimit.QuotaViolation"}}}
    headers = {"Rate-Limit-Reset": "1900000000000", "Rate-Limit-Available": "0"}
    transport, seen = scripted(j(429, body, headers))
    async with client(Provider.TICKETMASTER, transport) as api:
        with pytest.raises(QuotaSpent) as caught:
            await api.get("events.json")
    assert caught.value.resume_at == 1_900_000_000.0
    assert len(seen) == 1  # no retry loop against a spent quota


async def test_spent_budget_makes_no_call() -> None:
    transport, seen = scripted(j(200, {}))
    async with client(Provider.SEATGEEK, transport, budget=Budget(rate_per_s=0, quota=1)) as api:
        await api.get("events")
        with pytest.raises(QuotaSpent):
            await api.get("events")
    assert len(seen) == 1


async def test_auth_failure_names_the_setting() -> None:
    transport, _ = scripted(j(401, {"fault": {"faultstring": "Invalid ApiKey"}}))
    async with client(Provider.TICKETMASTER, transport) as api:
        with pytest.raises(AuthError, match="check the ticketmaster credentials"):
            await api.get("events.json")


async def test_not_found_is_returned_not_raised() -> None:
    transport, _ = scripted(j(404, {"errors": [{"code": "DIS1004"}]}))
    async with client(Provider.TICKETMASTER, transport) as api:
        page = await api.get("events/abc.json")
    assert (page.status, page.data) == (404, None)


async def test_client_credentials_cached_and_refreshed_on_401() -> None:
    tokens: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            expected = base64.b64encode(b"cid:csecret").decode()
            assert request.headers["Authorization"] == f"Basic {expected}"
            tokens.append(f"t{len(tokens)}")
            return j(200, {"access_token": tokens[-1], "expires_in": 3600})
        if request.headers["Authorization"] == "Bearer t0" and request.url.path.endswith("/2"):
            return j(401, {"error": {"status": 401, "message": "The access token expired"}})
        return j(200, {"auth": request.headers["Authorization"]})

    auth = ClientCredentials("http://127.0.0.1:9/token", "cid", "csecret")
    async with client(Provider.SPOTIFY, httpx.MockTransport(handle), auth=auth) as api:
        first = await api.get("artists/1")
        second = await api.get("artists/2")
    assert first.data == {"auth": "Bearer t0"}
    assert second.data == {"auth": "Bearer t1"}
    assert tokens == ["t0", "t1"]


async def test_client_credentials_refreshed_before_expiry() -> None:
    now = [0.0]
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            calls.append("token")
            return j(200, {"access_token": f"t{len(calls)}", "expires_in": 3600})
        return j(200, {})

    auth = ClientCredentials(
        "http://127.0.0.1:9/token", "a", "b", margin_s=60, clock=lambda: now[0]
    )
    async with client(Provider.SPOTIFY, httpx.MockTransport(handle), auth=auth) as api:
        await api.get("x")
        now[0] = 3000.0
        await api.get("x")
        now[0] = 3550.0  # within the margin: a fresh token before the old one expires
        await api.get("x")
    assert calls == ["token", "token"]


@pytest.mark.parametrize(
    ("provider", "response", "action"),
    [
        (Provider.SEATGEEK, j(406, {}), Action.RATE_LIMITED),
        (Provider.EVENTBRITE, j(429, {"error": "HIT_RATE_LIMIT"}), Action.QUOTA_SPENT),
        (Provider.MEETUP, j(200, {"errors": [{"message": "x"}]}), Action.FAIL),
        (
            Provider.MEETUP,
            j(200, {"errors": [{"message": "slow", "extensions": {"code": "RATE_LIMITED"}}]}),
            Action.RATE_LIMITED,
        ),
        (Provider.SPOTIFY, j(429, {"error": {"reason": "QUOTA_EXCEEDED"}}), Action.QUOTA_SPENT),
        (Provider.TICKETMASTER, j(400, {"errors": [{"code": "DIS1035"}]}), Action.FAIL),
        (Provider.TICKETMASTER, j(502, {}), Action.RETRY),
        (Provider.TICKETMASTER, j(418, {}), Action.FAIL),
    ],
)
def test_error_table(provider: Provider, response: httpx.Response, action: Action) -> None:
    assert classify(provider, response).action is action


async def test_bearer_and_basic_headers() -> None:
    transport, seen = scripted(j(200, {}))
    async with client(Provider.EVENTBRITE, transport, auth=BearerToken("tok")) as api:
        await api.get("x")
    async with client(Provider.SEATGEEK, transport, auth=BasicAuth("id", "pw")) as api:
        await api.get("x")
    assert seen[0].headers["Authorization"] == "Bearer tok"
    assert seen[1].headers["Authorization"].startswith("Basic ")
