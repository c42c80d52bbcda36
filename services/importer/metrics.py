"""Importer and notifier metrics: imports/s, success rate, rejection reasons, deliveries."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from services.importer.hooks import MatchOutcome
from services.importer.notifier import NotifyOutcome
from services.importer.pipeline import Outcome
from services.importer.updates import UpdateOutcome
from shared.metrics import ServiceMetrics

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Window:
    """Imported and decided counts over the last ``seconds`` (for live gauges)."""

    def __init__(self, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.started = clock()
        self.events: deque[tuple[float, int, int]] = deque()

    def add(self, imported: int, decided: int) -> None:
        now = self.clock()
        self.events.append((now, imported, decided))
        while self.events and self.events[0][0] < now - self.seconds:
            self.events.popleft()

    def rates(self) -> tuple[float, float | None]:
        """(imports per second, share of decided requests that were imported)."""
        now = self.clock()
        recent = [(i, d) for t, i, d in self.events if t >= now - self.seconds]
        imported = sum(i for i, _d in recent)
        decided = sum(d for _i, d in recent)
        span = min(self.seconds, max(now - self.started, 1e-9))
        return imported / span, (imported / decided if decided else None)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


class ImporterMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.requests = base.counter("requests_total", "import requests decided", ("status",))
        self.rejections = base.counter(
            "rejections_total", "rejected import requests by reason", ("reason",)
        )
        self.replayed = base.counter("replayed_total", "redelivered requests answered again")
        self.latency = base.histogram(
            "request_latency_seconds", "requested_at → decision", buckets=LATENCY_BUCKETS
        )
        self.batch_seconds = base.histogram("batch_seconds", "time to handle one batch")
        self.imports_per_s = base.gauge("imports_per_second", "imports/s over the last minute")
        self.success_ratio = base.gauge(
            "success_ratio", "imported / decided over the last minute (NaN: none decided)"
        )
        self.updates = base.counter(
            "local_event_updates_total", "canonical changes applied to local events", ("kind",)
        )
        self.notifications = base.counter(
            "notifications_emitted_total", "notifications sent to the topic", ("type",)
        )
        self.relayed = base.counter("relayed_total", "stored results emitted by the outbox relay")
        self.hook_changes = base.counter(
            "hook_changes_total", "canonical changes matched against webhook subscriptions"
        )
        self.hook_matches = base.counter(
            "hook_matches_total", "canonical changes that matched a webhook subscription"
        )
        self.window = Window()
        # Computed when scraped, so they fall back to zero when no requests come.
        self.imports_per_s.set_function(lambda: self.window.rates()[0])
        self.success_ratio.set_function(lambda: _or_nan(self.window.rates()[1]))

    def observe(self, outcome: Outcome) -> None:
        rejected = sum(outcome.rejected.values())
        self.requests.labels("imported").inc(outcome.imported)
        self.requests.labels("rejected").inc(rejected)
        for reason, count in outcome.rejected.items():
            self.rejections.labels(reason).inc(count)
        self.replayed.inc(outcome.replayed)
        for seconds in outcome.latencies:
            self.latency.observe(max(seconds, 0.0))
        for note in outcome.notifications:
            self.notifications.labels(note.type).inc()
        self.window.add(outcome.imported, outcome.imported + rejected)

    def observe_updates(self, outcome: UpdateOutcome) -> None:
        for kind, count in outcome.applied.items():
            self.updates.labels(kind).inc(count)
        self.updates.labels("stale").inc(outcome.stale)
        self.updates.labels("unchanged").inc(outcome.unchanged)
        for note in outcome.notifications:
            self.notifications.labels(note.type).inc()

    def observe_hooks(self, outcome: MatchOutcome) -> None:
        self.hook_changes.inc(outcome.changes)
        self.hook_matches.inc(len(outcome.notifications))
        for note in outcome.notifications:
            self.notifications.labels(note.type).inc()


class NotifierMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.notifications = base.counter(
            "notifications_total", "notifications handled", ("result",)
        )
        self.attempts = base.counter("delivery_attempts_total", "webhook or log attempts")
        self.seconds = base.histogram(
            "delivery_seconds", "first attempt → delivered", buckets=LATENCY_BUCKETS
        )

    def observe(self, outcome: NotifyOutcome) -> None:
        self.notifications.labels("delivered").inc(outcome.delivered)
        self.notifications.labels("duplicate").inc(outcome.duplicates)
        self.notifications.labels("dead_lettered").inc(outcome.dead_lettered)
        self.notifications.labels("dropped").inc(outcome.dropped)
        self.attempts.inc(outcome.attempts)
        for seconds in outcome.seconds:
            self.seconds.observe(seconds)
