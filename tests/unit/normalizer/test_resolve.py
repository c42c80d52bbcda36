"""Entity resolution rules and the canonical merge, on hand-made records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.normalizer.merge import content_hash, merge
from services.normalizer.resolve import (
    MATCH_THRESHOLD,
    Profile,
    Resolver,
    canonical_id_for,
    performer_key,
    score,
)
from shared.contracts import EventStatus, ExternalEvent, Performer, PriceRange, Provider
from shared.contracts.documents import Venue, When

START = datetime(2027, 3, 14, 3, 30, tzinfo=UTC)


def event(source: str, ext: str, title: str, **changes: Any) -> ExternalEvent:
    start = changes.pop("start", START)
    fields: dict[str, Any] = {
        "source": Provider(source),
        "external_id": ext,
        "title": title,
        "start": When(utc=start, local="2027-03-13T20:30:00", timezone="America/Los_Angeles"),
        "start_utc": start,
        "venue": Venue(name="Crypto.com Arena", city="Los Angeles", lat=34.043, lon=-118.267),
        "category": "sports",
        "content_hash": f"h-{source}-{ext}",
    }
    fields.update(changes)
    return ExternalEvent(**fields)


def profile(e: ExternalEvent, addon: bool = False) -> Profile:
    return Profile.of(e, addon=addon)


def test_same_game_across_providers_matches() -> None:
    tm = event("ticketmaster", "a", "Los Angeles Lakers vs. Boston Celtics")
    sg = event(
        "seatgeek",
        "1",
        "Boston Celtics at Los Angeles Lakers",
        venue=Venue(
            name="Crypto.com Arena - Los Angeles", city="Los Angeles", lat=34.0431, lon=-118.2673
        ),
    )
    assert score(profile(tm), profile(sg)) >= 0.62


def test_hard_rules_rule_a_match_out() -> None:
    base = profile(event("ticketmaster", "a", "Meetup #24"))
    assert score(base, profile(event("ticketmaster", "b", "Meetup #24"))) == 0  # same provider
    assert score(base, profile(event("seatgeek", "1", "Meetup #90"))) == 0  # series numbers
    late = event("seatgeek", "2", "Meetup #24", start=START + timedelta(hours=4))
    assert score(base, profile(late)) == 0
    assert score(base, profile(event("seatgeek", "3", "Meetup #24"), addon=True)) == 0
    far = event("seatgeek", "4", "Meetup #24", venue=Venue(name="Other Hall", lat=34.2, lon=-118.5))
    assert score(base, profile(far)) == 0
    other = event("seatgeek", "5", "Meetup #24", category="community")
    assert score(base, profile(other)) == 0


def game(source: str, title: str, *teams: str) -> Profile:
    """A game as one provider lists it: its title and its two teams as performers."""
    return profile(event(source, title, title, performers=[Performer(name=t) for t in teams]))


def test_different_two_team_line_ups_never_match() -> None:
    a = game(
        "ticketmaster",
        "Chicago Athletic vs. Nashville Rovers",
        "Chicago Athletic",
        "Nashville Rovers",
    )
    b = game("seatgeek", "Madrid Rovers at Chicago Athletic", "Madrid Rovers", "Chicago Athletic")
    assert score(a, b) == 0


def test_resolver_ids_are_stable_and_clusters_join() -> None:
    resolver = Resolver()
    tm = profile(event("ticketmaster", "a", "Adele"))
    sg = profile(event("seatgeek", "1", "Adele - World Tour"))
    first, _ = resolver.add(tm)
    second, value = resolver.add(sg)
    assert first == second == canonical_id_for("ticketmaster:a")
    assert value is not None
    again, _ = resolver.add(tm)
    assert again == first


def test_a_rescheduled_performance_keeps_its_id() -> None:
    resolver = Resolver()
    cid, _ = resolver.add(profile(event("ticketmaster", "a", "Adele")))
    resolver.add(profile(event("seatgeek", "1", "Adele - World Tour")))
    later = START + timedelta(days=2)
    moved = event(
        "ticketmaster", "a", "Adele", start=later,
        start_local="2027-03-15T20:30:00",
    )  # fmt: skip
    moved.start = When(utc=later, local="2027-03-15T20:30:00", timezone="America/Los_Angeles")
    again, _ = resolver.add(profile(moved))
    assert again == cid
    assert resolver.split_from == {}
    assert set(resolver.clusters[cid].members) == {"ticketmaster:a", "seatgeek:1"}


def test_a_member_that_became_another_event_splits_off() -> None:
    resolver = Resolver()
    cid, _ = resolver.add(profile(event("ticketmaster", "a", "Adele")))
    resolver.add(profile(event("seatgeek", "1", "Adele - World Tour")))
    # The founder turns out to be a different game in another city: it leaves, and the
    # other member keeps the id subscribers know.
    elsewhere = Venue(name="Madison Square Garden", city="New York", lat=40.75, lon=-73.99)
    changed = event("ticketmaster", "a", "Knicks vs. Nets", venue=elsewhere)
    new_id, _ = resolver.add(profile(changed))
    assert new_id != cid
    assert resolver.split_from == {new_id: cid}
    assert set(resolver.clusters[cid].members) == {"seatgeek:1"}
    assert set(resolver.clusters[new_id].members) == {"ticketmaster:a"}
    # Replaying the same change finds the same place.
    assert resolver.add(profile(changed))[0] == new_id


def test_a_record_that_bridges_two_events_merges_them_into_the_older() -> None:
    resolver = Resolver()
    # Ticketmaster and SeatGeek list one show under names too different to match...
    tm, _ = resolver.add(profile(event("ticketmaster", "a", "Adele", category="music")))
    sg, _ = resolver.add(
        profile(event("seatgeek", "1", "An Evening With The Voice", category="music"))
    )
    assert tm != sg
    # ...then SeatGeek renames it: now it is plainly the same performance.
    resolver.add(profile(event("seatgeek", "1", "Adele", category="music")))
    assert resolver.merged == {sg: tm}
    assert set(resolver.clusters[tm].members) == {"ticketmaster:a", "seatgeek:1"}
    assert sg not in resolver.clusters
    # A provider never appears twice in one event: a second Ticketmaster listing stays apart.
    other, _ = resolver.add(profile(event("ticketmaster", "b", "Adele", category="music")))
    assert other != tm


def test_merge_takes_the_best_value_per_field() -> None:
    tbd = event(
        "ticketmaster",
        "a",
        "Adele",
        start=START,
        price_range=PriceRange(min=50, max=90, currency="USD"),
        performers=[Performer(name="Adele", spotify_id="4dpARuHxo51G3z768sgnrY")],
    )
    tbd.start = When(local="2027-03-13", time_tbd=True, timezone="America/Los_Angeles")
    timed = event(
        "seatgeek",
        "1",
        "Adele - World Tour",
        description="A longer description of the night",
        price_range=PriceRange(min=40, max=120, currency="USD"),
        status=EventStatus.SCHEDULED,
    )
    merged = merge("evt_x", [timed, tbd], {"seatgeek:1": 0.9})
    assert merged.title == "Adele"  # the leading source's title
    assert merged.start.utc == START  # a known time beats a TBD one
    assert merged.price_range == PriceRange(min=40, max=120, currency="USD")
    assert merged.performers[0].spotify_id == "4dpARuHxo51G3z768sgnrY"
    assert [s.source.value for s in merged.sources] == ["ticketmaster", "seatgeek"]
    assert content_hash(merged) == content_hash(merge("evt_x", [tbd, timed], {}))


def test_performer_name_variants_are_one_performer() -> None:
    """A city abbreviated or not, St./Saint, a leading "The", "&"/"and": the same line-up, so
    the two-team rule does not veto the pair and it matches."""
    a = game("ticketmaster", "LA Miners vs. St. Louis Pioneers", "LA Miners", "St. Louis Pioneers")
    b = game(
        "seatgeek",
        "Saint Louis Pioneers at Los Angeles Miners",
        "Saint Louis Pioneers",
        "The Los Angeles Miners",
    )
    assert score(a, b) >= MATCH_THRESHOLD
    assert performer_key("Simon & Garfunkel") == performer_key("Simon and Garfunkel")
    assert performer_key("NYC Rovers") == performer_key("New York Rovers")
