"""The pages under ``/web``: search, event detail (with import), my imports, sign in and out.

Each page calls what the JSON API's routers call (``params.read_filters`` → ``Catalogue``,
``Store``, ``Importer``): no HTTP round trip, no second copy of a query. Errors become pages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pymongo.errors import PyMongoError

from services.api import feeds
from services.api.auth import ROLE_NAMES, Principal, Role, mint
from services.api.deps import Services
from services.api.errors import ApiError
from services.api.feedtokens import FeedTokens
from services.api.imports import Links
from services.api.params import SOURCES, encode_cursor, read_filters
from services.api.routers.categories import tree
from services.web import maps, view
from services.web.session import (
    DEV_TOKEN_TTL_S,
    clear_token,
    dev_login_enabled,
    same_origin,
    set_token,
    signed_in,
)
from shared.mongo import EXTERNAL_EVENTS

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(
    provider_name=view.provider_name,
    when_text=view.when_text,
    place_text=view.place_text,
    price_text=view.price_text,
    safe_url=view.safe_url,
    status_name=view.status_name,
)
MAX_FORM_BYTES = 16_384


class PageError(Exception):
    """Shown as a page with this status (not the JSON API's error body)."""

    def __init__(self, status: int, title: str, message: str = "") -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.message = message


class PageRoute(APIRoute):
    """A route whose errors are pages: the API's ``ApiError`` (a 429, a 503) and store
    failures are rendered, not sent as JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except PageError as err:
                return await error_page(request, err.status, err.title, err.message)
            except ApiError as err:
                headers = {"Retry-After": str(int(err.retry_after))} if err.retry_after else None
                page = await error_page(request, err.status, err.error)
                page.headers.update(headers or {})
                return page
            except PyMongoError:
                return await error_page(request, 503, "The catalogue is unavailable, try again")

        return handle


router = APIRouter(prefix="/web", route_class=PageRoute, include_in_schema=False)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    principal: Principal | None = None,
) -> HTMLResponse:
    services = services_of(request)
    response = templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "role": principal.role.name.lower() if principal else None,
            "organizer": bool(principal and principal.can(Role.ORGANIZER)),
            "dev_login": dev_login_enabled(services),
            **context,
        },
        status_code=status,
    )
    # Pages show a signed-in person's data: never cached by a shared cache.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = CSP
    return response


# Everything from this origin; the JSON-LD block is data (browsers do not run it).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


async def error_page(request: Request, status: int, title: str, message: str = "") -> HTMLResponse:
    principal = None
    if status not in (401, 429):
        try:
            principal = await signed_in(request)
        except ApiError:
            principal = None
    return render(request, "error.html", {"title": title, "message": message}, status, principal)


def sign_in_url(request: Request) -> str:
    target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    page = "login" if dev_login_enabled(services_of(request)) else "token"
    return f"/web/{page}?next={target}"


async def require(request: Request, role: Role = Role.USER) -> Principal | RedirectResponse:
    principal = await signed_in(request)
    if principal is None:
        return RedirectResponse(sign_in_url(request), status_code=303)
    if not principal.can(role):
        raise PageError(403, "Not allowed", f"This page needs the {role.name.lower()} role.")
    return principal


async def form_of(request: Request) -> dict[str, str]:
    """A urlencoded form body (the pages post nothing else), last value of each name."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PageError(413, "Form too large")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20))
    except (UnicodeDecodeError, ValueError) as err:
        raise PageError(400, "Unreadable form") from err


def checked_origin(request: Request) -> None:
    if not same_origin(request, services_of(request)):
        raise PageError(403, "Refused", "This form was sent from another site.")


def links_of(request: Request) -> Links:
    base = services_of(request).settings.public_url or str(request.base_url)
    return Links(base.rstrip("/"))


# --- sign in and out ---------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str = "/web/") -> Response:
    if not dev_login_enabled(services_of(request)):
        raise PageError(404, "Not found", "Sign in with a token: /web/token.")
    context = {"next": view.safe_next(next), "roles": list(ROLE_NAMES), "error": None}
    return render(request, "login.html", context)


@router.post("/login")
async def login(request: Request) -> Response:
    services = services_of(request)
    if not dev_login_enabled(services):
        raise PageError(404, "Not found")
    checked_origin(request)
    form = await form_of(request)
    name, role = form.get("name", "").strip(), form.get("role", "")
    target = view.safe_next(form.get("next"))
    if not name or len(name) > 100 or role not in ROLE_NAMES:
        context = {"next": target, "roles": list(ROLE_NAMES), "error": "Give a name and a role."}
        return render(request, "login.html", context, 400)
    settings = services.settings
    expires = time.time() + DEV_TOKEN_TTL_S
    token = mint(
        name,
        role,
        secret=settings.jwt_secret.get_secret_value(),
        ttl_s=DEV_TOKEN_TTL_S,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    response = RedirectResponse(target, status_code=303)
    set_token(request, response, token, expires)
    return response


@router.get("/token")
async def token_form(request: Request, next: str = "/web/") -> Response:
    return render(request, "token.html", {"next": view.safe_next(next), "error": None})


@router.post("/token")
async def token_sign_in(request: Request) -> Response:
    checked_origin(request)
    form = await form_of(request)
    token = form.get("token", "").strip()
    target = view.safe_next(form.get("next"))
    try:
        principal = await services_of(request).auth.authenticate(token) if token else None
    except ApiError as err:
        if err.status not in (401, 403):
            raise
        principal = None
    if principal is None:
        context = {"next": target, "error": "That token is not valid here (or has expired)."}
        return render(request, "token.html", context, 400)
    response = RedirectResponse(target, status_code=303)
    set_token(request, response, token, principal.expires_at)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    checked_origin(request)
    page = "login" if dev_login_enabled(services_of(request)) else "token"
    response = RedirectResponse(f"/web/{page}", status_code=303)
    clear_token(response)
    return response


# --- search ----------------------------------------------------------------------------------


def category_options(nodes: list[dict[str, Any]], depth: int = 0) -> list[tuple[str, str]]:
    """(value, label) of every category, children indented under their parent."""
    out: list[tuple[str, str]] = []
    for node in nodes:
        name = str(node["name"])
        out.append((name, "\u2003" * depth + name))
        out += category_options(node["children"], depth + 1)
    return out


@router.get("/")
async def search(request: Request) -> Response:
    principal = await require(request)
    if isinstance(principal, RedirectResponse):
        return principal
    services = services_of(request)
    form = view.form_values(request.query_params)
    cursor = request.query_params.get("cursor") or None
    params, form_errors = view.listing_params(form, cursor)
    errors: dict[str, str] = {f: "Give both latitude and longitude." for f in form_errors}
    page = None
    if not errors:
        filters, read = read_filters(params)
        try:
            if read.details:
                raise ApiError(422, "Validation failed", details=read.details)
            query = filters.query(form.get("q"))
            page = await services.catalogue.listing(query)
        except ApiError as err:
            if err.status not in (400, 422):
                raise
            for detail in err.details or []:
                field = view.ERROR_FIELDS.get(str(detail.get("field")), "q")
                errors.setdefault(field, str(detail.get("message")))
    docs = await services.store.categories()
    categories = category_options(tree([d for d in docs if d.get("source") == "marquee"], {}))
    next_link = None
    if page is not None and page.next_after is not None:
        next_link = view.page_link(form, encode_cursor(page.next_after))
    context = {
        "form": form,
        "errors": errors,
        "page": page,
        "distances": page.distances if page else {},
        "sources": [s for s in SOURCES if s != "all"],
        "categories": categories,
        "next_link": next_link,
        "first_link": view.page_link(form) if cursor else None,
        "searched": bool(form) or cursor is not None,
        "count_text": view.count_text(page.total, page.total_exact) if page else "",
        # "Subscribe to this search": the search's own parameters on each feed.
        "search_feeds": feeds.search_feeds(
            links_of(request).base,
            {**({"q": form["q"]} if form.get("q") else {}), **params},
        ),
    }
    # A search near a place also shows its results on the map (services/web/maps.py).
    if page is not None and page.docs and "near" in params:
        points = maps.points_of(page.docs)
        context |= maps.map_context(services.settings, points, "This page's results on the map")
    return render(request, "search.html", context, 400 if errors else 200, principal)


# --- event detail and import -----------------------------------------------------------------


async def detail_context(request: Request, event_id: str) -> dict[str, Any] | Response:
    services = services_of(request)
    event = await services.store.canonical(event_id)
    if event is None:
        raise PageError(404, "Event not found", "It may have been removed from the catalogue.")
    if event.get("duplicate_of"):
        survivor = quote(str(event["duplicate_of"]), safe="")
        return RedirectResponse(f"/web/events/{survivor}", status_code=307)
    keys = [f"{s.get('source')}:{s.get('external_id')}" for s in event.get("sources") or []]
    found = await services.store.by_ids(EXTERNAL_EVENTS, keys)
    records = [found[k] for k in keys if k in found]
    page_url = str(request.url.replace(query=None, fragment=None))
    return {
        "event": event,
        "records": records,
        "ranges": view.price_ranges([event, *records]),
        "tickets": view.ticket_links(records),
        "performers": view.performers(event, records),
        "json_ld": view.script_json(view.json_ld(event, records, page_url)),
        "outcome": None,
        # The "Share" section: UTM-tagged links, calendars, widgets (services/api/feeds.py).
        "share": feeds.share_section(event, links_of(request).base),
    }


@router.get("/events/{event_id}")
async def event_page(request: Request, event_id: str) -> Response:
    principal = await require(request)
    if isinstance(principal, RedirectResponse):
        return principal
    context = await detail_context(request, event_id)
    if isinstance(context, Response):
        return context
    return render(request, "event.html", context, principal=principal)


def outcome_view(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """An import's answer (201 imported, 202 accepted, 400 refused, 404, 503) as a page says it."""
    kinds = {201: "imported", 202: "pending", 400: "refused", 404: "refused"}
    titles = {
        201: "Imported",
        202: "Accepted: the import is still running",
        400: "Not imported",
        404: "Not imported: the event is not in the catalogue",
    }
    return {
        "status": status,
        "kind": kinds.get(status, "error"),
        "title": titles.get(status, "The import service is unavailable, try again"),
        "message": body.get("message") or body.get("error"),
        "details": [str(d.get("message")) for d in body.get("details") or []],
        "local_event_id": body.get("local_event_id"),
        "request_id": body.get("request_id"),
    }


@router.post("/events/{event_id}/import")
async def import_event(request: Request, event_id: str) -> Response:
    principal = await require(request, Role.ORGANIZER)
    if isinstance(principal, RedirectResponse):
        return principal
    checked_origin(request)
    form = await form_of(request)
    source, external_id = form.get("source", ""), form.get("external_id", "")
    context = await detail_context(request, event_id)
    if isinstance(context, Response):
        return context
    services = services_of(request)
    if not any(
        r.get("source") == source and r.get("external_id") == external_id
        for r in context["records"]
    ):
        raise PageError(400, "Not a record of this event")
    try:
        if services.importer is None:
            raise ApiError(503, "Import service unavailable")
        outcome = await services.importer.request(principal, source, external_id, links_of(request))
        services.metrics.imports.labels(str(outcome.status)).inc()
        status, body = outcome.status, outcome.body
    except ApiError as err:
        if err.status != 503:
            raise
        status, body = 503, {"error": err.error}
    context["outcome"] = {**outcome_view(status, body), "source": source}
    # A page either way (htmx swaps the outcome region in; without script the whole page).
    return render(request, "event.html", context, principal=principal)


@router.post("/events/{event_id}/feed-token")
async def make_feed_token(request: Request, event_id: str) -> Response:
    """A feed token for the Share section's calendar and widget URLs (services/api/feedtokens.py:
    long-lived, revocable with DELETE /feeds/tokens/{id}); shown in the page once."""
    principal = await require(request)
    if isinstance(principal, RedirectResponse):
        return principal
    checked_origin(request)
    context = await detail_context(request, event_id)
    if isinstance(context, Response):
        return context
    label = f"web: {str(context['event'].get('title') or event_id)[:80]}"
    try:
        made = await FeedTokens(services_of(request).store.db).create(
            principal.subject, principal.role, label, datetime.now(UTC)
        )
    except PyMongoError as err:
        raise PageError(503, "The store is unavailable, try again") from err
    context["share"] = feeds.share_section(context["event"], links_of(request).base, made["token"])
    return render(request, "event.html", context, principal=principal)


# --- my imports -----------------------------------------------------------------------------


@router.get("/imports")
async def my_imports(request: Request) -> Response:
    principal = await require(request, Role.ORGANIZER)
    if isinstance(principal, RedirectResponse):
        return principal
    services = services_of(request)
    if services.importer is None:
        raise PageError(503, "The import service is unavailable, try again")
    items = await services.importer.mine(principal, links_of(request))
    return render(request, "imports.html", {"items": items}, principal=principal)


def install(app: FastAPI) -> None:
    """The pages and their assets (the API's ``create_app`` calls this)."""
    app.include_router(router)
    # The dashboard (its own module: it imports this one).
    from services.web import dashboard

    app.include_router(dashboard.router)
    # The live "what changed" page and its event stream (services/web/live.py).
    from services.web import live

    app.include_router(live.pages)
    app.include_router(live.streams)
    # Artist recommendations (services/web/recommend.py).
    from services.web import recommend

    app.include_router(recommend.router)
    # Price and listing history of an event (services/web/prices.py).
    from services.web import prices

    app.include_router(prices.router)
    app.mount("/web/static", StaticFiles(directory=STATIC_DIR), name="web-static")

    @app.get("/web", include_in_schema=False)
    async def web_root() -> RedirectResponse:
        return RedirectResponse("/web/", status_code=308)
