"""Runtime knobs of the sandbox: rate limits, quotas, injected faults and call statistics."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FAULT_KINDS = ("5xx_burst", "slow", "timeout", "malformed_json", "truncated")


@dataclass(slots=True)
class Limits:
    """Defaults follow the real providers; 0 switches a limit off."""

    tm_daily_quota: int = 5000
    tm_per_second: float = 5
    sg_per_second: float = 10
    eb_per_hour: int = 2000
    meetup_points: int = 500
    meetup_window_s: float = 60
    spotify_window_requests: int = 180
    spotify_window_s: float = 30
    spotify_daily_quota: int = 0
    spotify_token_ttl_s: float = 3600

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown limit(s): {', '.join(unknown)}")
        for name, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative number")
            setattr(self, name, int(value) if known[name] == "int" else float(value))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Window:
    """A sliding window of (time, cost) entries: the shape of every limit here."""

    def __init__(self) -> None:
        self.entries: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def used(self, now: float, span: float) -> float:
        while self.entries and self.entries[0][0] <= now - span:
            self.total -= self.entries.popleft()[1]
        return self.total

    def add(self, now: float, cost: float = 1.0) -> None:
        self.entries.append((now, cost))
        self.total += cost

    def oldest(self) -> float | None:
        return self.entries[0][0] if self.entries else None


@dataclass(slots=True)
class Fault:
    provider: str
    kind: str
    remaining: int
    delay_ms: int | None
    served: int = 0


@dataclass
class Stats:
    calls: Counter[str] = field(default_factory=Counter)
    endpoints: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for provider, n in sorted(self.calls.items()):
            out[provider] = {
                "calls": n,
                "endpoints": {
                    e: c for (p, e), c in sorted(self.endpoints.items()) if p == provider
                },
                "status": {
                    str(s): c for (p, s), c in sorted(self.statuses.items()) if p == provider
                },
                "throttled": self.throttled[provider],
                "faults": {k: c for (p, k), c in sorted(self.faults.items()) if p == provider},
            }
        return {
            "providers": out,
            "throttled_total": sum(self.throttled.values()),
            "faults_injected_total": sum(self.faults.values()),
        }


class State:
    """Everything that /_sandbox/reset clears; clocks are injectable for tests."""

    def __init__(
        self,
        limits: Limits,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.initial_limits = Limits(**limits.as_dict())
        self.clock = clock
        self.wall = wall
        self.reset()

    def reset(self) -> None:
        self.limits = Limits(**self.initial_limits.as_dict())
        self.stats = Stats()
        self.faults: list[Fault] = []
        self.tm_spike = Window()
        self.tm_day_start: float | None = None  # wall seconds when the daily quota window opened
        self.tm_used = 0
        self.tm_over = 0
        self.sg_spike = Window()
        self.eb_hour: dict[str, Window] = {}
        self.mu_points = Window()
        self.sp_window = Window()
        self.sp_day = Window()
        self.sp_tokens: dict[str, float] = {}  # access token -> monotonic expiry

    def take_fault(self, provider: str) -> Fault | None:
        for fault in self.faults:
            if fault.remaining > 0 and fault.provider in (provider, "*"):
                fault.remaining -= 1
                fault.served += 1
                self.stats.faults[(provider, fault.kind)] += 1
                return fault
        self.faults = [f for f in self.faults if f.remaining > 0]
        return None

    def add_fault(self, body: Any, providers: tuple[str, ...]) -> Fault:
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        provider = body.get("provider", "*")
        kind = body.get("kind")
        count = body.get("count", 1)
        delay = body.get("delay_ms")
        if provider != "*" and provider not in providers:
            raise ValueError(f"provider must be '*' or one of {', '.join(providers)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        if delay is not None and (not isinstance(delay, int) or delay < 0):
            raise ValueError("delay_ms must be a non-negative integer")
        fault = Fault(provider, kind, count, delay)
        self.faults.append(fault)
        return fault
