"""A minimal HTTP server for /healthz, /readyz and /metrics in services without a web framework."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson

from shared.metrics import CONTENT_TYPE_LATEST, ServiceMetrics

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]


async def run_checks(checks: Mapping[str, Check], timeout_s: float = 3.0) -> dict[str, str]:
    """Run each readiness check; the value is ``ok`` or the error that stopped it."""

    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout_s)
        except Exception as err:  # noqa: BLE001 - any failure means "not ready", reported as text
            return f"{type(err).__name__}: {err}"[:300]
        return "ok"

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    return dict(zip(checks, results, strict=True))


class HealthServer:
    """Serves ``GET /healthz`` (alive), ``GET /readyz`` (dependencies answer), ``GET /metrics``."""

    def __init__(self, metrics: ServiceMetrics, checks: Mapping[str, Check]) -> None:
        self.metrics = metrics
        self.checks = checks
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode().split(" ")
            status, ctype, body = await self._route(method, path.split("?", 1)[0])
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "application/json", b'{"error":"method not allowed"}'
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            results = await run_checks(self.checks)
            ready = all(v == "ok" for v in results.values())
            self.metrics.up.set(1 if ready else 0)
            body = orjson.dumps({"status": "ready" if ready else "not ready", "checks": results})
            return ("200 OK" if ready else "503 Service Unavailable"), "application/json", body
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
        return "404 Not Found", "application/json", b'{"error":"not found"}'
