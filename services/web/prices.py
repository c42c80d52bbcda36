"""``/web/events/{id}/prices``: price and listing history of a canonical event, its members
side by side (the JSON API's ``/events/{id}/prices``, read through the same functions)."""

from __future__ import annotations

from datetime import date
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.api.prices import Window, comparison, member_keys, read_series
from services.web import view
from services.web.pages import PageError, PageRoute, render, require, services_of
from services.web.price_charts import price_charts

router = APIRouter(prefix="/web", route_class=PageRoute, include_in_schema=False)


def _day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise PageError(400, "Not a day", "Give days as YYYY-MM-DD.") from err


@router.get("/events/{event_id}/prices")
async def prices_page(request: Request, event_id: str) -> Response:
    principal = await require(request)
    if isinstance(principal, RedirectResponse):
        return principal
    params = request.query_params
    window = Window.of(_day(params.get("since")), _day(params.get("until")))
    services = services_of(request)
    keys = await member_keys(services.store.db, event_id)
    if keys is None:
        raise PageError(404, "Event not found", "It may have been removed from the catalogue.")
    event = await services.store.canonical(event_id) or {}
    series = await read_series(services.store.db, keys, window)
    names = {s["key"]: f"{view.provider_name(s['source'])} {s['external_id']}" for s in series}
    older = window.older()
    base = f"/web/events/{quote(event_id, safe='')}"
    context = {
        "event": event,
        "event_url": base,
        "window": window,
        "older_link": f"{base}/prices?{older.query_string()}" if older else None,
        "series": series,
        "names": names,
        "comparison": comparison(series),
        "charts": price_charts(series, names),
    }
    return render(request, "prices.html", context, principal=principal)
