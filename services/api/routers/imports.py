"""``/imports``: the status of an import request, and bulk imports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from services.api.deps import Deps, LinkBase, Organizer
from services.api.errors import unavailable
from services.api.render import dumps, json_response
from services.api.schemas import (
    ERRORS,
    BulkImportRequest,
    BulkImportResponse,
    Error,
    ImportStatusOut,
)

router = APIRouter(prefix="/imports", tags=["imports"])


@router.post(
    "/bulk",
    response_model=BulkImportResponse,
    responses={
        **ERRORS,
        202: {"model": BulkImportResponse, "description": "some still pending"},
        400: {"model": Error, "description": "the body is not JSON"},
        422: {"model": Error},
        503: {"model": Error},
    },
    summary="Import up to 100 records (organizer); one result per item",
)
async def bulk_import(
    services: Deps, principal: Organizer, links: LinkBase, body: BulkImportRequest
) -> Response:
    if services.importer is None:
        raise unavailable("Import service unavailable")
    items = [(i.source, i.external_id) for i in body.items]
    results = await services.importer.bulk(principal, items, links)
    pending = any(r.get("status") == 202 for r in results)
    return json_response(dumps({"results": results}), 202 if pending else 200)


@router.get(
    "/{request_id}",
    response_model=ImportStatusOut,
    responses={**ERRORS, 404: {"model": Error}, 503: {"model": Error}},
    summary="Where an import request stands (its requester or an admin)",
)
async def import_status(
    services: Deps,
    principal: Organizer,
    links: LinkBase,
    request_id: Annotated[str, Path(max_length=100)],
) -> Response:
    if services.importer is None:
        raise unavailable("Import service unavailable")
    return json_response(dumps(await services.importer.status(principal, request_id, links)))
