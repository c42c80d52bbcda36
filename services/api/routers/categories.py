"""``/categories``: the canonical taxonomy as a tree, or one provider's categories."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pymongo.errors import PyMongoError

from services.api.deps import AnyUser, Deps
from services.api.errors import bad_request, unavailable
from services.api.render import dumps, json_response
from services.api.schemas import READ_ERRORS, CategoriesResponse, Error
from shared.contracts import Provider
from shared.mongo import Document

router = APIRouter(prefix="/categories", tags=["categories"])
CATEGORY_SOURCES = ("marquee", *(p.value for p in Provider if p is not Provider.SPOTIFY))


def tree(docs: list[Document], counts: dict[str, int]) -> list[dict[str, Any]]:
    """Nodes with their children; roots are the categories without a (known) parent."""
    nodes: dict[str, dict[str, Any]] = {
        str(d.get("name")): {
            "name": d.get("name"),
            "source": d.get("source"),
            "parent": d.get("parent"),
            "external_id": d.get("external_id"),
            "count": counts.get(str(d.get("name")).casefold(), 0),
            "children": [],
        }
        for d in sorted(docs, key=lambda d: str(d.get("name")))
    }
    roots = []
    for node in nodes.values():
        parent = nodes.get(str(node["parent"])) if node["parent"] else None
        if parent is not None and parent is not node:
            parent["children"].append(node)
        else:
            roots.append(node)
    return roots


@router.get(
    "",
    response_model=CategoriesResponse,
    responses={**READ_ERRORS, 503: {"model": Error}},
    summary="Categories with their hierarchy and how many records each has",
)
async def categories(
    services: Deps,
    _user: AnyUser,
    source: Annotated[
        str,
        Query(
            max_length=40,
            description="marquee (canonical) or a provider",
            json_schema_extra={"enum": list(CATEGORY_SOURCES)},
        ),
    ] = "marquee",
) -> Response:
    if source not in CATEGORY_SOURCES:
        raise bad_request("source", f"one of {', '.join(CATEGORY_SOURCES)}")
    key = ("categories", source)
    cached = services.cache.get(key)
    if cached is not None:
        return json_response(cached)
    try:
        docs = [d for d in await services.store.categories() if d.get("source") == source]
        counts = await services.catalogue.category_counts() if source == "marquee" else {}
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    body = dumps({"categories": tree(docs, counts)})
    services.cache.put(key, body)
    return json_response(body)
