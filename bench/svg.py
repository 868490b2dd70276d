"""A small SVG line chart: the few plots docs/performance.md shows, without a plotting library.

Deterministic output (fixed number formats, no ids or dates), so regenerating a plot
from the same results changes nothing in the repository.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

# Colour-blind safe (Okabe and Ito), in the order series are drawn.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
WIDTH, HEIGHT = 640, 360
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 36, 48
LEGEND_ROW = 18


@dataclass(frozen=True)
class Series:
    """One line. `step`: drawn as a staircase (an empirical distribution); `markers`: a dot
    on each point (few measured points, as in a ramp)."""

    name: str
    points: Sequence[tuple[float, float]]
    step: bool = False
    markers: bool = False


@dataclass(frozen=True)
class Chart:
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    # Horizontal reference lines: (y, label), e.g. a pass threshold.
    rules: Sequence[tuple[float, str]] = field(default_factory=tuple)
    x_range: tuple[float, float] | None = None  # default: the data's, from 0
    y_range: tuple[float, float] | None = None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten) covering low..high."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def _span(values: list[float], given: tuple[float, float] | None) -> tuple[float, float]:
    if given is not None:
        return given
    ticks = nice_ticks(min(0.0, *values), max(values) if values else 1.0)
    return ticks[0], ticks[-1]


def render(chart: Chart) -> str:
    """The chart as a standalone SVG document."""
    xs = [x for s in chart.series for x, _ in s.points]
    ys = [y for s in chart.series for _, y in s.points] + [y for y, _ in chart.rules]
    x0, x1 = _span(xs, chart.x_range)
    y0, y1 = _span(ys, chart.y_range)
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM

    def px(x: float) -> float:
        return left + (min(max(x, x0), x1) - x0) / (x1 - x0) * (right - left)

    def py(y: float) -> float:
        return bottom - (min(max(y, y0), y1) - y0) / (y1 - y0) * (bottom - top)

    total_height = HEIGHT + LEGEND_ROW * len(chart.series) + 4
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {total_height}" '
        f'width="{WIDTH}" height="{total_height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{total_height}" fill="#ffffff"/>',
        f'<text x="{WIDTH / 2:.1f}" y="20" text-anchor="middle" font-size="14" '
        f'font-weight="bold">{escape(chart.title)}</text>',
    ]
    for tick in (t for t in nice_ticks(x0, x1) if x0 <= t <= x1):
        x = px(tick)
        label = f'x="{x:.1f}" y="{bottom + 16}" text-anchor="middle"'
        out.append(_grid_line((x, top), (x, bottom), label, tick))
    for tick in (t for t in nice_ticks(y0, y1) if y0 <= t <= y1):
        y = py(tick)
        label = f'x="{left - 6}" y="{y + 4:.1f}" text-anchor="end"'
        out.append(_grid_line((left, y), (right, y), label, tick))
    out.append(
        f'<path d="M{left},{top} V{bottom} H{right}" fill="none" stroke="#333333"/>'
        f'<text x="{(left + right) / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
        f"{escape(chart.x_label)}</text>"
        f'<text transform="translate(16 {(top + bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(chart.y_label)}</text>'
    )
    for y, label in chart.rules:
        out.append(
            f'<line x1="{left}" y1="{py(y):.1f}" x2="{right}" y2="{py(y):.1f}" '
            f'stroke="#666666" stroke-dasharray="5 4"/>'
            f'<text x="{left + 6}" y="{py(y) - 5:.1f}" fill="#444444">{escape(label)}</text>'
        )
    for i, series in enumerate(chart.series):
        out.extend(_line(series, COLOURS[i % len(COLOURS)], px, py))
    out.extend(_legend(chart, left, HEIGHT + LEGEND_ROW / 2))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _grid_line(
    start: tuple[float, float], end: tuple[float, float], label_at: str, tick: float
) -> str:
    return (
        f'<line x1="{start[0]:.1f}" y1="{start[1]:.1f}" x2="{end[0]:.1f}" y2="{end[1]:.1f}" '
        f'stroke="#e6e6e6"/><text {label_at}>{_number(tick)}</text>'
    )


def _legend(chart: Chart, left: float, top: float) -> list[str]:
    """A key under the plot, one row per line: it never hides a line."""
    out = []
    for i, series in enumerate(chart.series):
        row = top + LEGEND_ROW * i
        out.append(
            f'<line x1="{left}" y1="{row:.1f}" x2="{left + 24}" y2="{row:.1f}" '
            f'stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="2.5"/>'
            f'<text x="{left + 30}" y="{row + 4:.1f}">{escape(series.name)}</text>'
        )
    return out


def _line(
    series: Series, colour: str, px: Callable[[float], float], py: Callable[[float], float]
) -> list[str]:
    points = sorted(series.points)
    if not points:
        return []
    coords: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(points):
        if series.step and i:
            coords.append((px(x), coords[-1][1]))
        coords.append((px(x), py(y)))
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    shapes = [
        f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
        f'stroke-linejoin="round"/>'
    ]
    if series.markers:
        shapes += [
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}"/>'
            for x, y in points
        ]
    return shapes
