"""Entity resolution rules and the canonical merge, on hand-made records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.normalizer.merge import content_hash, merge
from services.normalizer.pipeline import profile_doc, profile_of
from services.normalizer.resolve import (
    MATCH_THRESHOLD,
    Profile,
    Resolver,
    canonical_id_for,
    performer_key,
    score,
    zone_shift,
)
from shared.contracts import EventStatus, ExternalEvent, Performer, PriceRange, Provider
from shared.contracts.documents import Venue, When

START = datetime(2027, 3, 14, 3, 30, tzinfo=UTC)  # 19:30 on the 13th in Los Angeles
LA = ZoneInfo("America/Los_Angeles")


def event(source: str, ext: str, title: str, **changes: Any) -> ExternalEvent:
    """A record at Crypto.com Arena; its wall clock is its start seen in Los Angeles, unless
    ``wall`` names another one (a provider's time-zone error)."""
    start = changes.pop("start", START)
    wall = changes.pop("wall", start.astimezone(LA).replace(tzinfo=None).isoformat())
    fields: dict[str, Any] = {
        "source": Provider(source),
        "external_id": ext,
        "title": title,
        "start": When(utc=start, local=wall, timezone="America/Los_Angeles"),
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
    early = event("seatgeek", "2", "Meetup #24", start=START - timedelta(hours=4))
    assert score(base, profile(early)) == 0  # 15:30 is not 19:30 (the same day)
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


# A provider's time-zone error: the wall clock (19:30 on the 13th, Crypto.com Arena) agrees,
# the UTC instant is a whole number of hours off.
WALL = "2027-03-13T19:30:00"
TEAMS = ("Los Angeles Miners", "Boston Pioneers")


def listed(source: str, title: str, hours: float = 0, wall: str = WALL, **changes: Any) -> Profile:
    """The game as one provider lists it, its UTC start ``hours`` off, its wall clock ``wall``."""
    performers = changes.pop("performers", [Performer(name=t) for t in TEAMS])
    ext = changes.pop("ext", title)
    start = START + timedelta(hours=hours)
    return profile(
        event(source, ext, title, start=start, wall=wall, performers=performers, **changes)
    )


@pytest.mark.parametrize("hours", [1, 2, 3, 4, 5, 8, -1, -3, -7])
def test_a_start_off_by_whole_hours_with_the_wall_clock_agreeing_matches(hours: int) -> None:
    """Title, venue, local date, wall clock and line-up agree; one provider converted the wall
    clock with the wrong zone. Gaps over 3 h were vetoed before; 1-3 h scored as a late start."""
    tm = listed("ticketmaster", "Los Angeles Miners vs. Boston Pioneers")
    sg = listed("seatgeek", "Boston Pioneers at Los Angeles Miners", hours)
    assert zone_shift(tm.start, tm.wall, sg.start, sg.wall) == hours  # type: ignore[arg-type]
    assert score(tm, sg) >= MATCH_THRESHOLD
    assert score(sg, tm) == score(tm, sg)
    resolver = Resolver()
    first, _ = resolver.add(tm)
    second, _ = resolver.add(sg)
    assert first == second


def test_a_time_zone_error_scores_below_an_agreeing_start() -> None:
    """A record that agrees on the instant is the better match (a time-zone error is a doubt)."""
    tm = listed("ticketmaster", "Los Angeles Miners vs. Boston Pioneers")
    right = listed("seatgeek", "Boston Pioneers at Los Angeles Miners")
    off = listed("eventbrite", "Boston Pioneers at Los Angeles Miners", 2)
    assert score(tm, right) > score(tm, off) >= MATCH_THRESHOLD


@pytest.mark.parametrize("hours", [4.5, 5.25, -3.75])
def test_a_gap_of_no_whole_hours_over_3_h_still_rules_a_match_out(hours: float) -> None:
    tm = listed("ticketmaster", "Los Angeles Miners vs. Boston Pioneers")
    sg = listed("seatgeek", "Boston Pioneers at Los Angeles Miners", hours)
    assert zone_shift(tm.start, tm.wall, sg.start, sg.wall) is None  # type: ignore[arg-type]
    assert score(tm, sg) == 0


def test_a_whole_hour_gap_with_another_line_up_venue_or_title_is_no_time_zone_error() -> None:
    tm = listed("ticketmaster", "Adele", performers=[Performer(name="Adele")])
    # Another act on the bill, the same title: the line-ups disagree.
    other_act = listed("seatgeek", "Adele", 5, performers=[Performer(name="Sam Smith")])
    assert score(tm, other_act) == 0
    elsewhere = Venue(name="Madison Hall", city="Los Angeles", lat=34.2, lon=-118.5)
    moved = listed("seatgeek", "Adele", 5, venue=elsewhere, performers=[Performer(name="Adele")])
    assert score(tm, moved) == 0
    # A record without a line-up must agree on the title: more than one performer's name.
    renamed = listed("eventbrite", "Museum Night", 5, performers=[])
    assert score(tm, renamed) == 0
    felix = [Performer(name="Felix & the Lanterns")]
    band = listed("ticketmaster", "Felix & the Lanterns", performers=felix, category="music")
    other_band = listed(
        "eventbrite", "Felix & the Signals Live", 1, performers=[], category="music"
    )
    assert score(band, other_band) < MATCH_THRESHOLD
    same_band = listed(
        "eventbrite", "Felix & the Lanterns Live", 1, performers=[], category="music"
    )
    assert score(band, same_band) >= MATCH_THRESHOLD
    # Within 3 h such a pair is judged as before (a late start), not as a time-zone error.
    near = listed("seatgeek", "Adele", 2, performers=[Performer(name="Sam Smith")])
    assert score(tm, near) < MATCH_THRESHOLD


def test_a_whole_hour_gap_on_another_local_date_or_without_a_wall_clock_never_matches() -> None:
    tm = listed("ticketmaster", "Los Angeles Miners vs. Boston Pioneers")
    next_day = listed(
        "seatgeek", "Boston Pioneers at Los Angeles Miners", 24, wall="2027-03-14T19:30:00"
    )
    assert score(tm, next_day) == 0
    # With no wall clock on one side a gap cannot be told from a second performance.
    sg = listed("seatgeek", "Boston Pioneers at Los Angeles Miners", 5)
    assert score(tm, replace(sg, wall=None)) == 0


@pytest.mark.parametrize(("first", "second"), [("13:05", "19:05"), ("15:30", "19:30")])
def test_a_double_header_is_two_performances(first: str, second: str) -> None:
    """Same venue, same day, same line-up, hours apart: unlike a time-zone error, the wall
    clocks differ by as many hours as the instants (both providers use the venue's zone)."""
    title = "Los Angeles Miners vs. Boston Pioneers"

    def game_at(source: str, wall: str, off_by: int = 0) -> Profile:
        # ``off_by``: the provider's own time-zone error on top.
        local = datetime.fromisoformat(f"2027-03-13T{wall}:00")
        start = local.replace(tzinfo=LA).astimezone(UTC) + timedelta(hours=off_by)
        hours = (start - START) / timedelta(hours=1)
        return listed(source, title, hours, wall=local.isoformat(), ext=wall)

    tm1, tm2 = game_at("ticketmaster", first), game_at("ticketmaster", second)
    sg1, sg2 = game_at("seatgeek", first, 1), game_at("seatgeek", second, 1)
    assert zone_shift(tm1.start, tm1.wall, sg2.start, sg2.wall) is None  # type: ignore[arg-type]
    assert score(tm1, game_at("seatgeek", second)) == 0
    assert score(tm1, sg2) == 0  # a time-zone error does not bridge a double-header either
    assert score(tm2, sg1) == 0
    resolver = Resolver()
    ids = [resolver.add(p)[0] for p in (tm1, sg2, tm2, sg1)]
    assert ids[0] == ids[3] != ids[1] == ids[2]


def test_a_stored_member_keeps_its_wall_clock() -> None:
    sg = listed("seatgeek", "Boston Pioneers at Los Angeles Miners", 5)
    doc = profile_doc(sg)
    assert doc["wall"] == WALL
    assert profile_of(doc) == sg
    # A member stored before wall clocks were kept has none.
    assert profile_of({k: v for k, v in doc.items() if k != "wall"}).wall is None


def test_a_member_whose_provider_fixed_its_zone_stays() -> None:
    """The time set aside, a member with a time-zone error still fits its event."""
    resolver = Resolver()
    cid, _ = resolver.add(listed("ticketmaster", "Los Angeles Miners vs. Boston Pioneers"))
    assert resolver.add(listed("seatgeek", "Boston Pioneers at Los Angeles Miners", 6))[0] == cid
    assert resolver.add(listed("seatgeek", "Boston Pioneers at Los Angeles Miners"))[0] == cid
    assert resolver.split_from == {}


def zoned(source: str, ext: str, hours: int, zone: str, **changes: Any) -> ExternalEvent:
    """The 19:30 game as one source lists it, in ``zone`` (its UTC follows from the zone)."""
    start = START + timedelta(hours=hours)
    record = event(source, ext, "Miners vs. Pioneers", start=start, wall=WALL, **changes)
    record.start = When(utc=start, local=WALL, timezone=zone)
    return record


ARENA = Venue(name="Crypto.com Arena", city="Los Angeles", lat=34.043, lon=-118.267)


def test_merge_flags_the_source_whose_start_is_whole_hours_off() -> None:
    """Eventbrite's organiser left the event in New York time: 19:30 there is 3 h early."""
    la = Venue(**{**ARENA.model_dump(), "timezone": "America/Los_Angeles"})
    tm = zoned("ticketmaster", "a", 0, "America/Los_Angeles", venue=la)
    sg = zoned("seatgeek", "1", 0, "America/Los_Angeles", venue=la)
    eb = zoned("eventbrite", "e", -3, "America/New_York", venue=ARENA)
    eb.end = When(utc=START + timedelta(hours=-1), timezone="America/New_York")
    merged = merge("evt_x", [eb, sg, tm], {})
    assert merged.start.utc == START
    assert merged.end is None  # Eventbrite's end is as far off as its start
    [conflict] = merged.start_conflicts
    assert conflict.model_dump() == {
        "source": Provider.EVENTBRITE,
        "external_id": "e",
        "utc": START - timedelta(hours=3),
        "timezone": "America/New_York",
        "hours": -3,
    }
    # Subscribers see the flag (it is in the content hash), and it is stored.
    assert content_hash(merged) != content_hash(merged.model_copy(update={"start_conflicts": []}))
    assert merged.to_document()["start_conflicts"][0]["hours"] == -3


def test_merge_start_the_venue_zone_wins_a_tie_over_the_leading_source() -> None:
    """Two sources, one hour apart: Eventbrite leads Meetup, but Meetup's start is the wall
    clock in the venue's zone (as its venue reports it) and Eventbrite's is not."""
    eb = zoned("eventbrite", "e", -1, "America/Denver", venue=ARENA)
    la = Venue(**{**ARENA.model_dump(), "timezone": "America/Los_Angeles"})
    mu = zoned("meetup", "m", 0, "America/Los_Angeles", venue=la)
    merged = merge("evt_x", [eb, mu], {})
    assert merged.start.utc == START
    assert merged.start.timezone == "America/Los_Angeles"
    assert [(c.source, c.hours) for c in merged.start_conflicts] == [(Provider.EVENTBRITE, -1)]
    # Nobody reports the venue's zone: the leading source's start stays (and the other's is
    # flagged).
    plain = merge("evt_x", [eb, zoned("meetup", "m", 0, "America/Los_Angeles", venue=ARENA)], {})
    assert plain.start.utc == START - timedelta(hours=1)
    assert [(c.source, c.hours) for c in plain.start_conflicts] == [(Provider.MEETUP, 1)]


def test_merge_start_most_sources_outvote_the_leading_one() -> None:
    tm = zoned("ticketmaster", "a", -2, "America/Chicago")  # the leading source is off
    sg = zoned("seatgeek", "1", 0, "America/Los_Angeles")
    eb = zoned("eventbrite", "e", 0, "America/Los_Angeles")
    merged = merge("evt_x", [tm, sg, eb], {})
    assert merged.start.utc == START
    assert [(c.source, c.hours) for c in merged.start_conflicts] == [(Provider.TICKETMASTER, -2)]


def test_merge_without_a_time_zone_error_flags_nothing() -> None:
    tm = zoned("ticketmaster", "a", 0, "America/Los_Angeles")
    late = event("seatgeek", "1", "Miners vs. Pioneers", start=START + timedelta(minutes=30))
    merged = merge("evt_x", [tm, late], {})
    assert merged.start.utc == START  # the leading source's, as before
    assert merged.start_conflicts == []
