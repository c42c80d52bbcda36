"""The FastAPI app: routers, error shapes, body limit, timing, docs, health, readiness, metrics."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.api import docs, errors
from services.api.bodylimit import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from services.api.deps import Deps, Services
from services.api.metrics import TimingMiddleware
from services.api.params import reject_repeats
from services.api.probes import READYZ_RESPONSES
from services.api.requestlog import RequestContextMiddleware
from services.api.routers import analytics as analytics_routes
from services.api.routers import (
    categories,
    events,
    external_events,
    imports,
    local_events,
    stream,
)
from services.api.routers import feeds as feeds_routes
from services.api.routers import prices as price_routes
from services.api.routers import recommendations as recommendation_routes
from services.api.routers import webhooks as webhook_routes
from services.web import pages
from shared.health import run_checks
from shared.metrics import CONTENT_TYPE_LATEST

DESCRIPTION = """Marquee's query API. Bearer JWTs with a `role` claim (user, organizer, admin).
Search, listings and the change feed are indexed MongoDB queries (a replica holds no copy of the
catalogue); imports travel through `import.requests`."""


async def single_valued(request: Request) -> None:
    reject_repeats(request.query_params)


def create_app(
    services: Services,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """Build the app around what the composition root wired (tests pass their own)."""
    app = FastAPI(
        title="Marquee API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN: docs.install serves them.
        docs_url=None,
        redoc_url=None,
        # Every parameter is single-valued: a repeated one is refused, whatever the route.
        dependencies=[Depends(single_valued)],
    )
    app.state.services = services
    errors.install(app)
    # Added first, so it runs last of these: its 413s are still timed, logged and carry the id.
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(TimingMiddleware)
    # Added last, so it runs first: every log line of the request carries its id.
    app.add_middleware(RequestContextMiddleware, access_log=services.settings.access_log)
    # The stream before events: /events/stream is not an event id.
    for module in (external_events, stream, events, imports, local_events, categories):
        app.include_router(module.router)
    # The dashboard's figures (/analytics/...).
    app.include_router(analytics_routes.router)
    # Webhook subscriptions to canonical changes (/webhooks).
    app.include_router(webhook_routes.router)
    # Artist recommendations (/recommendations).
    app.include_router(recommendation_routes.router)
    # Price and listing history (/events/{id}/prices, /external-events/.../prices).
    app.include_router(price_routes.router)
    # Marketing: iCalendar/Atom/RSS feeds, JSON-LD, embeddable widgets (/feeds, /widgets).
    app.include_router(feeds_routes.router)
    docs.install(app)
    # The web pages (services/web): same process, same services, under /web.
    pages.install(app)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses=READYZ_RESPONSES)
    async def readyz(deps: Deps) -> JSONResponse:
        results = await run_checks(deps.checks)
        ready = all(v == "ok" for v in results.values())
        deps.metrics.base.up.set(1 if ready else 0)
        body = {"status": "ready" if ready else "not ready", "checks": results}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics_endpoint(deps: Deps) -> Response:
        return Response(deps.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
