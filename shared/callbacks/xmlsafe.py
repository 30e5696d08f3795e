"""XML to plain Python values, refusing what a callback never needs and an attacker would use.

:func:`xml_to_value` turns a document into ``(root name, value)`` where an element is

- its text (``""`` when empty) if it has neither child elements nor attributes;
- otherwise a dict: children by name (a repeated name gives a list, in document order),
  attributes as ``"@name"``, and non-blank text mixed between children as ``"#text"``.

Refused, each as a :class:`~shared.errors.ParseError` naming line and column or path:

- any document type declaration (``<!DOCTYPE``), hence every entity declaration, internal
  or external (billion laughs, ``file://`` or ``http://`` entities): nothing is expanded,
  fetched or read;
- nesting deeper than ``max_depth`` elements;
- more than ``max_tags`` tags;
- anything that is not well-formed XML.

Two paths give the same values. A document without ``<!`` (no declaration, comment or
CDATA section) and without ``xmlns`` goes to the C tree builder of ``xml.etree`` (expat,
with no handler of ours per element); anything else, and any document the fast path
cannot read, goes to ``pyexpat`` with handlers that refuse the declaration the moment it
starts, count depth as elements open, and give the precise error.
"""

from __future__ import annotations

import pyexpat
from typing import Any
from xml.etree import ElementTree

from shared.errors import ParseError

__all__ = ["MAX_DEPTH", "MAX_TAGS", "xml_to_value"]

#: Deepest element nesting accepted. Real callbacks nest about ten deep.
MAX_DEPTH = 64
#: Most tags (``<`` characters) accepted; bounds the memory a body can make us spend.
MAX_TAGS = 500_000


class _Refused(Exception):
    """Raised inside an expat handler; carries the reason out of ``Parse``."""

    def __init__(self, reason: str, location: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location


def xml_to_value(
    text: str,
    *,
    max_depth: int = MAX_DEPTH,
    max_tags: int = MAX_TAGS,
    fast: bool = True,
) -> tuple[str, Any]:
    """Parse ``text`` (already decoded) into ``(root element name, value)``.

    ``fast=False`` forces the handler-based path (the tests compare both).
    """
    tags = text.count("<")
    if tags > max_tags:
        raise ParseError(f"XML body has {tags} tags, over the limit of {max_tags}")
    # "!" and "=" are rare in a callback; looking for them first is cheaper than for "<!"
    # (a declaration, comment or CDATA) and "xmlns" (needs an attribute, so an "=").
    if fast and ("!" not in text or "<!" not in text):
        result = _fast(text, max_depth)
        if result is not None:
            return result
    return _with_handlers(text, max_depth)


# -- fast path: C tree builder, then one walk --------------------------------------------


def _fast(text: str, max_depth: int) -> tuple[str, Any] | None:
    parser = ElementTree.XMLParser()
    try:
        parser.feed(text)
        root = parser.close()
    except ElementTree.ParseError:
        return None  # let the handler path name the error precisely
    # Attributes need "=" in a tag; without one after the prolog there are none to look
    # for, and the walk skips reading them (which costs more than the rest of the walk).
    body = text[text.find("?>") + 2 :] if text[:64].lstrip().startswith("<?xml") else text
    attributes = "=" in body
    if attributes and "xmlns" in body:
        return None  # namespaces: the handler path reads names as written
    walk = _walk_with_attributes if attributes else _walk
    if len(root) == 0 and not attributes:
        return root.tag, root.text or ""
    return root.tag, walk(root, 1, max_depth)


def _walk(element: ElementTree.Element, depth: int, max_depth: int) -> Any:
    """The value of an element with children, in a document without attributes."""
    if depth >= max_depth:
        raise _too_deep(max_depth, element)
    node: dict[str, Any] = {}
    lead = element.text
    mixed = lead is not None and not lead.isspace()
    for child in element:
        if len(child):
            value = _walk(child, depth + 1, max_depth)
        else:
            value = child.text
            if value is None:
                value = ""
        name = child.tag
        if name in node:
            old = node[name]
            if type(old) is list:
                old.append(value)
            else:
                node[name] = [old, value]
        else:
            node[name] = value
        tail = child.tail
        if tail is not None and not tail.isspace():
            mixed = True
    if mixed:
        node["#text"] = _own_text(element)
    return node


def _walk_with_attributes(element: ElementTree.Element, depth: int, max_depth: int) -> Any:
    """The value of any element (attributes as ``@name``)."""
    if depth > max_depth:
        raise _too_deep(max_depth, element)
    attributes = element.attrib
    if not attributes and len(element) == 0:
        return element.text or ""
    node: dict[str, Any] = {"@" + key: value for key, value in attributes.items()}
    mixed = False
    for child in element:
        value = _walk_with_attributes(child, depth + 1, max_depth)
        name = child.tag
        if name in node:
            old = node[name]
            if type(old) is list:
                old.append(value)
            else:
                node[name] = [old, value]
        else:
            node[name] = value
        tail = child.tail
        if tail is not None and not tail.isspace():
            mixed = True
    lead = element.text
    if mixed or (lead is not None and not lead.isspace()):
        node["#text"] = _own_text(element)
    return node


def _own_text(element: ElementTree.Element) -> str:
    pieces = [element.text or ""]
    pieces.extend(child.tail or "" for child in element)
    return "".join(pieces).strip()


def _too_deep(max_depth: int, element: ElementTree.Element) -> ParseError:
    return ParseError(f"XML nests deeper than {max_depth} elements", f"element <{element.tag}>")


# -- handler path: pyexpat, refusing declarations as they start -------------------------


class _Frame:
    __slots__ = ("attributes", "children", "name", "texts")

    def __init__(self, name: str, attributes: dict[str, str]) -> None:
        self.name = name
        self.attributes = attributes
        self.children: dict[str, Any] | None = None
        self.texts: list[str] = []

    def add(self, name: str, value: Any) -> None:
        children = self.children
        if children is None:
            self.children = {name: value}
            return
        old = children.get(name, _ABSENT)
        if old is _ABSENT:
            children[name] = value
        elif type(old) is list:
            old.append(value)
        else:
            children[name] = [old, value]

    def value(self) -> Any:
        text = "".join(self.texts)
        if self.children is None and not self.attributes:
            return text
        node: dict[str, Any] = {"@" + key: value for key, value in self.attributes.items()}
        if self.children:
            node.update(self.children)
        if text and not text.isspace():
            node["#text"] = text.strip()
        return node


class _Builder:
    def __init__(self, parser: Any, max_depth: int) -> None:
        self.parser = parser
        self.max_depth = max_depth
        self.stack: list[_Frame] = []
        self.root: tuple[str, Any] | None = None

    def _where(self) -> str:
        return f"line {self.parser.CurrentLineNumber}, column {self.parser.CurrentColumnNumber + 1}"

    def start(self, name: str, attributes: dict[str, str]) -> None:
        if len(self.stack) >= self.max_depth:
            raise _Refused(f"XML nests deeper than {self.max_depth} elements", self._where())
        self.stack.append(_Frame(name, attributes))

    def end(self, name: str) -> None:
        frame = self.stack.pop()
        value = frame.value()
        if self.stack:
            self.stack[-1].add(name, value)
        else:
            self.root = (name, value)

    def data(self, text: str) -> None:
        if self.stack:
            self.stack[-1].texts.append(text)

    def refuse_doctype(self, *_: object) -> None:
        raise _Refused(
            "XML document type declarations (DTD) are refused: "
            "a callback needs no DTD and entities could expand or reach out",
            self._where(),
        )

    def refuse_entity(self, *_: object) -> None:
        raise _Refused("XML entity declarations are refused", self._where())

    def refuse_external(self, *_: object) -> int:
        raise _Refused("XML external entities are refused", self._where())


def _with_handlers(text: str, max_depth: int) -> tuple[str, Any]:
    parser = pyexpat.ParserCreate()
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    builder = _Builder(parser, max_depth)
    parser.StartDoctypeDeclHandler = builder.refuse_doctype
    parser.EntityDeclHandler = builder.refuse_entity
    parser.UnparsedEntityDeclHandler = builder.refuse_entity
    parser.NotationDeclHandler = builder.refuse_entity
    parser.ExternalEntityRefHandler = builder.refuse_external
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text, True)
    except _Refused as refused:
        raise ParseError(refused.reason, refused.location) from None
    except pyexpat.ExpatError as err:
        reason = pyexpat.ErrorString(err.code) or "not well-formed"
        raise ParseError(
            f"invalid XML: {reason}", f"line {err.lineno}, column {err.offset + 1}"
        ) from None
    if builder.root is None:  # pragma: no cover - expat reports "no element found" first
        raise ParseError("invalid XML: no root element")
    return builder.root


# -- shared helpers ---------------------------------------------------------------------


#: Marks a name not seen yet. An element's value is a str or a dict, never a list, so a
#: list under a name is always a run of repeated elements.
_ABSENT: Any = object()
