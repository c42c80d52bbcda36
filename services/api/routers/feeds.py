"""Marketing tools: iCalendar and Atom/RSS feeds, schema.org JSON-LD, embeddable widgets.

Calendar apps, feed readers and iframes send no header, so every route here also takes the
``token`` query parameter: a feed token (``mft_…``, long-lived and revocable, made with
``POST /feeds/tokens``) or the API's own JWT (same checks, roles, 401/403 and rate limits as
``Authorization: Bearer``; a header wins when both are given). The organizer's feed lists only
the caller's own local events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import PyMongoError

from services.api import feeds
from services.api.auth import Principal, Role, bearer_token, forbidden, unauthorized
from services.api.catalogue import Query as CatalogueQuery
from services.api.deps import AnyUser, Deps, LinkBase, Services, authenticate, bearer_scheme
from services.api.deps import _limit as rate_limit
from services.api.errors import bad_request, not_found, unavailable
from services.api.feedtokens import MAX_PER_OWNER, FeedTokens, is_feed_token
from services.api.imports import Links
from services.api.params import FILTER_PARAMETERS, Q_PARAMETER, read_filters, validated
from services.api.render import dumps, iso, json_response
from services.api.schemas import ERRORS, READ_ERRORS, Error
from services.web import view
from shared.mongo import EXTERNAL_EVENTS, LOCAL_EVENTS, Document
from shared.search import tokens

router = APIRouter(tags=["marketing"])

QUERY_AUTH_HELP = (
    "a feed token (POST /feeds/tokens) or the API's JWT, for clients that cannot send"
    " `Authorization` (calendar apps, feed readers, iframes); the header wins when both are given"
)
# A name has a word in it (letters or digits): it is matched word by word, case and accents
# folded (shared/search.py).
NAME_PATTERN = r"[^\W_]"
# Search feeds take the listing filters except paging and order (a feed has its own).
FEED_FILTERS = [p for p in FILTER_PARAMETERS if p["name"] not in ("limit", "cursor", "sort")]
CACHE_CONTROL = "private, max-age=300"
WIDGET_MAX = 20
ICS = "text/calendar; charset=utf-8"


def feed_principal(role: Role) -> Callable[..., Any]:
    async def check(
        request: Request,
        services: Deps,
        _scheme: Annotated[object, Depends(bearer_scheme)] = None,
        token: Annotated[
            str | None, Query(min_length=1, max_length=4000, description=QUERY_AUTH_HELP)
        ] = None,
    ) -> Principal:
        header = request.headers.get("authorization")
        if not header and token and is_feed_token(token):
            principal = await _feed_token(request, services, token)
        else:

            def token_of() -> str:
                return bearer_token(header) if header or not token else token

            principal = await authenticate(request, token_of)
        if not principal.can(role):
            raise forbidden(f"Requires the {role.name.lower()} role")
        return principal

    return check


async def _feed_token(request: Request, services: Services, token: str) -> Principal:
    """A feed token (services/api/feedtokens.py), with the limits a JWT gets."""
    try:
        principal = await FeedTokens(services.store.db).principal(token)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    if principal is None:
        client = request.client.host if request.client else "unknown"
        rate_limit(services, f"ip:{client}")
        services.metrics.auth_failures.labels("401").inc()
        raise unauthorized("Invalid or revoked feed token")
    rate_limit(services, f"sub:{principal.subject}")
    return principal


FeedUser = Annotated[Principal, Depends(feed_principal(Role.USER))]
FeedOrganizer = Annotated[Principal, Depends(feed_principal(Role.ORGANIZER))]
Name = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME_PATTERN)]
NOT_FOUND = {**ERRORS, 400: {"model": Error}, 404: {"model": Error}, 503: {"model": Error}}


def _same(a: Any, b: str) -> bool:
    return bool(a) and tokens(str(a)) == tokens(b)


async def collect(
    services: Services,
    query: CatalogueQuery,
    keep: Callable[[Document], bool] | None = None,
    cap: int = feeds.ICS_MAX,
) -> list[Document]:
    """Canonical events matching ``query`` (and ``keep``), in its order, at most ``cap``: read a
    page of the listing at a time (each page an indexed window, see catalogue.py)."""
    found: list[Document] = []
    position = query.after
    try:
        while len(found) < cap:
            page = await services.catalogue.listing(
                replace(query, after=position, limit=min(1000, cap - len(found)))
            )
            found.extend(d for d in page.docs if keep is None or keep(d))
            if page.next_after is None:
                break
            position = page.next_after
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    return found[:cap]


# Catalogue feeds and widgets are the same for every caller: kept in the per-replica response
# cache (API_CACHE_DURATION_MINUTES) when small; a 10,000-event calendar (~4 MB) is not kept.
CACHE_MAX_BYTES = 256 * 1024


async def cached(
    request: Request, services: Services, links: Links, produce: Callable[[], Awaitable[bytes]]
) -> bytes:
    """The body for this path and query (the token left out: it names the caller, not the
    feed), from the cache or produced (and validated) now."""
    query = tuple(sorted((k, v) for k, v in request.query_params.multi_items() if k != "token"))
    key = ("feed", links.base, request.url.path, query)
    found = services.cache.get(key)
    if found is not None:
        services.metrics.cache.labels("hit").inc()
        return found
    services.metrics.cache.labels("miss").inc()
    body = await produce()
    if len(body) <= CACHE_MAX_BYTES:
        services.cache.put(key, body)
    return body


def reply(request: Request, body: bytes, media_type: str, *, name: str | None = None) -> Response:
    """The body with its validators: ``If-None-Match`` of the same body is a 304."""
    tag = feeds.etag(body)
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if name:
        headers["Content-Disposition"] = f'inline; filename="{name}"'
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def search_query(request: Request, sort: str) -> tuple[CatalogueQuery, str]:
    filters, read = read_filters(request.query_params)
    q = read.text("q")
    validated(read)
    query = replace(filters.query(q), sort=sort, after=None)
    return query, q or "everything"


def venue_query(venue: str) -> CatalogueQuery:
    return CatalogueQuery(location=tokens(venue), limit=1000)


def artist_query(artist: str) -> CatalogueQuery:
    # The words lead the indexed search; the exact name is checked on the matches (by_artist).
    return CatalogueQuery(words=tokens(artist), limit=1000)


def at_venue(venue: str) -> Callable[[Document], bool]:
    return lambda doc: _same((doc.get("venue") or {}).get("name"), venue)


def by_artist(artist: str) -> Callable[[Document], bool]:
    return lambda doc: any(
        _same(p.get("name"), artist) for p in doc.get("performers") or [] if isinstance(p, dict)
    )


FEED_RESPONSES: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    200: {"content": {"text/calendar": {"schema": {"type": "string"}}}},
    304: {"description": "Not modified (If-None-Match)"},
}


@router.get(
    "/feeds/search.ics",
    responses=FEED_RESPONSES,
    response_class=Response,
    summary="iCalendar (RFC 5545) of a search's upcoming events: a saved search is this URL",
    openapi_extra={"parameters": [Q_PARAMETER, *FEED_FILTERS]},
)
async def search_ics(
    request: Request, services: Deps, _user: FeedUser, links: LinkBase
) -> Response:
    async def produce() -> bytes:
        query, title = search_query(request, "start")
        return feeds.calendar(await collect(services, query), f"Marquee: {title}", links.base)

    return reply(request, await cached(request, services, links, produce), ICS)


@router.get(
    "/feeds/venues/{venue}.ics",
    responses=FEED_RESPONSES,
    response_class=Response,
    summary="iCalendar of a venue's upcoming events (the venue's name, matched word for word)",
)
async def venue_ics(
    request: Request, services: Deps, _user: FeedUser, links: LinkBase, venue: Name
) -> Response:
    async def produce() -> bytes:
        docs = await collect(services, venue_query(venue), at_venue(venue))
        return feeds.calendar(docs, f"Marquee: {venue}", links.base)

    return reply(request, await cached(request, services, links, produce), ICS)


@router.get(
    "/feeds/artists/{artist}.ics",
    responses=FEED_RESPONSES,
    response_class=Response,
    summary="iCalendar of an artist's upcoming events (the performer's name, word for word)",
)
async def artist_ics(
    request: Request, services: Deps, _user: FeedUser, links: LinkBase, artist: Name
) -> Response:
    async def produce() -> bytes:
        docs = await collect(services, artist_query(artist), by_artist(artist))
        return feeds.calendar(docs, f"Marquee: {artist}", links.base)

    return reply(request, await cached(request, services, links, produce), ICS)


@router.get(
    "/feeds/local-events.ics",
    responses=FEED_RESPONSES,
    response_class=Response,
    summary="iCalendar of the caller's own local events (organizer; private to its creator)",
)
async def local_events_ics(
    request: Request, services: Deps, principal: FeedOrganizer, links: LinkBase
) -> Response:
    try:
        # The created_by_start index (shared/mongo.py): one range of the caller's own.
        cursor = (
            services.store.db[LOCAL_EVENTS]
            .find({"created_by": principal.subject})
            .sort([("created_by", 1), ("start", 1)])
            .limit(feeds.ICS_MAX)
        )
        docs = [doc async for doc in cursor]
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    body = feeds.calendar(docs, "Marquee: my local events", links.base)
    return reply(request, body, ICS)


def _self_url(request: Request) -> str:
    """The feed's own address, its token left out (a feed never repeats a credential)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return str(request.url.replace(query=urlencode(kept) or None))


@router.get(
    "/feeds/search.atom",
    responses={**FEED_RESPONSES, 200: {"content": {"application/atom+xml": {}}}},
    response_class=Response,
    summary="Atom feed of a search's newest events (last modified first, bounded)",
    openapi_extra={"parameters": [Q_PARAMETER, *FEED_FILTERS]},
)
async def search_atom(
    request: Request, services: Deps, _user: FeedUser, links: LinkBase
) -> Response:
    async def produce() -> bytes:
        query, title = search_query(request, "-updated")
        docs = await collect(services, query, cap=feeds.FEED_MAX)
        return feeds.atom(docs, f"Marquee: {title}", _self_url(request), links.base)

    body = await cached(request, services, links, produce)
    return reply(request, body, "application/atom+xml; charset=utf-8")


@router.get(
    "/feeds/search.rss",
    responses={**FEED_RESPONSES, 200: {"content": {"application/rss+xml": {}}}},
    response_class=Response,
    summary="RSS 2.0 feed of a search's newest events (last modified first, bounded)",
    openapi_extra={"parameters": [Q_PARAMETER, *FEED_FILTERS]},
)
async def search_rss(
    request: Request, services: Deps, _user: FeedUser, links: LinkBase
) -> Response:
    async def produce() -> bytes:
        query, title = search_query(request, "-updated")
        docs = await collect(services, query, cap=feeds.FEED_MAX)
        return feeds.rss(docs, f"Marquee: {title}", _self_url(request), links.base)

    body = await cached(request, services, links, produce)
    return reply(request, body, "application/rss+xml; charset=utf-8")


@router.get(
    "/events/{event_id}/jsonld",
    responses={**NOT_FOUND, 200: {"content": {"application/ld+json": {}}}},
    response_class=Response,
    summary="One canonical event as schema.org Event JSON-LD (the web page embeds the same)",
)
async def event_jsonld(
    request: Request,
    services: Deps,
    _user: FeedUser,
    links: LinkBase,
    event_id: Annotated[str, Path(max_length=200)],
) -> Response:
    try:
        event = await services.store.canonical(event_id)
        if event is None:
            raise not_found("Event")
        keys = [f"{s.get('source')}:{s.get('external_id')}" for s in event.get("sources") or []]
        found = await services.store.by_ids(EXTERNAL_EVENTS, keys)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    records = [found[k] for k in keys if k in found]
    body = view.json_ld(event, records, feeds.event_url(links.base, str(event["_id"])))
    return reply(request, view.script_json(body).encode(), "application/ld+json")


def widget(request: Request, html: bytes) -> Response:
    response = reply(request, html, "text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = feeds.WIDGET_CSP
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


WIDGET_RESPONSES: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    200: {"content": {"text/html": {"schema": {"type": "string"}}}},
    304: {"description": "Not modified (If-None-Match)"},
}


@router.get(
    "/widgets/venues/{venue}",
    responses=WIDGET_RESPONSES,
    response_class=Response,
    summary="Embeddable HTML (for an iframe) of a venue's next events: no script, no assets",
)
async def venue_widget(
    request: Request, services: Deps, _user: FeedUser, links: LinkBase, venue: Name
) -> Response:
    async def produce() -> bytes:
        docs = await collect(services, venue_query(venue), at_venue(venue), cap=WIDGET_MAX)
        return feeds.widget_html(docs, f"Next at {venue}", links.base, "venue_widget").encode()

    return widget(request, await cached(request, services, links, produce))


@router.get(
    "/widgets/artists/{artist}",
    responses=WIDGET_RESPONSES,
    response_class=Response,
    summary="Embeddable HTML (for an iframe) of an artist's next events: no script, no assets",
)
async def artist_widget(
    request: Request, services: Deps, _user: FeedUser, links: LinkBase, artist: Name
) -> Response:
    async def produce() -> bytes:
        docs = await collect(services, artist_query(artist), by_artist(artist), cap=WIDGET_MAX)
        title = f"{artist}: next events"
        return feeds.widget_html(docs, title, links.base, "artist_widget").encode()

    return widget(request, await cached(request, services, links, produce))


# --- feed tokens ---------------------------------------------------------------------------


class FeedTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=100, description="what it is for")


class FeedTokenOut(BaseModel):
    id: str
    label: str | None
    role: str
    created_at: datetime
    token: str | None = Field(default=None, description="only in the answer that made it")


class FeedTokensOut(BaseModel):
    tokens: list[FeedTokenOut]


def _token_out(doc: Document) -> dict[str, Any]:
    out = {
        "id": doc["_id"],
        "label": doc.get("label"),
        "role": doc.get("role"),
        "created_at": iso(doc.get("created_at")),
    }
    if "token" in doc:
        out["token"] = doc["token"]
    return out


@router.post(
    "/feeds/tokens",
    status_code=201,
    response_model=FeedTokenOut,
    responses={**ERRORS, 400: {"model": Error}, 413: {"model": Error}, 503: {"model": Error}},
    summary="Make a feed token: a revocable credential for feed and widget URLs (shown once)",
)
async def create_feed_token(
    services: Deps, principal: AnyUser, body: FeedTokenCreate | None = None
) -> Response:
    tokens = FeedTokens(services.store.db)
    try:
        if await tokens.count(principal.subject) >= MAX_PER_OWNER:
            raise bad_request("body", f"at most {MAX_PER_OWNER} feed tokens: delete one first")
        doc = await tokens.create(
            principal.subject, principal.role, body.label if body else None, datetime.now(UTC)
        )
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    return json_response(dumps(_token_out(doc)), 201, {"Location": f"/feeds/tokens/{doc['_id']}"})


@router.get(
    "/feeds/tokens",
    response_model=FeedTokensOut,
    responses={**ERRORS, 503: {"model": Error}},
    summary="The caller's feed tokens, newest first (never their secrets)",
)
async def list_feed_tokens(services: Deps, principal: AnyUser) -> Response:
    try:
        docs = await FeedTokens(services.store.db).mine(principal.subject)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    return json_response(dumps({"tokens": [_token_out(d) for d in docs]}))


@router.delete(
    "/feeds/tokens/{token_id}",
    status_code=204,
    responses={**ERRORS, 404: {"model": Error}, 503: {"model": Error}},
    summary="Revoke a feed token of the caller's (at once, on every replica)",
)
async def delete_feed_token(
    services: Deps, principal: AnyUser, token_id: Annotated[str, Path(max_length=100)]
) -> Response:
    try:
        deleted = await FeedTokens(services.store.db).delete(principal.subject, token_id)
    except PyMongoError as err:
        raise unavailable("Store unavailable") from err
    if not deleted:
        raise not_found("Feed token")
    return Response(status_code=204)
