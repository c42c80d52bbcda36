"""Spotify Web API artist -> Performer (enrichment only; Spotify lists no events)."""

from __future__ import annotations

from typing import Any

from services.normalizer.mappers._common import MappingError, clean_name, number, text
from shared.contracts import Performer


def map_artist(payload: dict[str, Any]) -> Performer:
    """Map a Spotify artist object (``GET /v1/artists/{id}`` or a search item)."""
    if not isinstance(payload, dict):
        raise MappingError("artist", "payload is not a JSON object")
    spotify_id = text(payload.get("id"))
    if spotify_id is None:
        raise MappingError("id", "missing Spotify artist id")
    name = clean_name(payload.get("name"))
    if name is None:
        raise MappingError("name", "missing or blank artist name")
    genres_raw = payload.get("genres")
    # ``genres`` is often empty; keep the provider's spelling, drop blanks and repeats.
    genres: list[str] = []
    for genre in genres_raw if isinstance(genres_raw, list) else []:
        value = text(genre)
        if value and value not in genres:
            genres.append(value)
    popularity = number(payload.get("popularity"))
    return Performer(
        name=name,
        external_id=spotify_id,
        spotify_id=spotify_id,
        genres=genres,
        popularity=int(popularity) if popularity is not None and 0 <= popularity <= 100 else None,
    )
