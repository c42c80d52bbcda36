"""The shared provider HTTP client: auth, budgets, the error table, jittered retries."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from services.ingestor.budget import Budget
from services.ingestor.errors import (
    Action,
    AuthError,
    Outcome,
    ProviderError,
    QuotaSpent,
    classify,
    classify_exception,
)
from shared.contracts import Provider
from shared.logs import scrub

log = logging.getLogger(__name__)

Params = Mapping[str, str | int | float | None]


class Auth(Protocol):
    """How a provider wants its credentials; ``refresh`` runs once after a 401."""

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None: ...

    async def refresh(self, http: httpx.AsyncClient) -> bool: ...

    def secrets(self) -> list[str]: ...


@dataclass
class ApiKeyParam:
    """Ticketmaster: ``?apikey=``."""

    key: str
    name: str = "apikey"

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        request.url = request.url.copy_set_param(self.name, self.key)

    async def refresh(self, http: httpx.AsyncClient) -> bool:
        return False

    def secrets(self) -> list[str]:
        return [self.key]


@dataclass
class BasicAuth:
    """SeatGeek (client_id:client_secret) and the Spotify token endpoint."""

    user: str
    password: str

    def header(self) -> str:
        raw = f"{self.user}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        request.headers["Authorization"] = self.header()

    async def refresh(self, http: httpx.AsyncClient) -> bool:
        return False

    def secrets(self) -> list[str]:
        return [self.password, base64.b64encode(f"{self.user}:{self.password}".encode()).decode()]


@dataclass
class BearerToken:
    """Eventbrite private tokens and Meetup tokens obtained elsewhere."""

    token: str

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        request.headers["Authorization"] = f"Bearer {self.token}"

    async def refresh(self, http: httpx.AsyncClient) -> bool:
        return False

    def secrets(self) -> list[str]:
        return [self.token]


@dataclass
class ClientCredentials:
    """OAuth2 client-credentials (Spotify): cached token, refreshed before expiry and on 401.

    Spotify issues no refresh token, so "refresh" means asking for a new access token.
    """

    token_url: str
    client_id: str
    client_secret: str
    margin_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _token: str | None = None
    _expires_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        async with self._lock:
            if self._token is None or self.clock() >= self._expires_at - self.margin_s:
                await self._fetch(http)
        request.headers["Authorization"] = f"Bearer {self._token}"

    async def refresh(self, http: httpx.AsyncClient) -> bool:
        async with self._lock:
            self._token = None
            await self._fetch(http)
        return True

    async def _fetch(self, http: httpx.AsyncClient) -> None:
        basic = BasicAuth(self.client_id, self.client_secret).header()
        response = await http.post(
            self.token_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic},
        )
        if response.status_code in (400, 401, 403):
            raise AuthError(
                Provider.SPOTIFY,
                f"token request refused ({response.status_code}): check the client id and secret",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise ProviderError(
                Provider.SPOTIFY,
                f"token endpoint answered {response.status_code}",
                status=response.status_code,
            )
        body = orjson.loads(response.content)
        self._token = str(body["access_token"])
        self._expires_at = self.clock() + float(body.get("expires_in", 3600))

    def secrets(self) -> list[str]:
        return [self.client_secret, *([self._token] if self._token else [])]


@dataclass(frozen=True, slots=True)
class Page:
    """One fetched response: its parsed JSON, the raw bytes (for the archive) and headers."""

    url: str  # credentials scrubbed
    status: int
    headers: Mapping[str, str]
    content: bytes
    data: Any
    fetched_at: float


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    # A rate-limit wait longer than this stops the job (resume later) instead of sleeping.
    max_wait_s: float = 120.0
    # Throttling is bounded by time, not tries: a provider that throttles every call for this
    # long stops the job (resume later); shorter spells are waited out at a lower rate.
    throttle_give_up_s: float = 600.0
    throttle_cap_s: float = 30.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)] (AWS architecture blog)."""
        return float(rand() * min(self.cap_s, self.base_s * (2.0**attempt)))

    def throttle_backoff(self, streak: int, rand: Callable[[], float] = random.random) -> float:
        """After the ``streak``-th throttled answer in a row without Retry-After: equal jitter.

        Half the exponential ceiling is always waited (a throttled provider needs a real
        pause), the other half is random so that callers sharing the limit spread out.
        """
        ceiling = min(self.throttle_cap_s, self.base_s * (2.0 ** max(streak, 1)))
        return float(ceiling / 2 + rand() * ceiling / 2)


# Told of every call: provider, URL (scrubbed), status (None: no answer), outcome, the calls
# left in the provider's budget (None: unlimited), and the seconds the call took.
Observer = Callable[[Provider, str, int | None, Outcome, int | None, float], None]


class ApiClient:
    """Calls one provider: every request passes the budget, the error table and retries."""

    def __init__(
        self,
        provider: Provider,
        base_url: str,
        auth: Auth,
        budget: Budget,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observe: Observer | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self.auth = auth
        self.budget = budget
        self.retry = retry or RetryPolicy()
        self._observe = observe
        self._sleep = sleep
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "marquee-ingestor/0.1"},
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def scrub(self, text: str) -> str:
        for secret in self.auth.secrets():
            if secret:
                text = text.replace(secret, "***")
        return scrub(text)

    async def get(self, path: str, params: Params | None = None) -> Page:
        return await self.request("GET", path, params=params)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
    ) -> Page:
        """One logical call; returns the page, or raises a :class:`ProviderError` that says why.

        A 404 comes back as a page with ``status == 404`` and ``data is None`` (the error table
        says "ignore"): callers that refetch a record read it as "gone".
        """
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        refreshed = False
        attempt = 0
        while True:
            if self.budget.spent():
                raise QuotaSpent(
                    self.provider,
                    f"call budget spent ({self.budget.used} calls made)",
                    resume_at=self.budget.resume_at(),
                )
            await self.budget.acquire()
            request = self.http.build_request(
                method, path.lstrip("/"), params=clean, content=_body(json), headers=_ctype(json)
            )
            await self.auth.apply(request, self.http)
            url = self.scrub(str(request.url))
            started = time.time()
            try:
                response = await self.http.send(request)
                await response.aread()
            except httpx.HTTPError as exc:
                outcome = classify_exception(exc)
                self._report(url, None, outcome, started)
                attempt += 1
                await self._retry_or_raise(attempt, outcome, url, None)
                continue
            self.budget.observe_headers(response.headers)
            outcome = classify(self.provider, response)
            if outcome.action is not Action.RATE_LIMITED:
                self.budget.not_throttled()
            if outcome.action is Action.OK:
                try:
                    data = orjson.loads(response.content) if response.content else None
                except orjson.JSONDecodeError:
                    # A truncated or malformed body with 200: transient on every provider seen.
                    outcome = Outcome(Action.RETRY, "malformed JSON body")
                else:
                    self._report(url, response.status_code, outcome, started)
                    return Page(
                        url, response.status_code, response.headers, response.content, data, started
                    )
            self._report(url, response.status_code, outcome, started)
            match outcome.action:
                case Action.IGNORE:
                    return Page(url, response.status_code, response.headers, b"", None, started)
                case Action.QUOTA_SPENT:
                    raise QuotaSpent(
                        self.provider, f"{outcome.reason} at {url}", resume_at=self._reset_at()
                    )
                case Action.AUTH:
                    if not refreshed and await self.auth.refresh(self.http):
                        refreshed = True
                        continue
                    raise AuthError(
                        self.provider,
                        f"credentials refused ({response.status_code} {outcome.reason}) at {url}: "
                        f"check the {self.provider.value} credentials in the settings",
                        status=response.status_code,
                    )
                case Action.RATE_LIMITED:
                    self.budget.throttled()  # halves the rate this client asks at
                    wait = self._rate_limit_wait(response)
                    if wait > self.retry.max_wait_s:
                        raise QuotaSpent(
                            self.provider,
                            f"{outcome.reason}: asked to wait {wait:.0f}s at {url}",
                            resume_at=time.time() + wait,
                        )
                    throttled_for = self.budget.throttled_for()
                    if throttled_for >= self.retry.throttle_give_up_s:
                        raise QuotaSpent(
                            self.provider,
                            f"{outcome.reason}: every call throttled for {throttled_for:.0f}s "
                            f"at {url}",
                            resume_at=time.time() + max(wait, self.retry.throttle_cap_s),
                        )
                    log.info(
                        "%s throttled (%s, %d in a row): pausing %.2fs, rate now %.2f/s",
                        self.provider.value,
                        outcome.reason,
                        self.budget.throttle_streak,
                        wait,
                        self.budget.effective_rate,
                        extra={"provider": self.provider.value, "url": url},
                    )
                    # A pause of the budget: every call sharing it waits, not just this one.
                    self.budget.pause(wait)
                    continue
                case Action.RETRY:
                    attempt += 1
                    await self._retry_or_raise(attempt, outcome, url, response)
                    continue
                case _:
                    excerpt = self.scrub(response.text[:300])
                    raise ProviderError(
                        self.provider,
                        f"{outcome.reason} ({response.status_code}) at {url}: {excerpt}",
                        status=response.status_code,
                    )

    async def _retry_or_raise(
        self, attempt: int, outcome: Outcome, url: str, response: httpx.Response | None
    ) -> None:
        if attempt >= self.retry.max_attempts:
            raise ProviderError(
                self.provider,
                f"gave up after {attempt} attempts at {url}: {outcome.reason}",
                status=response.status_code if response is not None else None,
            )
        delay = self.retry.backoff(attempt)
        if response is not None:
            delay = max(delay, _retry_after(response) or 0.0)
        log.warning(
            "retrying %s call in %.2fs (attempt %d): %s",
            self.provider.value,
            delay,
            attempt,
            outcome.reason,
            extra={"provider": self.provider.value, "url": url},
        )
        await self._sleep(delay)

    def _rate_limit_wait(self, response: httpx.Response) -> float:
        """Retry-After when sent; the quota's reset when the quota is what ran out; else backoff.

        Ticketmaster sends ``Rate-Limit-Reset`` (the daily quota's reset) on every answer,
        spike-arrest 429s included: waiting for it would stop a job for a day over a burst.
        """
        after = _retry_after(response)
        if after is not None:
            return after
        reset = self._reset_at()
        if self.budget.spent() and reset is not None and response.headers.get("rate-limit-reset"):
            return max(reset - time.time(), 0.0)
        return self.retry.throttle_backoff(self.budget.throttle_streak)

    def _reset_at(self) -> float | None:
        return self.budget.resume_at()

    def _report(self, url: str, status: int | None, outcome: Outcome, started: float) -> None:
        if self._observe is not None:
            elapsed = max(time.time() - started, 0.0)
            self._observe(self.provider, url, status, outcome, self.budget.remaining, elapsed)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _body(json: Any) -> bytes | None:
    return None if json is None else orjson.dumps(json)


def _ctype(json: Any) -> dict[str, str]:
    return {} if json is None else {"Content-Type": "application/json"}
