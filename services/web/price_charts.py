"""Line charts of price and listing history (server-rendered SVG, pure geometry): a line per
provider record over time; the page (``prices.html``) gives every point in a table too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.web.charts import number

WIDTH, HEIGHT = 640.0, 220.0
LEFT, RIGHT, TOP, BOTTOM = 56.0, 16.0, 14.0, 26.0
KINDS = ("s0", "s1", "s2", "s3", "s4")  # CSS classes of the lines, in member order


@dataclass(frozen=True)
class Line:
    kind: str
    name: str
    points: str  # SVG polyline points, "x,y x,y"
    dots: list[tuple[float, float, str]]  # (x, y, hover title)


@dataclass
class LineChart:
    id: str
    title: str
    summary: str
    width: float = WIDTH
    height: float = HEIGHT
    lines: list[Line] = field(default_factory=list)
    labels: list[tuple[float, float, str, str]] = field(default_factory=list)  # x, y, text, anchor

    @property
    def empty(self) -> bool:
        return not any(line.dots for line in self.lines)


def lines(
    chart_id: str,
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[datetime, float | None]]]],
    *,
    unit: str = "",
) -> LineChart:
    """``series``: (name, [(t, value)]) each; values of None leave a point out."""
    known = [(t, v) for _, pts in series for t, v in pts if v is not None]
    chart = LineChart(chart_id, title, "")
    if not known:
        chart.summary = f"{title}. No data."
        return chart
    t0 = min(t for t, _ in known)
    t1 = max(t for t, _ in known)
    span = (t1 - t0).total_seconds() or 1.0
    low = min(0.0, min(v for _, v in known))
    high = max(v for _, v in known) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: datetime) -> float:
        return LEFT + plot_w * ((t - t0).total_seconds() / span if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / ((high - low) or 1.0))

    said = []
    for i, (name, pts) in enumerate(series):
        shown = [(t, v) for t, v in pts if v is not None]
        dots = [(x(t), y(v), f"{name} {t:%Y-%m-%d %H:%M} UTC: {number(v)}{unit}") for t, v in shown]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in dots)
        chart.lines.append(Line(KINDS[i % len(KINDS)], name, path, dots))
        if shown:
            first, last = shown[0][1], shown[-1][1]
            said.append(f"{name}: {number(first)}{unit} to {number(last)}{unit}")
        else:
            said.append(f"{name}: no data")
    chart.labels += [
        (LEFT - 6, y(high) + 4, f"{number(high)}{unit}", "end"),
        (LEFT - 6, y(low) + 4, f"{number(low)}{unit}", "end"),
        (LEFT, HEIGHT - 6, f"{t0:%d %b %H:%M}", "start"),
        (WIDTH - RIGHT, HEIGHT - 6, f"{t1:%d %b %H:%M}", "end"),
    ]
    chart.summary = f"{title}, {t0:%Y-%m-%d} to {t1:%Y-%m-%d}. " + "; ".join(said) + "."
    return chart


def price_charts(series: Sequence[dict[str, Any]], names: dict[str, str]) -> list[LineChart]:
    """The lowest price and the listings of each record (``services.api.prices`` items)."""

    def of(field_name: str) -> list[tuple[str, list[tuple[datetime, float | None]]]]:
        return [
            (names.get(s["key"], s["key"]), [(p["t"], p.get(field_name)) for p in s["points"]])
            for s in series
        ]

    return [
        lines("lowest-price", "Lowest price over time", of("min")),
        lines("listings", "Listings on sale over time", of("listings")),
    ]
