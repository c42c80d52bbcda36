"""Server-rendered SVG charts for the dashboard: geometry only (pure, no I/O); the templates draw
it (``_charts.html``). Every chart has a text alternative: an ``aria-label`` with its numbers and
a table beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

LABEL_W = 150  # the label column of a bar chart
BAR_W = 360  # the longest bar
VALUE_W = 90  # room for the value after a bar
ROW_H = 26
BAR_H = 18


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # a CSS class: the series
    title: str  # shown on hover (SVG <title>)


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "start"


@dataclass
class Chart:
    """One SVG: its size, bars and texts, and the sentence a screen reader reads."""

    id: str
    title: str
    width: float
    height: float
    summary: str
    bars: list[Bar] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)

    @property
    def empty(self) -> bool:
        return not any(b.width > 0 and b.height > 0 for b in self.bars)


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def bars(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, Sequence[float | None]]],
    *,
    series: Sequence[tuple[str, str]] = (("value", ""),),
    unit: str = "",
    maximum: float | None = None,
) -> Chart:
    """Horizontal bars: a row per label, one bar per series (``(kind, name)``) in each row."""
    per_row = len(series)
    row_h = ROW_H if per_row == 1 else BAR_H * per_row + 10
    values = [v for _, vs in rows for v in vs if v is not None]
    top = maximum or max(values, default=0) or 1
    chart = Chart(
        chart_id,
        title,
        LABEL_W + BAR_W + VALUE_W,
        max(row_h * len(rows), ROW_H),
        "",
        legend=[s for s in series if s[1]] if per_row > 1 else [],
    )
    parts = []
    for i, (label, vs) in enumerate(rows):
        y0 = i * row_h + (row_h - BAR_H * per_row) / 2
        chart.texts.append(Text(LABEL_W - 8, y0 + BAR_H * per_row / 2 + 5, label, "end"))
        said = []
        for j, ((kind, name), value) in enumerate(zip(series, vs, strict=True)):
            y = y0 + j * BAR_H
            shown = "n/a" if value is None else f"{number(value)}{unit}"
            width = 0.0 if value is None else max(BAR_W * value / top, 1.0)
            tip = f"{label}{' ' + name if name else ''}: {shown}"
            chart.bars.append(Bar(LABEL_W, y + 2, width, BAR_H - 4, kind, tip))
            chart.texts.append(Text(LABEL_W + width + 6, y + BAR_H - 5, shown))
            said.append(f"{name} {shown}" if name else shown)
        parts.append(f"{label}: {', '.join(said)}")
    chart.summary = f"{title}. " + ("; ".join(parts) if parts else "No data") + "."
    return chart


def columns(
    chart_id: str,
    title: str,
    points: Sequence[tuple[datetime, int]],
    *,
    hourly: bool,
) -> Chart:
    """A column per time bucket (imports per hour or day), a time label every few columns."""
    plot_h, top_pad, axis_h = 160.0, 16.0, 22.0
    col_w = max(6.0, min(24.0, 600 / max(len(points), 1)))
    left = 36.0
    chart = Chart(chart_id, title, left + col_w * len(points) + 24, top_pad + plot_h + axis_h, "")
    top = max((n for _, n in points), default=0) or 1
    chart.texts.append(Text(left - 6, top_pad + 4, str(top), "end"))
    chart.texts.append(Text(left - 6, top_pad + plot_h, "0", "end"))
    every = 6 if hourly else 5
    for i, (start, n) in enumerate(points):
        label = start.strftime("%H:00" if hourly else "%d %b")
        when = start.strftime("%Y-%m-%d %H:00 UTC" if hourly else "%Y-%m-%d")
        height = plot_h * n / top
        x = left + i * col_w
        chart.bars.append(
            Bar(x + 1, top_pad + plot_h - height, col_w - 2, height, "value", f"{when}: {n}")
        )
        if i % every == 0 or i == len(points) - 1:
            chart.texts.append(Text(x + col_w / 2, top_pad + plot_h + 16, label, "middle"))
    busy = [f"{s.strftime('%Y-%m-%d %H:00' if hourly else '%Y-%m-%d')} {n}" for s, n in points if n]
    total = sum(n for _, n in points)
    chart.summary = (
        f"{title}. {total} in all"
        + (f"; {', '.join(busy)}" if busy else "; none in this period")
        + "."
    )
    return chart
