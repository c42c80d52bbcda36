"""``/web/dashboard``: the catalogue's figures as charts (server-rendered SVG with tables) and a
map of venues (Leaflet over a locally served country layer; tiles only when configured).

The figures are the JSON API's (``/analytics/...``, ``services/api/figures.py``), read through
the same cached functions, with no HTTP call to itself. Import activity and provider
performance are for admins, as in the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.api.auth import Role
from services.api.figures import Bucket
from services.api.routers.analytics import (
    catalogue_body,
    imports_body,
    providers_body,
    venues_body,
)
from services.web import charts, maps, view
from services.web.pages import PageRoute, render, require, services_of

router = APIRouter(prefix="/web", route_class=PageRoute, include_in_schema=False)


def catalogue_charts(figures: dict[str, Any]) -> list[charts.Chart]:
    return [
        charts.bars(
            "by-source",
            "Upcoming records by provider",
            [(view.provider_name(r["source"]), [r["count"]]) for r in figures["by_source"]],
        ),
        charts.bars(
            "by-category",
            "Upcoming events by category",
            [(str(r["category"]), [r["count"]]) for r in figures["by_category"]],
        ),
        charts.bars(
            "by-country",
            "Upcoming events by country",
            [(str(r["country"]), [r["count"]]) for r in figures["countries"]],
        ),
        charts.bars(
            "by-city",
            "Upcoming events by city",
            [(f"{r['city']}, {r['country']}", [r["count"]]) for r in figures["cities"]],
        ),
    ]


def provider_charts(figures: dict[str, Any]) -> list[charts.Chart]:
    rows = figures["providers"]
    return [
        charts.bars(
            "latency",
            "Provider latency (last run, ms)",
            [
                (view.provider_name(r["source"]), [r["latency_ms"]["p50"], r["latency_ms"]["p95"]])
                for r in rows
            ],
            series=[("p50", "p50"), ("p95", "p95")],
            unit=" ms",
        ),
        charts.bars(
            "success",
            "Provider success rate (all calls)",
            [
                (
                    view.provider_name(r["source"]),
                    [None if r["success_rate"] is None else round(r["success_rate"] * 100, 1)],
                )
                for r in rows
            ],
            unit="%",
            maximum=100,
        ),
    ]


@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    principal = await require(request)
    if isinstance(principal, RedirectResponse):
        return principal
    services = services_of(request)
    bucket: Bucket = "day" if request.query_params.get("bucket") == "day" else "hour"
    catalogue = orjson.loads(await catalogue_body(services))
    venues = orjson.loads(await venues_body(services))
    context: dict[str, Any] = {
        "catalogue": catalogue,
        "catalogue_charts": catalogue_charts(catalogue),
        "venues": venues,
        "admin": principal.can(Role.ADMIN),
        "bucket": bucket,
        **maps.map_context(
            services.settings,
            venues["points"],
            f"Venues of upcoming events ({len(venues['points'])} places)",
        ),
    }
    if principal.can(Role.ADMIN):
        imports = orjson.loads(await imports_body(services, bucket))
        providers = orjson.loads(await providers_body(services))
        series = [(datetime.fromisoformat(p["start"]), p["count"]) for p in imports["series"]]
        per = "hour" if bucket == "hour" else "day"
        context |= {
            "imports": imports,
            "imports_chart": charts.columns(
                "imports", f"Imports per {per}", series, hourly=bucket == "hour"
            ),
            "providers": providers["providers"],
            "provider_charts": provider_charts(providers),
        }
    return render(request, "dashboard.html", context, principal=principal)
