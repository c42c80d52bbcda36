"""The FastAPI application: routers, error shapes, timing, health, readiness and metrics."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.api import errors
from services.api.deps import Deps, Services
from services.api.metrics import TimingMiddleware
from services.api.requestlog import RequestContextMiddleware
from services.api.routers import categories, events, external_events, imports, local_events
from shared.health import run_checks
from shared.metrics import CONTENT_TYPE_LATEST

DESCRIPTION = """Marquee's query API. Bearer JWTs with a `role` claim (user, organizer, admin).
Search, listings and the change feed are served from an in-memory read model of the catalogue
(per replica, kept fresh from `events.canonical`); imports travel through `import.requests`."""


def read_model_status(services: Services) -> dict[str, Any]:
    model = services.model
    load = model.load
    return {
        "state": load.state,
        "per_source_records": model.externals.live,
        "canonical_events": model.canonicals.live,
        "loaded": {"per_source": load.externals_loaded, "canonical": load.canonicals_loaded},
        "error": load.error,
    }


def create_app(
    services: Services,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """Build the app around what the composition root wired (tests pass their own)."""
    app = FastAPI(
        title="Marquee API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    errors.install(app)
    app.add_middleware(TimingMiddleware)
    # Added last, so it runs first: every log line of the request carries its id.
    app.add_middleware(RequestContextMiddleware, access_log=services.settings.access_log)
    for module in (external_events, events, imports, local_events, categories):
        app.include_router(module.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(deps: Deps) -> JSONResponse:
        results = await run_checks(deps.checks)
        ready = all(v == "ok" for v in results.values()) and deps.model.ready
        deps.metrics.base.up.set(1 if ready else 0)
        body = {
            "status": "ready" if ready else "not ready",
            "checks": results,
            "read_model": read_model_status(deps),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics_endpoint(deps: Deps) -> Response:
        model = deps.model
        deps.metrics.records.labels("per_source").set(model.externals.live)
        deps.metrics.records.labels("canonical").set(model.canonicals.live)
        return Response(deps.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
