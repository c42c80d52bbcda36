"""Recommendation scoring: genre similarity, the liked-artist boost, reasons, order and cursor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.api.recommend import (
    ARTIST_BOOST,
    Liked,
    Scored,
    after_position,
    candidate_filter,
    cursor_of,
    genre_similarity,
    profile_of,
    rank,
    score_event,
)
from services.api.routers.recommendations import _ARTISTS, artist_list, read_request
from shared.search import GEO, name_key

CENTER = (36.16, -86.78)
GIANTS = Liked("Electric Giants", "Electric Giants", "sp1", ("indie rock", "shoegaze"), 70)
CROWS = Liked("sp2", "Velvet Crows", "sp2", ("indie rock",), 40)


def event(eid: str, *performers: dict[str, object], lat: float = 36.16) -> dict[str, object]:
    return {"_id": eid, "performers": list(performers), "venue": {"lat": lat, "lon": -86.78}}


def test_genre_similarity_is_a_weighted_jaccard() -> None:
    weights = profile_of([GIANTS, CROWS]).weights
    assert weights == {"indie rock": 1.0, "shoegaze": 0.5}
    assert genre_similarity(weights, ["indie rock", "shoegaze"]) == 1.5 / 2.0
    assert genre_similarity(weights, ["indie rock"]) == 1.0 / 1.5
    assert genre_similarity(weights, ["jazz"]) == 0.0
    assert genre_similarity(weights, []) == 0.0
    # An extra genre of the event dilutes it.
    assert genre_similarity(weights, ["indie rock", "jazz"]) < genre_similarity(
        weights, ["indie rock"]
    )


def test_a_liked_artist_playing_is_boosted_and_said() -> None:
    profile = profile_of([GIANTS, CROWS])
    plays = score_event(profile, event("a", {"name": "Electric  giants!"}), CENTER, 50)
    shares = score_event(
        profile, event("b", {"name": "Other", "genres": ["Indie Rock"]}), CENTER, 50
    )
    assert plays is not None
    assert shares is not None
    assert plays.why[0] == "Electric Giants plays"
    assert plays.score >= ARTIST_BOOST > shares.score
    assert shares.why == [
        "shares genre indie rock with Electric Giants",
        "shares genre indie rock with Velvet Crows",
    ]
    assert shares.artists == ["Electric Giants", "Velvet Crows"]


def test_nothing_in_common_is_not_recommended() -> None:
    profile = profile_of([CROWS])
    assert score_event(profile, event("c", {"name": "X", "genres": ["jazz"]}), CENTER, 50) is None
    assert score_event(profile, event("d"), CENTER, 50) is None


def test_popularity_and_nearness_break_ties() -> None:
    profile = profile_of([CROWS])
    near = score_event(profile, event("e", {"name": "A", "genres": ["indie rock"]}), CENTER, 50)
    far = score_event(
        profile, event("f", {"name": "A", "genres": ["indie rock"]}, lat=36.5), CENTER, 50
    )
    popular = score_event(
        profile,
        event("g", {"name": "A", "genres": ["indie rock"], "popularity": 90}, lat=36.5),
        CENTER,
        50,
    )
    assert near is not None
    assert far is not None
    assert popular is not None
    assert near.distance_km == 0
    assert far.distance_km > 30
    assert near.score > far.score
    assert popular.score > far.score


def test_ranking_and_cursor_positions() -> None:
    items = [Scored("b", 0.5, 1, ["x"], []), Scored("a", 0.5, 2, ["x"], [])]
    items.append(Scored("c", 1.25, 3, ["x"], []))
    ranked = rank(items)
    assert [s.event_id for s in ranked] == ["c", "a", "b"]
    cursor = cursor_of(ranked[1])
    assert cursor == "-0.500000~a"
    value, last = cursor.split("~")
    assert [s.event_id for s in after_position(ranked, (float(value), last))] == ["b"]


def test_names_compare_by_their_words() -> None:
    assert name_key("  Beyoncé & the  WAVES ") == "beyonce the waves"
    assert artist_list("a, b ,,a, ") == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a", True), ("a,", True), (" ,a", False), ("", False), (",".join("x" * 21), False)],
)
def test_the_artists_pattern(value: str, ok: bool) -> None:
    assert bool(_ARTISTS.fullmatch(value)) is ok


def test_request_defaults_to_the_next_30_days() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    asked = read_request({"artists": "sp1", "near": "36.16,-86.78"}, now)
    assert asked.start_from == now
    assert (asked.start_to - now).days == 30
    assert asked.radius_km == 50
    found = candidate_filter(asked.center, asked.radius_km, asked.start_from, asked.start_to)
    assert next(iter(found)) == GEO  # the circle leads
