"""Strict JSON first; then a small, documented, deterministic repair of the sender's mistakes.

The vendor's documentation publishes callback bodies that are not valid JSON, in exactly
three ways. :func:`load_json` parses strictly; only when that fails does it look at the
place the strict parser stopped and apply the one rule that fits there, then parse again:

1. **Trailing comma**: a ``,`` whose next non-blank character is ``}`` or ``]`` is removed.
2. **Missing comma before a key**: where a ``,`` was expected and the next token is a
   string followed by ``:`` that starts on a later line than the value before it ends, a
   ``,`` is inserted after that value.
3. **Over-escaped quote**: where a string seemingly ended with ``\\\\"`` and the text goes
   on with no line break as if the string had not ended (``"\\\\"d5a4...\\\\""``), the
   doubled backslash is made single, so the quote is an escaped quote inside the string.

Nothing else is repaired: at most :data:`MAX_REPAIRS` repairs, and any other error (for
instance brackets that do not balance, which the error message then points at) is a
:class:`~shared.errors.ParseError`. Each repair applied is described (rule, line, column
in the body as received) so the event can say it was repaired and how.

The values themselves are read so that nothing is lost or unbounded: a key repeated in one
object keeps all its values as a list (as XML repeats an element); numbers longer than
:data:`MAX_NUMBER_LENGTH` characters, ``NaN``, ``Infinity`` and non-finite floats are
refused; nesting deeper than :data:`MAX_DEPTH` is refused.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from shared.errors import ParseError

__all__ = ["MAX_DEPTH", "MAX_NUMBER_LENGTH", "MAX_REPAIRS", "load_json"]

MAX_REPAIRS = 32
MAX_NUMBER_LENGTH = 40
MAX_DEPTH = 64

_BLANK = " \t\r\n"
_VALUE_END = frozenset('"0123456789}]el')  # last character of a complete JSON value
_KEY_AHEAD = re.compile(r'"(?:[^"\\\n]|\\.)*"[ \t\r\n]*:')
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class _BadNumber(ValueError):
    def __init__(self, text: str, reason: str) -> None:
        super().__init__(reason)
        self.text = text
        self.reason = reason


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_LENGTH:
        raise _BadNumber(text, f"a number of {len(text)} characters is too long")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_LENGTH:
        raise _BadNumber(text, f"a number of {len(text)} characters is too long")
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(text, f"the number {text} is out of range")
    return value


def _parse_constant(text: str) -> Any:
    raise _BadNumber(text, f"{text} is not a JSON value")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    merged: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for key, _ in pairs:
        counts[key] = counts.get(key, 0) + 1
    for key, value in pairs:
        if counts[key] == 1:
            merged[key] = value
        else:
            merged.setdefault(key, []).append(value)
    return merged


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
)


def load_json(text: str) -> tuple[Any, tuple[str, ...]]:
    """Parse ``text``; returns the value and the repairs applied (empty when valid)."""
    original = text
    repairs: list[str] = []
    edits: list[tuple[int, int]] = []  # (position in the current text, +1 inserted / -1 removed)
    while True:
        try:
            value = _DECODER.decode(text)
        except _BadNumber as bad:
            raise ParseError(bad.reason, _where(original, original.find(bad.text))) from None
        except RecursionError:
            raise ParseError(f"JSON nests deeper than {MAX_DEPTH} levels") from None
        except json.JSONDecodeError as err:
            if len(repairs) >= MAX_REPAIRS:
                raise ParseError(
                    f"invalid JSON: still invalid after {MAX_REPAIRS} repairs: {err.msg}",
                    _where(original, _original_position(edits, err.pos)),
                ) from None
            fix = _repair(text, err.pos)
            if fix is None:
                position = _original_position(edits, err.pos)
                raise ParseError(
                    f"invalid JSON: {err.msg}{_bracket_hint(original)}",
                    _where(original, position),
                ) from None
            at, delta, rule = fix
            place = _where(original, _original_position(edits, at))
            repairs.append(f"{rule} at {place}")
            text = text[:at] + ("," if delta > 0 else "") + text[at + (1 if delta < 0 else 0) :]
            edits.append((at, delta))
            continue
        _check_depth(text, value)
        return value, tuple(repairs)


def _repair(text: str, pos: int) -> tuple[int, int, str] | None:
    """The one documented repair that fits where strict parsing stopped, if any.

    Returns ``(position, +1 to insert a comma there / -1 to delete the character there,
    description)``.
    """
    # 1. trailing comma after a value: the parser stops on the closing bracket (or, in
    #    newer Pythons, on the comma itself)
    comma = -1
    if pos < len(text) and text[pos] in "}]":
        comma = _previous_non_blank(text, pos)
    elif pos < len(text) and text[pos] == ",":
        after = _next_non_blank(text, pos + 1)
        if after < len(text) and text[after] in "}]":
            comma = pos
    if comma >= 0 and text[comma] == ",":
        before = _previous_non_blank(text, comma)
        if before >= 0 and text[before] in _VALUE_END:
            return comma, -1, "removed a trailing comma"
        return None
    end = _previous_non_blank(text, pos)
    if end < 0:
        return None
    gap = text[end + 1 : pos]
    # 3. over-escaped quote: the string "ended" with \\" and the text goes on, same line
    if text[end] == '"' and "\n" not in gap and "\r" not in gap:
        slashes = _backslashes_before(text, end)
        if slashes >= 2 and slashes % 2 == 0:
            return end - 1, -1, "made an over-escaped quote an escaped quote"
        return None
    # 2. missing comma between a value and the next key on a later line
    if (
        text[end] in _VALUE_END
        and ("\n" in gap or "\r" in gap)
        and _KEY_AHEAD.match(text, pos) is not None
    ):
        return end + 1, +1, "inserted a missing comma"
    return None


def _previous_non_blank(text: str, pos: int) -> int:
    i = pos - 1
    while i >= 0 and text[i] in _BLANK:
        i -= 1
    return i


def _next_non_blank(text: str, pos: int) -> int:
    i = pos
    while i < len(text) and text[i] in _BLANK:
        i += 1
    return i


def _backslashes_before(text: str, pos: int) -> int:
    i = pos - 1
    while i >= 0 and text[i] == "\\":
        i -= 1
    return pos - 1 - i


def _original_position(edits: list[tuple[int, int]], pos: int) -> int:
    """Map a position in the repaired text back to the body as received."""
    for at, delta in reversed(edits):
        if delta > 0 and pos > at:
            pos -= 1
        elif delta < 0 and pos >= at:
            pos += 1
    return pos


def _where(text: str, pos: int) -> str:
    if pos < 0:
        return "unknown position"
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _bracket_hint(text: str) -> str:
    """Name the first bracket that does not balance, if that is what is wrong."""
    opened: list[tuple[str, int]] = []
    pairs = {"}": "{", "]": "["}
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            opened.append((char, token.start()))
        elif char in "]}":
            here = _where(text, token.start())
            if not opened:
                return f"; brackets do not balance: {char!r} at {here} closes nothing"
            want, start = opened.pop()
            if pairs[char] != want:
                return (
                    f"; brackets do not balance: {char!r} at {here} "
                    f"closes {want!r} opened at {_where(text, start)}"
                )
    if opened:
        want, start = opened[-1]
        opened_at = _where(text, start)
        return f"; brackets do not balance: {want!r} opened at {opened_at} is never closed"
    return ""


def _check_depth(text: str, value: Any) -> None:
    # Cheap bound first: fewer opening brackets than the limit cannot nest deeper.
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return
    if type(value) is not dict and type(value) is not list:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ParseError(f"JSON nests deeper than {MAX_DEPTH} levels")
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
