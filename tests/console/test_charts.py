"""The console's sparklines: where the line goes for the numbers given, the gaps, the text
and its escaping, read back from the SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

import pytest
from jinja2 import Environment
from markupsafe import Markup

from callback_fanout.console.charts import NO_DATA, format_number, format_rate, sparkline

SVG = "{http://www.w3.org/2000/svg}"
Segment = list[tuple[float, float]]


def _parsed(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    return ET.fromstring(str(svg))


def _one(root: ET.Element, tag: str, cls: str) -> ET.Element:
    found = [e for e in root.iter(SVG + tag) if cls in e.get("class", "").split()]
    assert len(found) == 1, (tag, cls, found)
    return found[0]


def _all(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(SVG + tag) if cls in e.get("class", "").split()]


def _segments(d: str) -> list[Segment]:
    """A path's ``M`` and ``L`` points, one list per ``M`` (``Z`` closes, adds nothing)."""
    segments: list[Segment] = []
    tokens = re.findall(r"([MLZ])\s*(?:(-?[\d.]+)\s+(-?[\d.]+))?", d)
    assert "".join(t[0] for t in tokens) == re.sub(r"[^MLZ]", "", d), d
    for command, x, y in tokens:
        if command == "M":
            segments.append([(float(x), float(y))])
        elif command == "L":
            segments[-1].append((float(x), float(y)))
    return segments


def _line(root: ET.Element) -> list[Segment]:
    return _segments(_one(root, "path", "chart-line").attrib["d"])


def _box(root: ET.Element) -> tuple[float, float, float, float]:
    """left, top, right, bottom of the plot."""
    frame = _one(root, "rect", "chart-frame")
    x, y = float(frame.attrib["x"]), float(frame.attrib["y"])
    return x, y, x + float(frame.attrib["width"]), y + float(frame.attrib["height"])


def _label(root: ET.Element) -> str:
    return _one(root, "text", "chart-label").text or ""


def _chart(
    points: Sequence[tuple[float, float | None]],
    *,
    label: str = "events",
    width: int = 240,
    height: int = 48,
    area: bool = True,
    fmt: Callable[[float | None], str] = format_number,
) -> ET.Element:
    return _parsed(sparkline(points, label=label, width=width, height=height, area=area, fmt=fmt))


def test_the_highest_value_is_at_the_top_of_the_box_zero_at_the_bottom_time_across() -> None:
    root = _chart([(1000, 0.0), (1030, 5.0), (1040, 10.0)])
    left, top, right, bottom = _box(root)
    assert _line(root) == [
        [(left, bottom), (left + 0.75 * (right - left), (top + bottom) / 2), (right, top)]
    ]
    assert left >= 0
    assert top > 0  # room for the latest value above the plot
    assert right <= 240
    assert bottom <= 48


def test_the_box_and_the_drawing_take_the_size_asked_for() -> None:
    root = _chart([(0, 1.0), (1, 2.0)], width=400, height=80)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "400",
        "80",
        "0 0 400 80",
    )
    left, top, right, bottom = _box(root)
    assert 0 < right - left <= 400
    assert 0 < bottom - top <= 80
    assert _line(root) == [[(left, top + (bottom - top) / 2), (right, top)]]


def test_a_missing_reading_is_a_gap_that_starts_a_new_segment_not_a_zero() -> None:
    gap = _chart([(0, 1.0), (1, 2.0), (2, None), (3, 3.0), (4, 4.0)])
    zero = _chart([(0, 1.0), (1, 2.0), (2, 0.0), (3, 3.0), (4, 4.0)])
    _, _, _, bottom = _box(gap)

    gap_segments = _line(gap)
    assert [len(s) for s in gap_segments] == [2, 2]
    assert all(y < bottom for s in gap_segments for _, y in s)  # nothing drawn at zero
    assert _one(gap, "path", "chart-line").attrib["d"].count("M") == 2

    (zero_segment,) = _line(zero)
    assert len(zero_segment) == 5
    assert zero_segment[2][1] == bottom


def test_the_area_under_the_line_follows_each_segment_down_to_zero() -> None:
    root = _chart([(0, 2.0), (1, 4.0), (2, None), (3, 4.0), (4, 2.0)])
    _, _, _, bottom = _box(root)
    area = _one(root, "path", "chart-area").attrib["d"]
    assert area.count("Z") == 2
    shapes = _segments(area)
    for shape, line in zip(shapes, _line(root), strict=True):
        assert shape[1:-1] == line
        assert shape[0] == (line[0][0], bottom)
        assert shape[-1] == (line[-1][0], bottom)

    assert _all(_chart([(0, 2.0), (1, 4.0)], area=False), "path", "chart-area") == []


def test_a_reading_alone_between_gaps_is_a_dot_not_an_invisible_move() -> None:
    root = _chart([(0, 1.0), (1, 2.0), (2, None), (3, 4.0), (4, None), (5, 2.0), (6, 1.0)])
    _, top, _, _ = _box(root)
    assert [len(s) for s in _line(root)] == [2, 2]
    (dot,) = _all(root, "circle", "chart-point")
    assert float(dot.attrib["cy"]) == top  # 4.0, the highest

    single = _chart([(100, 3.0)])
    _, top, right, _ = _box(single)
    assert _all(single, "path", "chart-line") == []
    (dot,) = _all(single, "circle", "chart-point")
    assert (float(dot.attrib["cx"]), float(dot.attrib["cy"])) == (right, top)
    assert _label(single) == "3"


@pytest.mark.parametrize(("value", "where"), [(0.0, "bottom"), (7.5, "top")])
def test_a_constant_series_is_a_flat_line(value: float, where: str) -> None:
    root = _chart([(0, value), (10, value), (20, value)])
    _, top, _, bottom = _box(root)
    (segment,) = _line(root)
    assert {y for _, y in segment} == {bottom if where == "bottom" else top}
    assert "nan" not in ET.tostring(root, encoding="unicode").lower()


def test_values_below_zero_put_zero_above_the_bottom() -> None:
    root = _chart([(0, -5.0), (1, 0.0), (2, 5.0)])
    _, top, _, bottom = _box(root)
    (segment,) = _line(root)
    assert [y for _, y in segment] == [bottom, (top + bottom) / 2, top]


def test_not_finite_values_are_gaps() -> None:
    root = _chart([(0, 1.0), (1, 2.0), (2, float("nan")), (3, float("inf")), (4, 1.0), (5, 2.0)])
    assert [len(s) for s in _line(root)] == [2, 2]


def test_points_are_drawn_in_time_order() -> None:
    root = _chart([(20, 10.0), (0, 0.0), (10, 5.0)])
    left, top, right, bottom = _box(root)
    assert _line(root) == [[(left, bottom), ((left + right) / 2, (top + bottom) / 2), (right, top)]]
    assert _label(root) == "10"


def test_it_names_what_it_shows_and_the_latest_value_and_prints_the_value() -> None:
    root = _chart([(0, 3.0), (1, 12.34)], label="orders queue rate", fmt=format_rate)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "orders queue rate: latest 12.3/s"
    assert root.findtext(SVG + "title") == "orders queue rate: latest 12.3/s"
    assert _label(root) == "12.3/s"
    assert root.get("class") == "chart"


def test_a_latest_point_without_a_reading_says_so_rather_than_an_older_value() -> None:
    root = _chart([(0, 3.0), (1, 4.0), (2, None)], label="depth")
    assert root.get("aria-label") == "depth: no latest reading"
    assert _label(root) == "-"


@pytest.mark.parametrize("points", [[], [(0, None), (1, None)]], ids=["no points", "no readings"])
def test_an_empty_series_is_an_empty_frame_that_says_no_data_yet(
    points: list[tuple[float, float | None]],
) -> None:
    root = _chart(points, label="ack latency")
    assert root.get("class") == "chart chart-empty"
    assert root.get("aria-label") == f"ack latency: {NO_DATA}"
    assert root.findtext(SVG + "title") == f"ack latency: {NO_DATA}"
    assert _label(root) == "no data yet"
    _box(root)  # the frame is there
    assert list(root.iter(SVG + "path")) == []
    assert list(root.iter(SVG + "circle")) == []


HOSTILE = "\"><script>alert(1)</script><b onload='x'>&amp;</title>"


@pytest.mark.parametrize("points", [[(0, 1.0), (1, 2.0)], []], ids=["data", "empty"])
def test_every_text_is_escaped(points: list[tuple[float, float | None]]) -> None:
    svg = sparkline(points, label=HOSTILE, fmt=lambda _: "<script>x</script>")
    assert "<script" not in svg
    assert "<b " not in svg
    assert svg.count("</title>") == 1
    root = _parsed(svg)
    assert root.get("aria-label", "").startswith(HOSTILE)
    assert (root.findtext(SVG + "title") or "").startswith(HOSTILE)
    assert [e.tag for e in root.iter()].count(SVG + "title") == 1
    if points:
        assert _label(root) == "<script>x</script>"
    # and through a template that escapes everything, it stays as it is: no double escaping
    page = Environment(autoescape=True).from_string("{{ chart }}").render(chart=svg)
    assert page == str(svg)


def test_no_inline_style_and_no_script_for_the_content_security_policy() -> None:
    for points in ([(0, 1.0), (1, None), (2, 3.0), (3, 2.0), (4, None), (5, 1.0)], []):
        root = _chart(points)
        for element in root.iter():
            assert "style" not in element.attrib
            assert not any(name.lower().startswith("on") for name in element.attrib)
            assert element.tag.removeprefix(SVG) not in {"script", "style", "foreignObject"}
            assert "id" not in element.attrib  # many charts on one page


def test_a_chart_too_small_to_hold_its_text_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        sparkline([(0, 1.0)], width=20, height=48, label="x")
    with pytest.raises(ValueError, match="at least"):
        sparkline([(0, 1.0)], width=240, height=10, label="x")


@pytest.mark.parametrize(
    ("value", "number", "rate"),
    [
        (None, "-", "-"),
        (float("nan"), "-", "-"),
        (0.0, "0", "0/s"),
        (12.0, "12", "12/s"),
        (12.34, "12.3", "12.3/s"),
        (0.25, "0.2", "0.2/s"),
        (999.94, "999.9", "999.9/s"),
        (1500.2, "1,500", "1,500/s"),
        (-3.0, "-3", "-3/s"),
    ],
)
def test_formatting(value: float | None, number: str, rate: str) -> None:
    assert format_number(value) == number
    assert format_rate(value) == rate
