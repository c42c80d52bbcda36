"""Spotify matching: Ticketmaster links, name normalisation, same-name ambiguity."""

from __future__ import annotations

from services.ingestor.providers.spotify import normalise, performers_in, score, spotify_id_of
from shared.contracts import Provider


def test_link_id_read_from_ticketmaster_attraction() -> None:
    attraction = {
        "externalLinks": {
            "spotify": [{"url": "https://open.spotify.com/artist/0C0XlULifJtAgn6ZNCW2eu"}]
        }
    }
    assert spotify_id_of(attraction) == "0C0XlULifJtAgn6ZNCW2eu"
    assert spotify_id_of({"externalLinks": {}}) is None
    assert spotify_id_of({}) is None


def test_names_are_normalised() -> None:
    assert normalise("The Weeknd") == normalise("weeknd")
    assert normalise("Beyoncé!") == "beyonce"


def test_exact_unique_name_is_confident() -> None:
    best = score(
        "Muse", [{"name": "Muse", "popularity": 80}, {"name": "Muse Lab", "popularity": 5}]
    )
    assert best is not None
    assert best[0]["name"] == "Muse"
    assert best[1] == 1.0


def test_same_name_artists_lower_the_confidence() -> None:
    even = score("Nova", [{"name": "Nova", "popularity": 30}, {"name": "Nova", "popularity": 31}])
    clear = score("Nova", [{"name": "Nova", "popularity": 70}, {"name": "Nova", "popularity": 3}])
    assert even is not None
    assert clear is not None
    assert even[1] == 0.5
    assert clear[0]["popularity"] == 70
    assert 0.5 < clear[1] < 1.0


def test_no_candidates() -> None:
    assert score("Anyone", []) is None


def test_performers_found_in_both_event_shapes() -> None:
    tm = {
        "id": "G5v",
        "_embedded": {"attractions": [{"id": "K8", "name": "Adele"}, {"name": "no id"}]},
    }
    sg = {"id": 7, "performers": [{"id": 12, "name": "Lakers"}]}
    assert [p.performer_id for p in performers_in(Provider.TICKETMASTER, tm)] == ["K8"]
    assert [p.event_key for p in performers_in(Provider.TICKETMASTER, tm)] == ["ticketmaster:G5v"]
    assert [p.event_key for p in performers_in(Provider.SEATGEEK, sg)] == ["seatgeek:7"]
    assert [p.name for p in performers_in(Provider.SEATGEEK, sg)] == ["Lakers"]
    assert performers_in(Provider.MEETUP, sg) == []


def test_a_name_that_only_contains_the_performers_is_another_act() -> None:
    """A single search result named "X Trio" or "The X Band" is not X: no match at all."""
    for other in ("Lumen Trio", "The Lumen Band", "Lumen and Friends"):
        assert score("Lumen", [{"name": other, "popularity": 40}]) is None, other
    assert score("Lumen Trio", [{"name": "Lumen", "popularity": 40}]) is None
    # The same name written otherwise is still the same artist; a near spelling keeps its ratio.
    for written in ("AC/DC", "Florence + the Machine", "Metalica"):
        wanted = {"AC/DC": "ACDC", "Florence + the Machine": "Florence and The Machine"}.get(
            written, "Metallica"
        )
        found = score(wanted, [{"name": written, "popularity": 50}])
        assert found is not None, written
        assert found[1] >= 0.9
    assert score("Lumen", [{"name": "Lumex", "popularity": 50}]) is None
