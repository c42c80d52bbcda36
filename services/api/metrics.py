"""The API's Prometheus metrics and the ASGI middleware that times every request."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import ServiceMetrics


class ApiMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.requests = base.counter("requests_total", "HTTP requests", ("route", "status"))
        self.latency = base.histogram(
            "request_seconds",
            "HTTP request latency",
            ("route",),
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.auth_failures = base.counter("auth_failures_total", "refused tokens", ("status",))
        self.rate_limited = base.counter("rate_limited_total", "requests refused with 429")
        self.cache = base.counter("cache_total", "response cache lookups", ("result",))
        self.imports = base.counter("import_requests_total", "import requests", ("outcome",))
        # Server-Sent Events (GET /events/stream, /web/changes/stream).
        self.stream_clients = base.gauge("stream_clients", "SSE connections open")
        self.stream_delivered = base.counter("stream_changes_delivered_total", "changes sent")
        self.stream_dropped = base.counter(
            "stream_refused_total",
            "streams ended or refused (slow: queue full; full: at cap)",
            ("reason",),
        )

    def render(self) -> bytes:
        return self.base.render()


class TimingMiddleware:
    """Pure ASGI (no per-request task): counts and times requests by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            # The services (and their registry) are swapped in by the lifespan: look them up.
            metrics: ApiMetrics = scope["app"].state.services.metrics
            metrics.requests.labels(name, str(status)).inc()
            metrics.latency.labels(name).observe(time.perf_counter() - started)
