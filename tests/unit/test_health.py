"""The health server answers /healthz, /readyz and /metrics from the checks it was given."""

from __future__ import annotations

import asyncio

import httpx

from shared.health import HealthServer, run_checks
from shared.metrics import ServiceMetrics


async def _ok() -> None:
    return None


async def _down() -> None:
    raise ConnectionError("refused")


async def _slow() -> None:
    await asyncio.sleep(10)


async def test_run_checks_reports_each() -> None:
    results = await run_checks({"a": _ok, "b": _down, "c": _slow}, timeout_s=0.2)
    assert results["a"] == "ok"
    assert results["b"] == "ConnectionError: refused"
    assert results["c"].startswith("TimeoutError")


async def test_health_server_endpoints() -> None:
    metrics = ServiceMetrics("unit")
    checks = {"kafka": _ok, "mongo": _ok}
    server = HealthServer(metrics, checks)
    port = await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ready"
            assert "marquee_unit_up 1.0" in (await client.get("/metrics")).text
            checks["mongo"] = _down
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["mongo"] == "ConnectionError: refused"
            assert "marquee_unit_up 0.0" in (await client.get("/metrics")).text
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/healthz")).status_code == 405
    finally:
        await server.stop()
