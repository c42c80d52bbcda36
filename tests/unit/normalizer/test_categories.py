"""The canonical taxonomy and the mapping of provider categories onto it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.normalizer.categories import (
    CANONICAL,
    MARQUEE,
    TREE,
    canonical_category,
    provider_category_docs,
)
from shared.contracts import ExternalEvent, Provider, ProviderCategory, When


def pcs(source: Provider, *items: tuple[str, str, str | None]) -> list[ProviderCategory]:
    return [ProviderCategory(source=source, level=lv, name=n, external_id=i) for lv, n, i in items]


def test_canonical_tree_is_consistent() -> None:
    names = [c.name for c in CANONICAL]
    assert len(names) == len(set(names))  # unique on (name, source)
    assert all(c.source == MARQUEE for c in CANONICAL)
    tops = {c.name for c in CANONICAL if c.parent is None}
    assert tops == {"music", "sports", "arts & theatre", "family", "community", "film", "other"}
    assert all(c.parent in tops for c in CANONICAL if c.parent is not None)
    for sub in ("rock", "basketball", "theatre", "musical", "comedy", "tech", "meetup"):
        assert sub in names
    assert len(CANONICAL) == len(TREE) + sum(len(v) for v in TREE.values())


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([("segment", "Music", None), ("genre", "Rock", None), ("subgenre", "Pop", None)],
         ("music", "rock")),
        ([("segment", "Music", None), ("genre", "Hip-Hop/Rap", None)], ("music", "hip-hop")),
        ([("segment", "Sports", None), ("genre", "Basketball", None)], ("sports", "basketball")),
        ([("segment", "Sports", None), ("genre", "Body Building", None)], ("sports", None)),
        ([("segment", "Arts & Theatre", None), ("genre", "Comedy", None)],
         ("arts & theatre", "comedy")),
        ([("segment", "Arts & Theatre", None), ("genre", "Theatre", None)],
         ("arts & theatre", "theatre")),
        ([("segment", "Miscellaneous", None), ("genre", "Family", None)], ("family", None)),
        ([("segment", "Miscellaneous", None), ("genre", "Community/Civic", None)],
         ("community", None)),
        ([("segment", "Miscellaneous", None)], ("other", None)),
        ([("segment", "Film", None), ("genre", "Action/Adventure", None)], ("film", None)),
        ([], (None, None)),
    ],
)  # fmt: skip
def test_ticketmaster(
    items: list[tuple[str, str, str | None]], expected: tuple[str | None, str | None]
) -> None:
    assert canonical_category(Provider.TICKETMASTER, pcs(Provider.TICKETMASTER, *items)) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["concert"], ("music", None)),
        (["sports", "nba"], ("sports", "basketball")),
        (["sports", "baseball", "mlb"], ("sports", "baseball")),
        (["sports", "mls"], ("sports", "soccer")),
        (["sports", "nhl"], ("sports", "hockey")),
        (["theater"], ("arts & theatre", "theatre")),
        (["theater", "comedy"], ("arts & theatre", "comedy")),
        (["theater", "broadway_tickets_national"], ("arts & theatre", "musical")),
        (["family"], ("family", None)),
        (["conference"], ("community", "conference")),
    ],
)
def test_seatgeek(names: list[str], expected: tuple[str | None, str | None]) -> None:
    items = pcs(Provider.SEATGEEK, *(("taxonomy", n, None) for n in names))
    assert canonical_category("seatgeek", items) == expected


@pytest.mark.parametrize(
    ("category", "sub", "fmt", "expected"),
    [
        ("103", None, "6", ("music", None)),
        ("103", "3017", None, ("music", "rock")),
        ("108", None, None, ("sports", None)),
        ("105", None, None, ("arts & theatre", None)),
        ("102", None, "1", ("community", "tech")),
        ("101", "1001", "11", ("community", "business")),
        ("113", None, None, ("community", "culture")),
        ("110", None, None, ("community", "food & drink")),
        ("115", None, None, ("family", None)),
        ("119", None, "9", ("community", "workshop")),
        ("119", None, "10", ("community", "networking")),
        ("999", None, None, (None, None)),
    ],
)
def test_eventbrite(
    category: str, sub: str | None, fmt: str | None, expected: tuple[str | None, str | None]
) -> None:
    items = [
        ProviderCategory(
            source=Provider.EVENTBRITE, level="category", name="c", external_id=category
        )
    ]
    if sub:
        items.append(
            ProviderCategory(
                source=Provider.EVENTBRITE, level="subcategory", name="s", external_id=sub
            )
        )
    if fmt:
        items.append(
            ProviderCategory(source=Provider.EVENTBRITE, level="format", name="f", external_id=fmt)
        )
    assert canonical_category(Provider.EVENTBRITE, items) == expected


def test_meetup_is_community() -> None:
    assert canonical_category(Provider.MEETUP, []) == ("community", "meetup")


def _event(source: Provider, categories: list[ProviderCategory]) -> ExternalEvent:
    return ExternalEvent(
        source=source,
        external_id="1",
        title="t",
        start=When(utc=datetime(2026, 1, 1, tzinfo=UTC)),
        content_hash="h",
        provider_categories=categories,
    )


def test_provider_category_docs_ticketmaster_parents() -> None:
    event = _event(
        Provider.TICKETMASTER,
        pcs(
            Provider.TICKETMASTER,
            ("segment", "Music", "KZFzniwnSyZfZ7v7nJ"),
            ("genre", "Rock", "KnvZfZ7vAeA"),
            ("subgenre", "Pop", "KZazBEonSMnZfZ7v6F1"),
        ),
    )
    docs = provider_category_docs(event)
    assert [(d.name, d.parent, d.source, d.external_id) for d in docs] == [
        ("Music", None, "ticketmaster", "KZFzniwnSyZfZ7v7nJ"),
        ("Rock", "Music", "ticketmaster", "KnvZfZ7vAeA"),
        ("Pop", "Rock", "ticketmaster", "KZazBEonSMnZfZ7v6F1"),
    ]


def test_provider_category_docs_seatgeek_and_eventbrite() -> None:
    sg = _event(
        Provider.SEATGEEK,
        pcs(
            Provider.SEATGEEK,
            ("taxonomy", "sports", "1000000"),
            ("taxonomy", "baseball", "1010000"),
            ("taxonomy", "mlb", "1010100"),
            ("type", "mlb", None),
        ),
    )
    docs = provider_category_docs(sg)
    assert [(d.name, d.parent) for d in docs] == [
        ("sports", None),
        ("baseball", "sports"),
        ("mlb", "baseball"),
    ]
    eb = _event(
        Provider.EVENTBRITE,
        pcs(
            Provider.EVENTBRITE,
            ("category", "Music", "103"),
            ("subcategory", "Rock", "3017"),
            ("format", "Concert or Performance", "6"),
        ),
    )
    assert [(d.name, d.parent, d.external_id) for d in provider_category_docs(eb)] == [
        ("Music", None, "103"),
        ("Rock", "Music", "3017"),
        ("Concert or Performance", None, "6"),
    ]


def test_seatgeek_family_type_is_a_family_show() -> None:
    """SeatGeek files a family show under "theater"; its type says family, and that decides."""
    theater = ProviderCategory(source=Provider.SEATGEEK, name="theater", level="taxonomy")
    circus = ProviderCategory(source=Provider.SEATGEEK, name="circus", level="taxonomy")
    family = ProviderCategory(source=Provider.SEATGEEK, name="family", level="type")
    assert canonical_category(Provider.SEATGEEK, [theater, family]) == ("family", None)
    assert canonical_category(Provider.SEATGEEK, [circus, family]) == ("family", "circus")
    assert canonical_category(Provider.SEATGEEK, [theater]) == ("arts & theatre", "theatre")
