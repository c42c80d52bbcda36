"""``/external-events``: search, detail (with an on-demand fetch), import, analytics, CSV export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, Response
from pymongo.errors import PyMongoError

from services.api.analytics import analytics
from services.api.deps import Admin, AnyUser, Deps, LinkBase, Organizer, ready_model
from services.api.errors import ApiError, not_found, unavailable
from services.api.params import (
    DEDUPE_PARAMETER,
    FILTER_PARAMETERS,
    Q_PARAMETER,
    read_filters,
    validated,
)
from services.api.readmodel import external_row
from services.api.render import dumps, json_response, search_body
from services.api.schemas import (
    ERRORS,
    READ_ERRORS,
    Error,
    ExportResult,
    ExternalEventOut,
    ImportAccepted,
    ImportCreated,
    SearchResponse,
)

router = APIRouter(prefix="/external-events", tags=["external events"])

Source = Annotated[str, Path(max_length=40, description="ticketmaster, seatgeek, …")]
ExternalId = Annotated[str, Path(max_length=200)]


@router.get(
    "/search",
    response_model=SearchResponse,
    responses=READ_ERRORS,
    summary="Search per-source records (or canonical events with dedupe=true)",
    openapi_extra={"parameters": [Q_PARAMETER, DEDUPE_PARAMETER, *FILTER_PARAMETERS]},
)
async def search(request: Request, services: Deps, _user: AnyUser, links: LinkBase) -> Response:
    params = request.query_params
    filters, read = read_filters(params)
    q = read.text("q")
    dedupe = bool(read.flag("dedupe"))
    validated(read)
    if q is None or not q.strip():
        raise ApiError(400, "Search query is required")
    query = filters.query(q, dedupe=dedupe)
    model = ready_model(services)
    cache_key = ("search", request.url.query, model.generation)
    cached = services.cache.get(cache_key)
    if cached is not None:
        services.metrics.cache.labels("hit").inc()
        return json_response(cached)
    services.metrics.cache.labels("miss").inc()
    page = model.search(query)
    body = search_body(model, page, links, sort=query.sort, dedupe=dedupe)
    services.cache.put(cache_key, body)
    return json_response(body)


@router.get(
    "/analytics",
    responses={**ERRORS, 503: {"model": Error}},
    summary="Catalogue and import figures (admin)",
)
async def get_analytics(services: Deps, _admin: Admin) -> Response:
    model = ready_model(services)
    key = ("analytics",)
    cached = services.cache.get(key)
    if cached is not None:
        return json_response(cached)
    try:
        stats = await services.store.provider_stats()
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    body = dumps(analytics(model, stats))
    services.cache.put(key, body)
    return json_response(body)


@router.post(
    "/export",
    response_model=ExportResult,
    responses={**READ_ERRORS},
    summary="Append matching records not exported before to the CSV file (admin)",
    openapi_extra={"parameters": [Q_PARAMETER, *FILTER_PARAMETERS]},
)
async def export(request: Request, services: Deps, _admin: Admin, links: LinkBase) -> Response:
    filters, read = read_filters(request.query_params)
    q = read.text("q")
    validated(read)
    query = filters.query(q)
    model = ready_model(services)
    query.limit = 10_000_000  # every match, in start order
    query.after = None
    page = model.search(query)
    appended, total = await services.exporter.append(model, page.slots)
    return json_response(
        dumps(
            {
                "appended": appended,
                "total_rows": total,
                "download_url": f"{links.base}/external-events/export.csv",
            }
        )
    )


@router.get(
    "/export.csv",
    response_class=FileResponse,
    responses={**ERRORS, 404: {"model": Error}},
    summary="Download the CSV export (admin)",
)
async def download(services: Deps, _admin: Admin) -> Response:
    path = services.exporter.path
    if not path.exists():
        raise ApiError(404, "Nothing exported yet")
    return FileResponse(path, media_type="text/csv", filename=path.name)


@router.get(
    "/{source}/{external_id}",
    response_model=ExternalEventOut,
    responses={**ERRORS, 404: {"model": Error}},
    summary="One per-source record; fetched from the provider on demand when unknown",
)
async def detail(
    services: Deps, _user: AnyUser, source: Source, external_id: ExternalId
) -> Response:
    key = f"{source}:{external_id}"
    model = services.model
    body = model.external(key)
    if body is not None:
        return json_response(body)
    try:
        doc = await services.store.external(key)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    if doc is None and services.fetcher is not None:
        doc = await services.fetcher.fetch(source, external_id)
    if doc is None:
        raise not_found("Event")
    model.apply_external(doc)
    body = model.external(key)
    if body is None:  # the model holds a newer version than the store answered: fine, use it
        row = external_row(doc)
        body = row.body[:-1] + b',"is_imported":false,"imported_event":null}'
    return json_response(body)


@router.post(
    "/{source}/{external_id}/import",
    status_code=201,
    response_model=ImportCreated,
    responses={
        **ERRORS,
        202: {"model": ImportAccepted, "description": "accepted; poll status_url"},
        400: {"model": Error, "description": "already imported, or rejected"},
        404: {"model": Error},
        503: {"model": Error},
    },
    summary="Import a record as a local event (organizer)",
)
async def import_event(
    services: Deps,
    principal: Organizer,
    links: LinkBase,
    source: Source,
    external_id: ExternalId,
) -> Response:
    if services.importer is None:
        raise unavailable("Import service unavailable")
    outcome = await services.importer.request(principal, source, external_id, links)
    services.metrics.imports.labels(str(outcome.status)).inc()
    return json_response(dumps(outcome.body), outcome.status)
