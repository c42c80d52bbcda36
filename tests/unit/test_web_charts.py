"""The dashboard's chart geometry and text alternatives, and the map points of a results page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.web import charts, maps


def test_bars_scale_to_the_largest_and_say_their_numbers() -> None:
    chart = charts.bars("s", "By provider", [("Ticketmaster", [4]), ("Meetup", [1])])
    assert [b.width for b in chart.bars] == [charts.BAR_W, charts.BAR_W / 4]
    assert chart.summary == "By provider. Ticketmaster: 4; Meetup: 1."
    assert not chart.empty


def test_grouped_bars_with_a_missing_value_and_a_fixed_maximum() -> None:
    chart = charts.bars(
        "l", "Latency", [("SeatGeek", [50.0, None])], series=[("p50", "p50"), ("p95", "p95")]
    )
    assert [b.kind for b in chart.bars] == ["p50", "p95"]
    assert chart.bars[1].width == 0
    assert chart.summary == "Latency. SeatGeek: p50 50, p95 n/a."
    assert chart.legend == [("p50", "p50"), ("p95", "p95")]
    rate = charts.bars("r", "Success", [("Meetup", [50.0])], unit="%", maximum=100)
    assert rate.bars[0].width == charts.BAR_W / 2
    assert rate.summary == "Success. Meetup: 50%."


def test_no_rows_is_an_empty_chart() -> None:
    chart = charts.bars("e", "Nothing", [])
    assert chart.empty
    assert chart.summary == "Nothing. No data."


def test_columns_per_hour() -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    points = [(start + timedelta(hours=i), n) for i, n in enumerate([0, 3, 0, 1])]
    chart = charts.columns("i", "Imports per hour", points, hourly=True)
    assert [round(b.height) for b in chart.bars] == [0, 160, 0, 53]
    assert chart.summary == ("Imports per hour. 4 in all; 2026-05-01 01:00 3, 2026-05-01 03:00 1.")
    idle = charts.columns("i", "Imports per day", [(start, 0)], hourly=False)
    assert idle.empty
    assert idle.summary == "Imports per day. 0 in all; none in this period."


def test_points_of_a_results_page() -> None:
    docs: list[dict[str, Any]] = [
        {"venue": {"lat": 36.16, "lon": -86.78, "city": "Nashville", "country": "US"}},
        {"venue": {"lat": 36.16, "lon": -86.78, "city": "Nashville", "country": "US"}},
        {"venue": {"lat": 52.5, "lon": 13.4, "city": "Berlin", "country": "DE"}},
        {"venue": {"city": "Nowhere"}},
        {},
    ]
    assert maps.points_of(docs) == [
        {"lat": 36.16, "lon": -86.78, "count": 2, "city": "Nashville", "country": "US"},
        {"lat": 52.5, "lon": 13.4, "count": 1, "city": "Berlin", "country": "DE"},
    ]
