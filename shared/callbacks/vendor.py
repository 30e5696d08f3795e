"""The base of every model of a vendor body, and the lenient field types its bodies need.

The sender writes the same callback as XML or as JSON built by XML-to-JSON rules, so one
value arrives in several spellings: ``"98"`` or ``98``; ``"true"`` or ``true``; one object
or a list of them; ``""`` or ``<Tag/>`` for "nothing". The types here accept all of them and
give one Python value:

- :data:`Int`, :data:`Float`, :data:`Bool`: a number or flag from a string or a JSON value;
  blank means ``None``; an integer must fit in 64 bits, a float must be finite.
- :data:`Text`: a string; a JSON number is kept as written (``coerce_numbers_to_str``).
- :data:`Nested`: an optional sub-model; a blank (empty element) means ``None``.
- :data:`ListOf`: always a list: one value becomes a list of one, a blank an empty list.
- :data:`VendorTime`: a timezone-aware datetime from every form the sender uses, or
  ``None`` for ``-`` and blank.

Every model derives from :class:`VendorModel`: snake_case field names, the vendor's
PascalCase names as aliases, and ``extra="allow"`` so that a key no field names is kept
(in ``model_extra``) rather than dropped. That is what makes parsing lossless.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_pascal

__all__ = [
    "SENDER_TIMEZONE",
    "Bool",
    "Float",
    "Int",
    "ListOf",
    "Nested",
    "Text",
    "TextList",
    "VendorModel",
    "VendorTime",
    "as_list",
    "blank_to_none",
    "parse_vendor_time",
]

#: The sender's clock: China Standard Time. Used only for a time written without an offset.
SENDER_TIMEZONE = timezone(timedelta(hours=8), "CST")

_T = TypeVar("_T")


class VendorModel(BaseModel):
    """Base of the models of a vendor body: aliases, lenient input, nothing dropped."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="allow",
        frozen=True,
        coerce_numbers_to_str=True,
        allow_inf_nan=False,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )


def _is_blank(value: object) -> bool:
    return value is None or (type(value) is str and (not value or value.isspace()))


def blank_to_none(value: Any) -> Any:
    """``None`` for a blank (``""``, whitespace only, ``None``); anything else unchanged."""
    if type(value) is str and (not value or value.isspace()):
        return None
    return value


def as_list(value: Any) -> Any:
    """A list: a list unchanged, a blank as ``[]``, a single value as a list of one.

    Blank items of a list are dropped: an empty element in a run of repeated containers
    (``<Audio/>``) stands for no item, not for an item without fields.
    """
    if type(value) is list:
        for item in value:
            if item is None or (type(item) is str and (not item or item.isspace())):
                return [item for item in value if not _is_blank(item)]
        return value
    if value is None or (type(value) is str and (not value or value.isspace())):
        return []
    return [value]


def _keep_blank_items(value: Any) -> Any:
    if type(value) is list:
        return value
    if value is None or value == "":
        return []
    return [value]


def parse_vendor_time(value: Any) -> Any:
    """A datetime for the sender's time strings; ``None`` for ``-`` and blank.

    Accepts ``2023-11-25T08:47:39+0800``, ``2021-09-14 15:00:26+0800`` and
    ``2022-08-03T18:45:50+08:00``. A time without an offset is taken as the sender's
    (:data:`SENDER_TIMEZONE`). Anything else is handed on unchanged, for pydantic to parse
    or refuse.
    """
    if type(value) is not str:
        return value
    text = value.strip()
    if not text or text == "-":
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SENDER_TIMEZONE)
    return parsed


# Each type is a left-to-right union: the plain type first (validated in pydantic's core,
# no Python call for the common case), then a fallback that normalises the sender's
# spellings of "nothing" or of a single item. Static type checkers see the plain type.
_NONE_IF_BLANK = Annotated[None, BeforeValidator(blank_to_none)]
_FIRST_MATCH = Field(union_mode="left_to_right")

_INT64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # a number, not a bignum attack

Int = Annotated[_INT64 | _NONE_IF_BLANK, _FIRST_MATCH]
Float = Annotated[float | _NONE_IF_BLANK, _FIRST_MATCH]
Bool = Annotated[bool | _NONE_IF_BLANK, _FIRST_MATCH]
Text = str | None
VendorTime = Annotated[
    AwareDatetime | Annotated[AwareDatetime | None, BeforeValidator(parse_vendor_time)],
    _FIRST_MATCH,
]

Nested = Annotated[_T | _NONE_IF_BLANK, _FIRST_MATCH]
"""An optional sub-model; an empty element (blank) is ``None``."""

ListOf = Annotated[
    list[_T] | Annotated[list[_T], BeforeValidator(as_list)],
    _FIRST_MATCH,
]
"""A list of sub-models or values; one value is a list of one, a blank an empty list."""

TextList = Annotated[
    list[str] | Annotated[list[str], BeforeValidator(_keep_blank_items)],
    _FIRST_MATCH,
]
"""A list of strings where an empty string is a value (``<ObjectName/>`` in a run)."""
