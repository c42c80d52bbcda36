"""``/local-events``: events imported onto the organiser's platform."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pymongo.errors import PyMongoError

from services.api.auth import Role
from services.api.deps import Deps, Organizer
from services.api.errors import not_found, unavailable
from services.api.render import dumps, json_response
from services.api.schemas import ERRORS, Error

router = APIRouter(prefix="/local-events", tags=["local events"])


@router.get(
    "/{local_id}",
    responses={**ERRORS, 404: {"model": Error}, 503: {"model": Error}},
    summary="A local event (its creator or an admin)",
)
async def get_local_event(
    services: Deps, principal: Organizer, local_id: Annotated[str, Path(max_length=200)]
) -> Response:
    try:
        doc = await services.store.local_event(local_id)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    # Someone else's local event is reported as absent: its existence is not ours to tell.
    if doc is None or (
        not principal.can(Role.ADMIN) and doc.get("created_by") != principal.subject
    ):
        raise not_found("Local event")
    body: dict[str, Any] = {"id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}
    return json_response(dumps(body))
