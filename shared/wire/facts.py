"""The request's facts: what the ingress knows about one request, and its two forms.

:class:`RequestFacts` is built once per request by the ingress and read back once per body
by the router. It travels in one of two forms, both written and read here only:

- on a **lone raw message**, as the message's properties: ``message_id`` is the request
  id, ``content_type`` the request's, and the headers ``x-received-at-us`` (an integer:
  microseconds since the epoch), ``x-http-headers`` (the kept request headers),
  ``x-source-address`` and ``x-token-name`` (each only when known), and the W3C Trace
  Context of the ingress's publish as ``traceparent`` and ``tracestate`` (when traced);
- in a **batch entry** (``shared.wire.raw``), as a JSON object in ASCII with request_id,
  received_at (seconds since the epoch, exact), content_type, source_address, headers and
  token_name; and traceparent and tracestate when traced (absent otherwise, so that a body
  that is not traced is written as before).

The instant a body was received is :attr:`RequestFacts.received_at_us` whatever the form,
so a body reads the same in a batch as alone. This module does not load the callback model:
the envelope the router builds from the facts is in ``shared.wire.envelope``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as _quote
from types import MappingProxyType
from typing import NamedTuple

import aio_pika
from aio_pika.abc import AbstractMessage, HeadersType
from pamqp.commands import Basic

from shared.wire.headers import (
    HTTP_HEADERS,
    RECEIVED_AT_US,
    SOURCE_ADDRESS,
    TOKEN_NAME,
    TRACEPARENT,
    TRACESTATE,
)

__all__ = ["FactsError", "RequestFacts", "http_headers"]

_JSON_KEYS = frozenset(
    {"request_id", "received_at", "content_type", "source_address", "headers", "token_name"}
)
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class FactsError(ValueError):
    """The JSON form of the facts does not read: not JSON, or a field of the wrong kind."""


class RequestFacts(NamedTuple):
    """What the ingress knows about one request (a named tuple: built on its hot path)."""

    request_id: str
    received_at: float  # seconds since the epoch
    content_type: str | None
    source_address: str | None
    headers: Mapping[str, str] = _NO_HEADERS
    token_name: str | None = None
    #: W3C Trace Context of the ingress's publish of the body (``shared.otel``), when traced.
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def received_at_us(self) -> int:
        """When the request was received, in whole microseconds since the epoch."""
        return round(self.received_at * 1_000_000)

    # The lone message's form: properties.

    def message(self, body: bytes, extra_headers: HeadersType | None = None) -> aio_pika.Message:
        """The lone message of ``body``: persistent, these facts as its properties; with
        ``extra_headers`` (a parked copy's reason) added to its headers."""
        headers = self.amqp_headers()
        if extra_headers:
            headers.update(extra_headers)
        return aio_pika.Message(
            body,
            message_id=self.request_id,
            content_type=self.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )

    def properties(self) -> Basic.Properties:
        """The AMQP properties of :meth:`message`, as a consumer receives them."""
        return Basic.Properties(
            content_type=self.content_type,
            delivery_mode=2,
            headers=self.amqp_headers(),
            message_id=self.request_id,
        )

    def amqp_headers(self) -> HeadersType:
        """The headers of :meth:`message` (a new table each call)."""
        http_headers: HeadersType = dict(self.headers)
        headers: HeadersType = {
            # An integer: AMQP clients send a Python float as a 32-bit float, which would
            # move an epoch time by up to a minute.
            RECEIVED_AT_US: round(self.received_at * 1_000_000),  # received_at_us
            HTTP_HEADERS: http_headers,
        }
        if self.source_address:
            headers[SOURCE_ADDRESS] = self.source_address
        if self.token_name:
            headers[TOKEN_NAME] = self.token_name
        if self.traceparent:
            headers[TRACEPARENT] = self.traceparent
        if self.tracestate:
            headers[TRACESTATE] = self.tracestate
        return headers

    @classmethod
    def of_message(cls, message: AbstractMessage) -> RequestFacts:
        """The facts a lone message carries; lenient, as it always was: a missing
        ``x-received-at-us`` reads as now, headers that are not a table as none."""
        return cls.from_properties(message.message_id, message.content_type, message.headers)

    @classmethod
    def from_properties(
        cls, message_id: str | None, content_type: str | None, headers: HeadersType | None
    ) -> RequestFacts:
        """The facts of a lone message's properties (see :meth:`of_message`)."""
        headers = headers or {}
        received = headers.get(RECEIVED_AT_US)
        source = headers.get(SOURCE_ADDRESS)
        token = headers.get(TOKEN_NAME)
        traceparent = headers.get(TRACEPARENT)
        tracestate = headers.get(TRACESTATE)
        # tuple.__new__: the named tuple's own constructor is a Python call, once per body.
        return tuple.__new__(
            cls,
            (
                message_id or "",
                # Exact: microseconds to seconds and back is the identity until the year 2106.
                received / 1_000_000
                if type(received) is int  # not a bool, nor a float the wire narrowed
                else time.time(),
                content_type,
                source if source is None or type(source) is str else _text(source),
                http_headers(headers.get(HTTP_HEADERS)),
                token if token is None or type(token) is str else _text(token),
                traceparent if traceparent is None or type(traceparent) is str else None,
                tracestate if tracestate is None or type(tracestate) is str else None,
            ),
        )

    # A batch entry's form: a JSON object.

    def to_json(self) -> bytes:
        """The facts as a batch entry carries them: a JSON object in ASCII, written field by
        field (the general encoder costs several times more, once per body)."""
        headers = ",".join(f"{_quote(k)}:{_quote(v)}" for k, v in self.headers.items())
        traced = ""
        if self.traceparent:
            traced = f',"traceparent":{_quote(self.traceparent)}'
        if self.tracestate:
            traced += f',"tracestate":{_quote(self.tracestate)}'
        return (
            f'{{"request_id":{_quote(self.request_id)},"received_at":{self.received_at!r},'
            f'"content_type":{_optional(self.content_type)},'
            f'"source_address":{_optional(self.source_address)},'
            f'"headers":{{{headers}}},"token_name":{_optional(self.token_name)}{traced}}}'
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RequestFacts:
        """The facts of :meth:`to_json`, checked field by field; :class:`FactsError` if not."""
        try:
            fields = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise FactsError(f"meta is not JSON: {exc}") from None
        if not isinstance(fields, dict) or not fields.keys() >= _JSON_KEYS:
            raise FactsError(f"meta must be an object with {sorted(_JSON_KEYS)}")
        request_id = fields["request_id"]
        received_at = fields["received_at"]
        headers = fields["headers"]
        if not isinstance(request_id, str) or not request_id:
            raise FactsError("meta: request_id must be a non-empty string")
        if not isinstance(received_at, int | float) or isinstance(received_at, bool):
            raise FactsError("meta: received_at must be a number")
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise FactsError("meta: headers must map strings to strings")
        optional = {k: fields[k] for k in ("content_type", "source_address", "token_name")}
        traced = {k: fields.get(k) for k in ("traceparent", "tracestate")}
        for key, value in (*optional.items(), *traced.items()):
            if value is not None and not isinstance(value, str):
                raise FactsError(f"meta: {key} must be a string or null")
        return cls(
            request_id=request_id,
            received_at=float(received_at),
            content_type=optional["content_type"],
            source_address=optional["source_address"],
            headers=headers,
            token_name=optional["token_name"],
            traceparent=traced["traceparent"],
            tracestate=traced["tracestate"],
        )


def http_headers(kept: object) -> dict[str, str]:
    """The request headers of an ``x-http-headers`` value (none unless it is a table)."""
    if not kept or not isinstance(kept, dict):
        return {}
    # Strings as they come (all of them, from the ingress): no call per header.
    return {
        k if type(k) is str else str(k): v if type(v) is str else _text(v) for k, v in kept.items()
    }


def _optional(text: str | None) -> str:
    return "null" if text is None else str(_quote(text))


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
