"""The recommendations page (``/web/recommendations``): liked artists, a place and dates in a
form; the events recommended for them, each with its reasons. It calls what
``GET /recommendations`` calls (``read_request`` → ``Recommender``): one query, one ranking."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.api.catalogue import TooBroad
from services.api.errors import ApiError
from services.api.routers.recommendations import minute, read_request, recommendations
from services.web.pages import PageRoute, render, require, services_of

router = APIRouter(prefix="/web", route_class=PageRoute, include_in_schema=False)

FIELDS = ("artists", "lat", "lon", "radius_km", "date_from", "date_to")
PAGE_SIZE = 10
# Where an API error about a parameter is shown on the form.
ERROR_FIELDS = {
    "query.artists": "artists",
    "query.near": "lat",
    "date_from": "date_from",
    "date_to": "date_to",
    "cursor": "artists",
    "query.cursor": "artists",
    "near": "lat",
}


@router.get("/recommendations")
async def recommendations_page(request: Request) -> Response:
    principal = await require(request)
    if isinstance(principal, RedirectResponse):
        return principal
    given = request.query_params
    form = {name: given[name].strip() for name in FIELDS if given.get(name, "").strip()}
    cursor = given.get("cursor") or None
    errors: dict[str, str] = {}
    result = None
    if form:
        if not form.get("artists"):
            errors["artists"] = "Name at least one artist."
        if not (form.get("lat") and form.get("lon")):
            errors["lat"] = "Give both latitude and longitude."
    if form and not errors:
        near = f"{form['lat']},{form['lon']}" + (
            f",{form['radius_km']}" if form.get("radius_km") else ""
        )
        params = {"artists": form["artists"], "near": near, "limit": str(PAGE_SIZE)}
        params |= {k: form[k] for k in ("date_from", "date_to") if k in form}
        if cursor:
            params["cursor"] = cursor
        try:
            asked = read_request(params, minute(datetime.now(UTC)))
            result = await recommendations(services_of(request), asked)
        except TooBroad as err:
            errors["lat"] = str(err)
        except ApiError as err:
            if err.status not in (400, 422):
                raise
            for detail in err.details or [{"field": "near", "message": err.error}]:
                field = ERROR_FIELDS.get(str(detail.get("field")), "artists")
                errors.setdefault(field, str(detail.get("message")))
    next_link = None
    if result is not None and result.next_cursor:
        next_link = "/web/recommendations?" + urlencode({**form, "cursor": result.next_cursor})
    context = {
        "form": form,
        "errors": errors,
        "result": result,
        "next_link": next_link,
        "first_link": "/web/recommendations?" + urlencode(form) if cursor else None,
    }
    return render(request, "recommendations.html", context, 400 if errors else 200, principal)
