"""One error table: every HTTP outcome maps to retry, rate-limited, quota-spent, fail or ignore."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
import orjson

from shared.contracts import Provider


class Action(StrEnum):
    OK = "ok"
    RETRY = "retry"  # transient: back off and try again
    RATE_LIMITED = "rate_limited"  # slow down: wait (Retry-After / reset) then try again
    QUOTA_SPENT = "quota_spent"  # the budget is gone: stop the job cleanly, resume later
    AUTH = "auth"  # credentials refused: refresh a token once, else fail clearly
    FAIL = "fail"  # a bug or a bad request: stop with a clear error
    IGNORE = "ignore"  # nothing to fetch (e.g. 404 on a detail call): carry on


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    reason: str


class ProviderError(Exception):
    """A call that failed for good; the message says which provider, which call and why."""

    def __init__(self, provider: Provider, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{provider.value}: {message}")
        self.provider = provider
        self.status = status


class QuotaSpent(ProviderError):
    """The provider's budget is spent; the job stops cleanly and resumes after ``resume_at``."""

    def __init__(self, provider: Provider, message: str, *, resume_at: float | None) -> None:
        super().__init__(provider, message)
        self.resume_at = resume_at


class AuthError(ProviderError):
    """Credentials were refused (the message names the setting to check)."""


# Status codes that are the same for every provider.
COMMON: dict[int, Outcome] = {
    400: Outcome(Action.FAIL, "bad request"),
    401: Outcome(Action.AUTH, "unauthorized"),
    403: Outcome(Action.AUTH, "forbidden"),
    404: Outcome(Action.IGNORE, "not found"),
    408: Outcome(Action.RETRY, "request timeout"),
    409: Outcome(Action.RETRY, "conflict"),
    425: Outcome(Action.RETRY, "too early"),
    429: Outcome(Action.RATE_LIMITED, "too many requests"),
    500: Outcome(Action.RETRY, "server error"),
    502: Outcome(Action.RETRY, "bad gateway"),
    503: Outcome(Action.RETRY, "unavailable"),
    504: Outcome(Action.RETRY, "gateway timeout"),
}


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _ticketmaster(response: httpx.Response, body: Any) -> Outcome | None:
    if response.status_code == 429:
        code = _dig(body, "fault", "detail", "errorcode") or ""
        # QuotaViolation = the daily quota; SpikeArrest = too fast. Neither sends Retry-After:
        # Rate-Limit-Reset (epoch ms) says when the quota comes back.
        if "QuotaViolation" in code:
            return Outcome(Action.QUOTA_SPENT, f"daily quota spent ({code})")
        return Outcome(Action.RATE_LIMITED, code or "rate limited")
    if response.status_code == 400 and "DIS1035" in response.text:
        # Deep-paging cap (page * size >= 1000): a bug in our slicing, never retry.
        return Outcome(Action.FAIL, "deep-paging cap exceeded (page * size must be < 1000)")
    return None


def _seatgeek(response: httpx.Response, body: Any) -> Outcome | None:
    # SeatGeek publishes no rate limit; abusive traffic gets 406 Not Acceptable.
    if response.status_code == 406:
        return Outcome(Action.RATE_LIMITED, "throttled (406)")
    return None


def _eventbrite(response: httpx.Response, body: Any) -> Outcome | None:
    error = _dig(body, "error")
    if error == "HIT_RATE_LIMIT":
        # 2,000 calls/hour per token: the hour has to pass, do not hammer it.
        return Outcome(Action.QUOTA_SPENT, "hourly rate limit hit (HIT_RATE_LIMIT)")
    return None


def _meetup(response: httpx.Response, body: Any) -> Outcome | None:
    # GraphQL errors arrive with HTTP 200: every response must be checked.
    if response.status_code != 200 or not isinstance(body, dict) or not body.get("errors"):
        return None
    errors = body["errors"]
    codes = {str(_dig(e, "extensions", "code") or "") for e in errors if isinstance(e, dict)}
    message = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
    if codes & {"RATE_LIMITED", "TOO_MANY_REQUESTS"}:
        return Outcome(Action.RATE_LIMITED, f"points budget exhausted: {message}")
    if codes & {"UNAUTHENTICATED", "UNAUTHORIZED"}:
        return Outcome(Action.AUTH, message)
    return Outcome(Action.FAIL, f"GraphQL error: {message}")


def _spotify(response: httpx.Response, body: Any) -> Outcome | None:
    if response.status_code == 429 and "QUOTA_EXCEEDED" in response.text:
        return Outcome(Action.QUOTA_SPENT, "quota exceeded (QUOTA_EXCEEDED)")
    return None


OVERRIDES: dict[Provider, Callable[[httpx.Response, Any], Outcome | None]] = {
    Provider.TICKETMASTER: _ticketmaster,
    Provider.SEATGEEK: _seatgeek,
    Provider.EVENTBRITE: _eventbrite,
    Provider.MEETUP: _meetup,
    Provider.SPOTIFY: _spotify,
}


def classify(provider: Provider, response: httpx.Response) -> Outcome:
    """What to do with a response: the provider's quirks first, then the common table."""
    body = _json(response) if response.headers.get("content-type", "").find("json") >= 0 else None
    special = OVERRIDES[provider](response, body)
    if special is not None:
        return special
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(Action.OK, "ok")
    if status in COMMON:
        return COMMON[status]
    if status >= 500:
        return Outcome(Action.RETRY, f"server error {status}")
    return Outcome(Action.FAIL, f"unexpected status {status}")


def classify_exception(exc: Exception) -> Outcome:
    """Transport failures: timeouts and dropped connections are worth a retry."""
    if isinstance(exc, httpx.TimeoutException):
        return Outcome(Action.RETRY, f"timeout ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return Outcome(Action.RETRY, f"transport error ({type(exc).__name__})")
    return Outcome(Action.FAIL, f"{type(exc).__name__}: {exc}")


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
