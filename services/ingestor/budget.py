"""Per-provider call budgets: a request rate, a quota per period, and what the headers say."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class Budget:
    """Spaces calls to ``rate_per_s`` and counts them against ``quota`` per ``period_s``.

    Providers that report their own remaining quota (Ticketmaster's ``Rate-Limit-*``
    headers) correct the local count through :meth:`observe_headers`, so two ingestor
    processes sharing a key do not both believe they have the whole quota.
    """

    rate_per_s: float
    quota: int | None = None
    period_s: float = 86_400.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    used: int = 0
    remaining_reported: int | None = None
    reset_at: float | None = None  # wall-clock epoch seconds when the quota comes back
    _next_slot: float = 0.0
    _period_start: float = field(default=-1.0)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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
            if self.rate_per_s > 0:
                wait = self._next_slot - now
                if wait > 0:
                    await asyncio.sleep(wait)
                    now = self.clock()
                self._next_slot = max(now, self._next_slot) + 1.0 / self.rate_per_s
            self.used += 1
            if self.remaining_reported is not None:
                self.remaining_reported -= 1

    def pause(self, seconds: float) -> None:
        """Hold all calls for ``seconds`` (a 429 with Retry-After, a 406 from SeatGeek)."""
        self._next_slot = max(self._next_slot, self.clock() + seconds)

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
