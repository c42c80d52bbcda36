"""Per-client rate limiting (token buckets, per replica) and the TTL response cache."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from cachetools import TTLCache


class RateLimiter:
    """``per_minute`` requests a minute with bursts of ``burst``; ``per_minute=0`` is off."""

    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client: str) -> float | None:
        """None when allowed; else the seconds until a request would be."""
        if not self.enabled:
            return None
        now = self.clock()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:
            self._prune(now)
        return None

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}


class ResponseCache:
    """Rendered responses for ``ttl_s`` (``CACHE_DURATION_MINUTES``); ``ttl_s=0`` is off."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.enabled = ttl_s > 0 and max_entries > 0
        self._cache: TTLCache[Hashable, bytes] = TTLCache(max(max_entries, 1), max(ttl_s, 0.001))
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> bytes | None:
        if not self.enabled:
            return None
        found = self._cache.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: Hashable, body: bytes) -> None:
        if self.enabled:
            self._cache[key] = body

    def clear(self) -> None:
        self._cache.clear()
