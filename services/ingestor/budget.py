"""Per-provider call budgets: an adaptive request rate, a quota per period, what headers say."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class Budget:
    """Spaces calls to ``rate_per_s`` and counts them against ``quota`` per ``period_s``.

    Providers that report their own remaining quota (Ticketmaster's ``Rate-Limit-*``
    headers) correct the local count through :meth:`observe_headers`, so two ingestor
    processes sharing a key do not both believe they have the whole quota.

    The rate adapts to throttling (AIMD, as TCP does): a throttled answer halves the
    effective rate (from the configured one, or from the rate actually observed when none is
    configured), and each answer that is not throttled adds back ``recover_per_s / rate`` (at
    most a quarter of the rate), so the rate climbs by about ``recover_per_s`` calls/s every
    second until it is back at the configured rate (with none configured, it keeps climbing
    until the next throttle). A provider that lowers its limit is followed, not fought.
    """

    rate_per_s: float
    quota: int | None = None
    period_s: float = 86_400.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    recover_per_s: float = 0.25
    min_rate_per_s: float = 0.05  # never slower than a call every 20 s
    used: int = 0
    remaining_reported: int | None = None
    reset_at: float | None = None  # wall-clock epoch seconds when the quota comes back
    # The rate throttling brought us down to (None: the configured rate applies).
    adaptive_rate: float | None = None
    throttle_streak: int = 0  # throttled answers since the last one that was not
    throttled_total: int = 0
    _throttled_since: float | None = None
    _last_decrease: float = float("-inf")
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    _next_slot: float = 0.0
    _period_start: float = field(default=-1.0)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def effective_rate(self) -> float:
        """Calls per second allowed now; 0 means unlimited."""
        return self.adaptive_rate if self.adaptive_rate is not None else self.rate_per_s

    @property
    def remaining(self) -> int | None:
        """Calls left in this period, as far as we know (``None``: unlimited)."""
        self._roll_period()
        local = None if self.quota is None else max(self.quota - self.used, 0)
        if self.remaining_reported is None:
            return local
        # Both count: the provider's figure (shared with other users of the key) and ours.
        return self.remaining_reported if local is None else min(local, self.remaining_reported)

    def spent(self) -> bool:
        left = self.remaining
        return left is not None and left <= 0

    def resume_at(self) -> float | None:
        """Wall-clock time when calls may start again after the quota is spent."""
        if self.reset_at is not None:
            return self.reset_at
        if self._period_start < 0:
            return None
        return self.wall() + max(self.period_s - (self.clock() - self._period_start), 0.0)

    async def acquire(self) -> None:
        """Wait for the next free slot under the rate; the caller checks :meth:`spent` first."""
        async with self._lock:
            self._roll_period()
            now = self.clock()
            # A pause holds calls even when no rate is configured (rate 0 = unlimited).
            # A pause taken while we slept (another call was throttled) is waited out too.
            while (wait := self._next_slot - now) > 0:
                await self.sleep(wait)
                now = self.clock()
            rate = self.effective_rate
            if rate > 0:
                self._next_slot = max(now, self._next_slot) + 1.0 / rate
            self._recent.append(now)
            self.used += 1
            if self.remaining_reported is not None:
                self.remaining_reported -= 1

    def pause(self, seconds: float) -> None:
        """Hold all calls for ``seconds`` (a 429 with Retry-After, a 406 from SeatGeek)."""
        self._next_slot = max(self._next_slot, self.clock() + seconds)

    def observed_rate(self, span_s: float = 2.0) -> float:
        """Calls per second started over the last ``span_s`` seconds."""
        now = self.clock()
        return sum(1 for t in self._recent if t > now - span_s) / span_s

    def throttled(self) -> None:
        """The provider throttled a call: halve the effective rate, once per burst.

        Calls already in flight when the provider's limit was hit are throttled together;
        halving for each of them would collapse the rate, so one decrease per second (or per
        slot, when slower) counts.
        """
        now = self.clock()
        self.throttle_streak += 1
        self.throttled_total += 1
        if self._throttled_since is None:
            self._throttled_since = now
        current = self.effective_rate
        if now - self._last_decrease < max(1.0, 1.0 / current if current > 0 else 0.0):
            return
        if current <= 0:
            # No configured rate: start from what we were actually doing.
            current = max(self.observed_rate(), 2 * self.min_rate_per_s)
        self.adaptive_rate = max(current / 2, self.min_rate_per_s)
        self._last_decrease = now

    def not_throttled(self) -> None:
        """An answer that was not throttling: additive increase back to the configured rate."""
        self.throttle_streak = 0
        self._throttled_since = None
        if self.adaptive_rate is None:
            return
        # recover_per_s / rate per answer is about recover_per_s per second at that rate; at
        # most a quarter more per answer, so one answer after a long spell is no leap.
        rate = self.adaptive_rate
        self.adaptive_rate = rate + min(self.recover_per_s / rate, rate / 4)
        if 0 < self.rate_per_s <= self.adaptive_rate:
            self.adaptive_rate = None  # fully recovered: the configured rate applies again

    def throttled_for(self) -> float:
        """Seconds since the provider started throttling every call (0: it is not)."""
        if self._throttled_since is None:
            return 0.0
        return self.clock() - self._throttled_since

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Ticketmaster: ``Rate-Limit-Available`` calls left, ``Rate-Limit-Reset`` in epoch ms."""
        available = headers.get("rate-limit-available")
        if available is not None and available.strip().lstrip("-").isdigit():
            self.remaining_reported = int(available)
        reset = headers.get("rate-limit-reset")
        if reset is not None and reset.strip().isdigit():
            self.reset_at = int(reset) / 1000.0

    def _roll_period(self) -> None:
        now = self.clock()
        if self._period_start < 0:
            self._period_start = now
        elif now - self._period_start >= self.period_s:
            self._period_start = now
            self.used = 0
            self.remaining_reported = None
        if self.reset_at is not None and self.wall() >= self.reset_at:
            # The provider said when its quota resets, and that moment has passed.
            self.reset_at = None
            self.remaining_reported = None
