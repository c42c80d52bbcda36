"""Per-request correlation id (``X-Request-ID`` in, echoed out) and one access log line each."""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.contracts import new_id
from shared.logs import correlation_id

log = logging.getLogger("marquee.access")

HEADER = b"x-request-id"
# A caller's id is kept only when it is safe to echo and to log: short, no spaces or quotes.
_USABLE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# Probes and scrapes arrive every few seconds; a line each would bury the real traffic.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def request_id_from(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when usable, else a new id."""
    for name, value in scope.get("headers") or ():
        if name == HEADER and _USABLE.match(value):
            return str(value.decode())
    return new_id()


class RequestContextMiddleware:
    """Pure ASGI: sets the correlation id for everything the request does (log lines, the
    ``correlation_id`` of import requests), returns it as ``X-Request-ID``, logs the outcome."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope)
        token = correlation_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = scope.get("path", "")
            if self.access_log and path not in QUIET_PATHS:
                log.log(
                    logging.WARNING if status >= 500 else logging.INFO,
                    "%s %s %d",
                    scope.get("method", ""),
                    path,
                    status,
                    extra={
                        "method": scope.get("method"),
                        "path": path,
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            correlation_id.reset(token)
