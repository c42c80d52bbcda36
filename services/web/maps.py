"""The venue map's data for a page (``_map.html`` + ``static/map.js``): the points as a JSON data
block, the locally served base layer, and the tile settings (``WEB_MAP_TILES_URL``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.web import view
from shared.mongo import Document
from shared.settings import ApiSettings

MAP_BASE = "/web/static/map/countries-110m.json"


def map_context(settings: ApiSettings, points: list[dict[str, Any]], title: str) -> dict[str, Any]:
    return {
        "map_points": view.script_json(points),
        "map_title": title,
        "map_base": MAP_BASE,
        "map_tiles": settings.web_map_tiles_url,
        "map_attribution": settings.web_map_tiles_attribution,
    }


def points_of(docs: Iterable[Document]) -> list[dict[str, Any]]:
    """One point per venue position among ``docs`` (a page of results), with its count."""
    found: dict[tuple[float, float], dict[str, Any]] = {}
    for doc in docs:
        venue = doc.get("venue") or {}
        lat, lon = venue.get("lat"), venue.get("lon")
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            continue
        point = found.setdefault(
            (float(lat), float(lon)),
            {
                "lat": lat,
                "lon": lon,
                "count": 0,
                "city": venue.get("city"),
                "country": venue.get("country"),
            },
        )
        point["count"] += 1
    return sorted(found.values(), key=lambda p: (-p["count"], p["lat"], p["lon"]))
