"""Helpers of the parser tests: where the fixtures are, how to write a tree as a callback
body (XML or JSON), and how to check that a value of the body is reachable from an event."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from xml.sax.saxutils import escape

from shared.callbacks.events import CallbackEvent
from shared.callbacks.parser import parse_callback
from shared.callbacks.vendor import parse_vendor_time

__all__ = [
    "CALLBACKS",
    "SEEDS",
    "assert_reachable",
    "parse_file",
    "some",
    "to_json",
    "to_xml",
]

_T = TypeVar("_T")

FIXTURES = Path(__file__).parent.parent / "fixtures"
SEEDS = Path(__file__).resolve().parents[2] / "workers" / "testing" / "seeds"
#: The vendor's example callbacks (the seeds folder is a package: its code is not one).
SEED_FILES = sorted(p for p in SEEDS.iterdir() if p.suffix in (".xml", ".json"))
CALLBACKS = FIXTURES / "callbacks"


def parse_file(path: Path) -> list[CallbackEvent]:
    return parse_callback(path.read_bytes())


def some(value: _T | None) -> _T:
    """``value``, which must be there (narrows an optional field for the type checker)."""
    assert value is not None
    return value


# -- writing a tree (dicts, lists, strings, numbers) as a body --------------------------


def to_xml(tree: dict[str, Any], root: str = "Response", *, prolog: bool = False) -> bytes:
    """A tree as XML, the sender's way: a list is a run of repeated elements."""
    parts: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n'] if prolog else []
    _xml_element(root, tree, parts)
    return "".join(parts).encode()


def _xml_element(name: str, value: Any, parts: list[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _xml_element(name, item, parts)
        return
    if isinstance(value, dict):
        parts.append(f"<{name}>\n")
        for key, child in value.items():
            _xml_element(key, child, parts)
        parts.append(f"</{name}>\n")
        return
    text = _xml_text(value)
    parts.append(f"<{name}>{escape(text)}</{name}>\n" if text else f"<{name}/>\n")


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def to_json(tree: dict[str, Any], *, wrap: bool = False) -> bytes:
    """A tree as JSON; with ``wrap``, inside ``{"Response": ...}``."""
    return json.dumps({"Response": tree} if wrap else tree, ensure_ascii=False).encode()


# -- reachability -------------------------------------------------------------------------


def assert_reachable(expected: Any, actual: Any, path: str = "") -> None:
    """Every leaf of ``expected`` (a body tree) is in ``actual`` (an event dumped by alias).

    The sender's equivalent spellings count as equal: one item or a list of one; a number
    or a boolean as text or as a value; a blank, ``None``, an empty list or object; a time
    as text or as a datetime, and ``-`` as no time.
    """
    if _blank(expected):
        assert _blank(actual), f"{path}: expected nothing, got {actual!r}"
        return
    if isinstance(expected, dict):
        if isinstance(actual, list) and len(actual) == 1:
            actual = actual[0]
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key}: missing (have {sorted(actual)})"
            assert_reachable(value, actual[key], f"{path}.{key}")
        return
    if isinstance(expected, list):
        # Typed lists drop blank items (an empty element in a run); untyped ones keep them.
        expected = [item for item in expected if not _blank(item)]
        if len(expected) == 1 and not isinstance(actual, list):
            assert_reachable(expected[0], actual, path)
            return
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        actual = [item for item in actual if not _blank(item)]
        assert len(actual) == len(expected), f"{path}: {len(actual)} items, not {len(expected)}"
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_reachable(want, got, f"{path}[{i}]")
        return
    if isinstance(actual, list) and len(actual) == 1:
        actual = actual[0]
    assert _same_leaf(expected, actual), f"{path}: {expected!r} became {actual!r}"


def _blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value or value.isspace()
    return value is None or (isinstance(value, list | dict) and not value)


def _same_leaf(expected: Any, actual: Any) -> bool:
    if actual is None:  # "-" is how the sender writes an unset time
        return isinstance(expected, str) and expected.strip() == "-"
    if isinstance(actual, bool):
        return str(expected).strip().lower() in ({"true", "1"} if actual else {"false", "0"})
    if isinstance(actual, int | float):
        return float(expected) == float(actual)
    if isinstance(actual, datetime):
        return bool(parse_vendor_time(expected) == actual)
    if isinstance(expected, bool):  # the same truth value, spelled as text
        return actual in ("true", "True") if expected else actual in ("false", "False")
    return bool(str(expected) == actual)
