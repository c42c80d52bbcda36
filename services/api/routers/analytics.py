"""``/analytics``: the dashboard's figures as JSON (the web dashboard renders the same ones).

Catalogue figures and venue points are for any signed-in user (they count what ``/events``
lists); import activity and provider performance are operations data, for admins, as
``/external-events/analytics`` is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pymongo.errors import PyMongoError

from services.api import figures
from services.api.deps import Admin, AnyUser, Deps, Services
from services.api.errors import unavailable
from services.api.render import dumps, json_response
from services.api.schemas import ERRORS, Error

router = APIRouter(prefix="/analytics", tags=["analytics"])
RESPONSES: dict[int | str, dict[str, Any]] = {**ERRORS, 503: {"model": Error}}
# A route with a parameter also answers 400 when it is repeated (app.single_valued).
WITH_PARAMETERS: dict[int | str, dict[str, Any]] = {
    **RESPONSES,
    400: {"model": Error, "description": "a parameter given more than once"},
}


async def cached_figure(
    services: Services, key: Hashable, produce: Callable[[], Awaitable[dict[str, Any]]]
) -> bytes:
    """The figure's JSON, from the per-replica cache (``CACHE_DURATION_MINUTES``) or computed."""
    found = services.cache.get(key)
    if found is not None:
        services.metrics.cache.labels("hit").inc()
        return found
    services.metrics.cache.labels("miss").inc()
    try:
        body = dumps(await produce())
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    services.cache.put(key, body)
    return body


async def catalogue_body(services: Services) -> bytes:
    db = services.store.db
    return await cached_figure(
        services, ("analytics", "catalogue"), lambda: figures.catalogue(db, datetime.now(UTC))
    )


async def venues_body(services: Services) -> bytes:
    db = services.store.db
    return await cached_figure(
        services, ("analytics", "venues"), lambda: figures.venues(db, datetime.now(UTC))
    )


async def imports_body(services: Services, bucket: figures.Bucket) -> bytes:
    db = services.store.db
    return await cached_figure(
        services,
        ("analytics", "imports", bucket),
        lambda: figures.imports(db, datetime.now(UTC), bucket),
    )


async def providers_body(services: Services) -> bytes:
    db = services.store.db
    return await cached_figure(services, ("analytics", "providers"), lambda: figures.providers(db))


@router.get(
    "/catalogue",
    responses=RESPONSES,
    summary="Upcoming events by provider, category, country and city",
)
async def get_catalogue(services: Deps, _user: AnyUser) -> Response:
    return json_response(await catalogue_body(services))


@router.get(
    "/venues",
    responses=RESPONSES,
    summary="Where upcoming events take place: points on a 0.1° grid with counts (map)",
)
async def get_venues(services: Deps, _user: AnyUser) -> Response:
    return json_response(await venues_body(services))


@router.get(
    "/imports",
    responses=WITH_PARAMETERS,
    summary="Imports per hour (last 48) or per day (last 30) (admin)",
)
async def get_imports(
    services: Deps,
    _admin: Admin,
    bucket: Annotated[
        figures.Bucket, Query(description="hour: the last 48 hours; day: the last 30 days")
    ] = "hour",
) -> Response:
    return json_response(await imports_body(services, bucket))


@router.get(
    "/providers",
    responses=RESPONSES,
    summary="Provider calls, success rate and latency p50/p95 (the ingestor's figures) (admin)",
)
async def get_providers(services: Deps, _admin: Admin) -> Response:
    return json_response(await providers_body(services))
