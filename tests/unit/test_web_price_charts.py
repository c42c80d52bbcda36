"""The price history's line charts: geometry, summaries, empty charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.web.price_charts import HEIGHT, LEFT, RIGHT, WIDTH, lines, price_charts

T0 = datetime(2027, 5, 1, 9, tzinfo=UTC)


def test_a_line_per_series_scaled_to_the_plot() -> None:
    chart = lines(
        "p",
        "Lowest price",
        [
            ("SeatGeek 1", [(T0, 40.0), (T0 + timedelta(days=2), 80.0)]),
            ("Ticketmaster 2", [(T0 + timedelta(days=1), None)]),
        ],
    )
    assert not chart.empty
    first, second = chart.lines
    assert [(x, y) for x, y, _ in first.dots] == [(LEFT, 104.0), (WIDTH - RIGHT, 14.0)]
    assert first.points == f"{LEFT:.1f},104.0 {WIDTH - RIGHT:.1f},14.0"
    assert (first.kind, second.kind, second.dots) == ("s0", "s1", [])
    assert chart.summary == (
        "Lowest price, 2027-05-01 to 2027-05-03. SeatGeek 1: 40 to 80; Ticketmaster 2: no data."
    )
    assert first.dots[0][2] == "SeatGeek 1 2027-05-01 09:00 UTC: 40"
    assert all(0 <= y <= HEIGHT for _, y, _ in first.dots)


def test_one_point_sits_in_the_middle_and_no_points_is_empty() -> None:
    one = lines("l", "Listings", [("SeatGeek 1", [(T0, 0.0)])])
    assert one.lines[0].dots[0][0] == LEFT + (WIDTH - LEFT - RIGHT) / 2
    empty = lines("l", "Listings", [("SeatGeek 1", [])])
    assert empty.empty
    assert empty.summary == "Listings. No data."
    series = [{"key": "seatgeek:1", "points": [{"t": T0, "min": 10.0, "listings": 5}]}]
    price, listings = price_charts(series, {"seatgeek:1": "SeatGeek 1"})
    assert (price.id, listings.id) == ("lowest-price", "listings")
    assert listings.summary.endswith("SeatGeek 1: 5 to 5.")
