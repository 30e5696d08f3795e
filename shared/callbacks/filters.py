"""Declarative filters on an event's fields: ``{"input.bucket_id": "media-prod",
"code": ["Success", "0"]}``.

Each key is a dotted path of the event model's field names (snake_case, or the vendor's
names); each value is the one value it must have, or a list of the values it may have. An
event passes when every path matches. The paths are checked against the model when the
filter is made, so a misspelt one is an error at declaration, not an event that never
passes: a path may go into a sub-model (``input.bucket_id``), into any of the operation
models (``operation.result``), and freely into a mapping (``envelope.headers.x-trace``).

A value compares equal to a field of the same value, and a text value also matches a field
whose text is that text (``"0"`` matches a number 0; ``"true"`` a boolean True).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from shared.callbacks.events import CallbackEvent

__all__ = ["EventFilter", "FilterValue"]

#: A value a filter accepts: a scalar, or a list of them (any of).
FilterValue = str | int | float | bool | Sequence[str | int | float | bool]

_SCALARS = (str, int, float, bool)


@dataclass(frozen=True, slots=True)
class _Clause:
    path: tuple[str, ...]
    accepted: tuple[str | int | float | bool, ...]

    def accepts(self, event: CallbackEvent) -> bool:
        value: Any = event
        for name in self.path:
            if value is None:
                return False
            value = value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)
        return any(_same(value, wanted) for wanted in self.accepted)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """A filter, checked against the event model; ``accepts(event)`` at delivery."""

    clauses: tuple[_Clause, ...]

    @classmethod
    def of(cls, spec: Mapping[str, FilterValue]) -> EventFilter:
        """The filter of ``spec``; ``ValueError`` naming the first path or value that is
        wrong."""
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError("filter must be a non-empty table of dotted field paths")
        clauses = []
        for key, value in spec.items():
            path = _resolve(str(key))
            values: list[Any] = list(value) if isinstance(value, list | tuple) else [value]
            if not values or not all(isinstance(v, _SCALARS) for v in values):
                raise ValueError(
                    f"filter {key!r}: the value must be a string, number or boolean, "
                    "or a non-empty list of them"
                )
            clauses.append(_Clause(path, tuple(values)))
        return cls(tuple(clauses))

    def accepts(self, event: CallbackEvent) -> bool:
        return all(clause.accepts(event) for clause in self.clauses)

    def as_dict(self) -> dict[str, list[str | int | float | bool]]:
        return {".".join(c.path): list(c.accepted) for c in self.clauses}


def _same(value: Any, wanted: str | int | float | bool) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return _text(value) == _text(wanted)
    return bool(value == wanted) or (isinstance(wanted, str) and _text(value) == wanted)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value is not None else ""


def _resolve(dotted: str) -> tuple[str, ...]:
    """The attribute names of ``dotted`` in the event model; ``ValueError`` if it is not
    one of its paths."""
    words = dotted.split(".")
    if not all(words):
        raise ValueError(f"filter {dotted!r}: not a dotted path of field names")
    models: list[type[BaseModel]] = [CallbackEvent]
    names: list[str] = []
    for i, word in enumerate(words):
        if not models:  # inside a mapping: any key
            names.extend(words[i:])
            break
        found = [(m, _field_of(m, word)) for m in models]
        hits = [(m, name) for m, name in found if name is not None]
        if not hits:
            where = ".".join(words[:i]) or "the event"
            known = sorted({n for m in models for n in m.model_fields})
            fields = ", ".join(known)
            raise ValueError(f"filter {dotted!r}: {where} has no field {word!r} ({fields})")
        name = hits[0][1]
        assert name is not None
        names.append(name)
        annotations = [m.model_fields[name].annotation for m, _ in hits]
        below = [_inside(a) for a in annotations]
        if i < len(words) - 1 and not any(b is not None for b in below):
            raise ValueError(f"filter {dotted!r}: {'.'.join(words[: i + 1])} has no fields")
        models = [m for b in below if b is not None for m in b]
    return tuple(names)


def _field_of(model: type[BaseModel], word: str) -> str | None:
    for name, info in model.model_fields.items():
        if word in (name, info.alias):
            return name
    return None


def _inside(annotation: Any) -> list[type[BaseModel]] | None:
    """The models a field of ``annotation`` may hold (empty: a mapping, any key below);
    None: a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return []
    if origin is typing.Annotated or origin in (typing.Union, types.UnionType):
        found: list[type[BaseModel]] | None = None
        for arg in typing.get_args(annotation):
            inner = _inside(arg)
            if inner is not None:
                found = (found or []) + inner
        return found
    return None
