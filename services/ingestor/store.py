"""Store calls that wait out a MongoDB outage: jittered backoff, bounded by time, then give up."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pymongo.errors import ConnectionFailure, PyMongoError

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreUnavailable(ConnectionFailure):
    """The store stayed unreachable past the retry budget: the job is left for redelivery.

    A :class:`ConnectionFailure`, so callers that already wait out store hiccups (the
    scheduler) treat it like any other one.
    """


def is_transient(err: BaseException) -> bool:
    """A store error worth waiting out: the server restarting, failing over, or unreachable."""
    if isinstance(err, ConnectionFailure):
        # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, NotPrimaryError, ...
        return True
    return isinstance(err, PyMongoError) and err.has_error_label("RetryableWriteError")


@dataclass
class StoreRetry:
    """Retries one idempotent store call with full-jitter exponential backoff.

    Every call the ingestor makes to the store is idempotent (``_id`` lookups, upserts by
    ``_id``), so repeating one after a dropped connection cannot write twice.
    """

    budget_s: float = 60.0
    base_s: float = 0.5
    cap_s: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    retries: int = field(default=0, init=False)  # how many retries this instance made

    def backoff(self, attempt: int) -> float:
        """Full jitter over an exponential ceiling; never less than a tenth of the base."""
        ceiling = min(self.cap_s, self.base_s * (2.0 ** (attempt - 1)))
        return max(self.rand() * ceiling, self.base_s / 10)

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        started = self.clock()
        attempt = 0
        while True:
            try:
                return await operation()
            except PyMongoError as err:
                # An inner call already spent its budget: waiting again would double it.
                if isinstance(err, StoreUnavailable) or not is_transient(err):
                    raise
                attempt += 1
                waited = self.clock() - started
                delay = self.backoff(attempt)
                if waited + delay > self.budget_s:
                    log.error(
                        "store unavailable for %.0fs (%d attempts) during %s: giving up: %s",
                        waited,
                        attempt,
                        what,
                        err,
                    )
                    raise StoreUnavailable(
                        f"store unavailable for {waited:.0f}s ({attempt} attempts) "
                        f"during {what}: {type(err).__name__}: {err}"
                    ) from err
                log.warning(
                    "store call %s failed (attempt %d, %.1fs so far), retrying in %.2fs: %s: %s",
                    what,
                    attempt,
                    waited,
                    delay,
                    type(err).__name__,
                    err,
                )
                self.retries += 1
                await self.sleep(delay)
