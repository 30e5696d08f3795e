"""Small charts for the console's pages: numbers over time drawn as inline SVG.

Pure functions, no I/O: a series of ``(epoch seconds, value or None)`` in, an SVG string
(``markupsafe.Markup``, safe to put in a Jinja2 template as it is) out. ``None`` is a missing
reading, drawn as a gap in the line, never as a zero.

The page's Content-Security-Policy allows styles only from the console's stylesheet, so the
SVG carries no ``style=`` attribute and no script: its look comes from class names, and the
few presentation attributes it has (``fill="none"`` on the line, ``currentColor``) keep it
legible without the stylesheet. Every text in it (the label may be a queue's name) is escaped.

Class names, for the stylesheet:

``chart``        the ``<svg>`` (with ``chart-empty`` when there is nothing to draw)
``chart-frame``  the rectangle of the plot: the highest value at its top, zero at its bottom
``chart-area``   the fill under the line (one closed shape per unbroken run of readings)
``chart-line``   the line (one ``M`` move per unbroken run of readings)
``chart-point``  a reading with no neighbour to join, between gaps (a dot)
``chart-label``  the text: the latest value above the plot, or "no data yet"
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

__all__ = ["NO_DATA", "format_number", "format_rate", "sparkline"]

NO_DATA = "no data yet"
#: The band above the plot that holds the latest value, and the margin around the plot that
#: keeps a line on its edge whole.
_TEXT_BAND = 14.0
_MARGIN = 2.0
_FONT_SIZE = 11
_MIN_WIDTH = 40
_MIN_HEIGHT = 24

Point = tuple[float, float | None]
Formatter = Callable[[float | None], str]


def format_number(value: float | None) -> str:
    """A reading for people: ``"-"`` for none, whole numbers as they are, others to one
    decimal, thousands and more to the unit with separators (``"1,234"``)."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.1f}"


def format_rate(value: float | None) -> str:
    """A rate per second: ``"12.3/s"``, ``"-"`` for none."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{format_number(value)}/s"


def sparkline(
    points: Sequence[Point],
    *,
    width: int = 240,
    height: int = 48,
    label: str,
    area: bool = True,
    fmt: Formatter = format_number,
) -> Markup:
    """An inline SVG line of ``points`` with the latest value printed above it.

    ``points`` are ``(epoch seconds, value or None)``, in any order (drawn by time). The
    horizontal axis runs from the first point's time to the last's; the vertical one from
    zero (or the lowest value, when below zero) at the bottom of the plot to the highest
    value at its top. A series that is all zero is a flat line at the bottom. A value that
    is ``None`` (or not finite) is a gap. ``label`` says what the chart shows (its accessible
    name and ``<title>``, with the latest value); ``fmt`` writes the values (``format_rate``
    for rates). With no reading at all the chart is an empty frame that says "no data yet".
    """
    if width < _MIN_WIDTH or height < _MIN_HEIGHT:
        raise ValueError(
            f"a sparkline is at least {_MIN_WIDTH}x{_MIN_HEIGHT}, not {width}x{height}"
        )
    ordered = sorted(((float(t), _reading(v)) for t, v in points), key=lambda point: point[0])
    readings = [v for _, v in ordered if v is not None]

    left, right = _MARGIN, width - _MARGIN
    top, bottom = _TEXT_BAND + _MARGIN, height - _MARGIN
    frame = (
        f'<rect class="chart-frame" x="{_n(left)}" y="{_n(top)}" width="{_n(right - left)}"'
        f' height="{_n(bottom - top)}" fill="none" stroke="currentColor" stroke-opacity="0.15"/>'
    )

    if not readings:
        name = f"{label}: {NO_DATA}"
        body = (
            f'<text class="chart-label" x="{_n(width / 2)}" y="{_n((top + bottom) / 2)}"'
            f' text-anchor="middle" dominant-baseline="middle" font-size="{_FONT_SIZE}"'
            f' fill="currentColor">{NO_DATA}</text>'
        )
        return _svg("chart chart-empty", width, height, name, frame + body)

    latest = ordered[-1][1]
    shown = fmt(latest)
    name = f"{label}: latest {shown}" if latest is not None else f"{label}: no latest reading"

    low = min(0.0, *readings)
    high = max(0.0, *readings)
    t_first, t_last = ordered[0][0], ordered[-1][0]

    def x_of(t: float) -> float:
        if t_last == t_first:
            return right
        return left + (t - t_first) / (t_last - t_first) * (right - left)

    def y_of(v: float) -> float:
        if high == low:  # all zero: a flat line on the floor, not a division by zero
            return bottom
        return bottom - (v - low) / (high - low) * (bottom - top)

    runs: list[list[tuple[float, float]]] = []
    run: list[tuple[float, float]] = []
    for t, v in ordered:
        if v is None:
            if run:
                runs.append(run)
            run = []
        else:
            run.append((x_of(t), y_of(v)))
    if run:
        runs.append(run)

    lines = [r for r in runs if len(r) > 1]
    dots = [r[0] for r in runs if len(r) == 1]
    parts = [frame]
    if area and lines:
        base = y_of(0.0)
        shapes = " ".join(
            f"M{_n(r[0][0])} {_n(base)} L{_through(r)} L{_n(r[-1][0])} {_n(base)} Z" for r in lines
        )
        parts.append(
            f'<path class="chart-area" d="{shapes}" fill="currentColor" fill-opacity="0.15"'
            ' stroke="none"/>'
        )
    if lines:
        strokes = " ".join(f"M{_through(r)}" for r in lines)
        parts.append(
            f'<path class="chart-line" d="{strokes}" fill="none" stroke="currentColor"'
            ' stroke-width="1.5" stroke-linejoin="round"/>'
        )
    parts.extend(
        f'<circle class="chart-point" cx="{_n(x)}" cy="{_n(y)}" r="1.5" fill="currentColor"/>'
        for x, y in dots
    )
    parts.append(
        f'<text class="chart-label" x="{_n(right)}" y="{_n(_TEXT_BAND - 3)}" text-anchor="end"'
        f' font-size="{_FONT_SIZE}" fill="currentColor">{escape(shown)}</text>'
    )
    return _svg("chart", width, height, name, "".join(parts))


def _reading(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _through(run: list[tuple[float, float]]) -> str:
    """``x y L x y L x y`` through a run's points (after an ``M`` or an ``L``)."""
    return " L".join(f"{_n(x)} {_n(y)}" for x, y in run)


def _svg(classes: str, width: int, height: int, name: str, body: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{classes}" role="img"'
        f' aria-label="{escape(name)}" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}"><title>{escape(name)}</title>{body}</svg>'
    )


def _n(number: float) -> str:
    """A coordinate, to the hundredth, without trailing zeros."""
    text = f"{number:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
