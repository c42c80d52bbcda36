"""The FastAPI application: health, readiness and metrics for now (queries come with issue 6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from shared.health import Check, run_checks
from shared.metrics import CONTENT_TYPE_LATEST, ServiceMetrics


def get_metrics(request: Request) -> ServiceMetrics:
    """The metrics registry the composition root gave the app."""
    registry: ServiceMetrics = request.app.state.metrics
    return registry


Metrics = Annotated[ServiceMetrics, Depends(get_metrics)]


def create_app(metrics: ServiceMetrics, checks: Mapping[str, Check]) -> FastAPI:
    """Build the app around what the composition root wired (tests pass their own)."""
    app = FastAPI(title="Marquee API", version="0.1.0")
    app.state.metrics = metrics
    app.state.checks = checks

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request, registry: Metrics) -> JSONResponse:
        results = await run_checks(request.app.state.checks)
        ready = all(v == "ok" for v in results.values())
        registry.up.set(1 if ready else 0)
        body = {"status": "ready" if ready else "not ready", "checks": results}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics_endpoint(registry: Metrics) -> Response:
        return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)

    return app
