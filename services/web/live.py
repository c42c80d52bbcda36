"""The live "what changed" page: recent changes of the catalogue, new ones prepended as they
happen (``static/changes.js`` reads ``/web/changes/stream``, the API's ``GET /events/stream``
with the page's cookie instead of a Bearer header).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.api.auth import unauthorized
from services.api.errors import ApiError
from services.api.params import SOURCES
from services.api.render import change_item, iso
from services.api.routers.categories import tree
from services.api.stream import cursor_of, key_of, read_stream_params, respond
from services.web import view
from services.web.pages import (
    PageRoute,
    category_options,
    render,
    require,
    services_of,
    templates,
)
from services.web.session import signed_in

RECENT = 30


def changed_iso(value: Any) -> str:
    return str(iso(value))


def changed_text(value: Any) -> str:
    """A modification time as the page (and changes.js) writes it: ``2026-05-01 19:30:12 UTC``."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value or "")


templates.env.globals.update(changed_iso=changed_iso, changed_text=changed_text)
pages = APIRouter(prefix="/web", route_class=PageRoute, include_in_schema=False)
streams = APIRouter(prefix="/web", include_in_schema=False)


def stream_params(form: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The stream's parameters for the form's values (as the search form maps them)."""
    params, errors = view.listing_params(form, None)
    return {k: v for k, v in params.items() if k in ("source", "category", "near")}, errors


@pages.get("/changes")
async def changes_page(request: Request) -> Response:
    principal = await require(request)
    if isinstance(principal, RedirectResponse):
        return principal
    services = services_of(request)
    form = view.form_values(request.query_params)
    params, form_errors = stream_params(form)
    errors: dict[str, str] = {f: "Give both latitude and longitude." for f in form_errors}
    items: list[dict[str, Any]] = []
    after = None
    if not errors:
        try:
            filters, _ = read_stream_params(params)
        except ApiError as err:
            if err.status not in (400, 422):
                raise
            filters = None
            for detail in err.details or []:
                field = view.ERROR_FIELDS.get(str(detail.get("field")), "source")
                errors.setdefault(field, str(detail.get("message")))
        if filters is not None:
            docs = await services.catalogue.latest_changes(RECENT * 4, datetime.now(UTC))
            if docs:
                # The stream resumes after the newest change read here: nothing in between.
                after = cursor_of(key_of(docs[0]))
            items = [change_item(d) for d in docs if filters.matches(d)][:RECENT]
    stream_url = None
    if not errors:
        query = {**params, **({"after": after} if after else {})}
        stream_url = "/web/changes/stream" + (f"?{urlencode(query)}" if query else "")
    docs = await services.store.categories()
    categories = category_options(tree([d for d in docs if d.get("source") == "marquee"], {}))
    context = {
        "form": form,
        "errors": errors,
        "items": items,
        "stream_url": stream_url,
        "sources": [s for s in SOURCES if s != "all"],
        "categories": categories,
    }
    return render(request, "changes.html", context, 400 if errors else 200, principal)


@streams.get("/changes/stream")
async def changes_stream(request: Request) -> Response:
    """The page's event stream: the API's ``/events/stream`` signed in by the page's cookie."""
    principal = await signed_in(request)
    if principal is None:
        raise unauthorized("Authentication required")
    return respond(request, services_of(request).stream, principal)
