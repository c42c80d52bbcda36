"""Prometheus helpers: per-service registries and the exposition body."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]


class ServiceMetrics:
    """A registry whose metric names are prefixed ``marquee_{service}_``."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        self.up = self.gauge("up", "1 while the service runs and its dependencies answer")

    def _name(self, name: str) -> str:
        return f"marquee_{self.service}_{name}"

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(self._name(name), doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(self._name(name), doc, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    ) -> Histogram:
        return Histogram(self._name(name), doc, labels, buckets=buckets, registry=self.registry)

    def render(self) -> bytes:
        """The text exposition format, for a ``/metrics`` endpoint."""
        return generate_latest(self.registry)
