"""``/external-events``: search, detail (with an on-demand fetch), import, analytics, CSV export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse
from pymongo.errors import PyMongoError

from services.api.analytics import analytics
from services.api.deps import Admin, AnyUser, Deps, LinkBase, Organizer
from services.api.errors import ApiError, field_error, not_found, unavailable
from services.api.export import EXPORT_FILE
from services.api.params import (
    DEDUPE_PARAMETER,
    FILTER_PARAMETERS,
    Q_PARAMETER,
    Q_REQUIRED,
    read_filters,
    validated,
)
from services.api.render import dumps, json_response, public, search_body
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
    summary="Search per-source records (one per canonical event with dedupe=true)",
    openapi_extra={"parameters": [Q_REQUIRED, DEDUPE_PARAMETER, *FILTER_PARAMETERS]},
)
async def search(request: Request, services: Deps, _user: AnyUser, links: LinkBase) -> Response:
    params = request.query_params
    filters, read = read_filters(params)
    q = read.text("q")
    dedupe = bool(read.flag("dedupe"))
    validated(read)
    if q is None or not q.strip():
        # The seed's message, with the field named as every other 400 does.
        raise ApiError(
            400,
            "Search query is required",
            details=[field_error("q", "words of the title, category, performers or venue")],
        )
    query = filters.query(q)
    cache_key = ("search", request.url.query)
    cached = services.cache.get(cache_key)
    if cached is not None:
        services.metrics.cache.labels("hit").inc()
        return json_response(cached)
    services.metrics.cache.labels("miss").inc()
    catalogue = services.catalogue
    try:
        page = await (catalogue.search_deduped(query) if dedupe else catalogue.search(query))
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    body = search_body(page, links)
    services.cache.put(cache_key, body)
    return json_response(body)


@router.get(
    "/analytics",
    responses={**ERRORS, 503: {"model": Error}},
    summary="Catalogue and import figures (admin)",
)
async def get_analytics(services: Deps, _admin: Admin) -> Response:
    key = ("analytics",)
    cached = services.cache.get(key)
    if cached is not None:
        return json_response(cached)
    try:
        body = dumps(await analytics(services.store.db))
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
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
    try:
        appended, total = await services.exporter.append(services.catalogue, query)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
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
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "every exported row"},
        **ERRORS,
        404: {"model": Error},
        503: {"model": Error},
    },
    summary="Download the CSV export (admin)",
)
async def download(services: Deps, _admin: Admin) -> Response:
    try:
        if await services.exporter.empty():
            raise ApiError(404, "Nothing exported yet")
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    return StreamingResponse(
        services.exporter.lines(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{EXPORT_FILE}"'},
    )


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
    try:
        doc = await services.store.external(key)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    if doc is None and services.fetcher is not None:
        doc = await services.fetcher.fetch(source, external_id)
    if doc is None:
        raise not_found("Event")
    return json_response(dumps(public(doc)))


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
