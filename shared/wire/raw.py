"""How raw bodies travel on ``<prefix>.raw``: one body per message, or several in a batch.

A **lone body** is an ordinary message: the body byte for byte, and what the ingress knows
about the request (:class:`RawMeta`) as AMQP properties: ``message_id`` is the request id,
``content_type`` the request's, and the headers ``x-received-at-us``, ``x-http-headers``,
``x-source-address`` and ``x-token-name``. This is what ``RawMeta.message`` builds.

When several bodies wait for the broker at the same moment, the ingress coalesces them into
one **batch message** (group commit: one publish and one confirm for all of them):

```
content_type   application/vnd.callback-fanout.batch+v1
delivery_mode  2 (persistent)
message_id     "batch-" + the request id of its first body
headers        x-batch-count: the number of bodies
body           the entries back to back, each one:
                 4 bytes   M, big-endian unsigned
                 M bytes   meta: a JSON object (ASCII) with request_id, received_at (seconds
                           since the epoch), content_type, source_address, headers (an object
                           of the kept request headers) and token_name
                 4 bytes   N, big-endian unsigned
                 N bytes   the body, byte for byte
```

The router unpacks a batch and treats each body exactly as the lone message it would have
been (:func:`unpack` gives back the :class:`RawMeta` and the body; ``RawMeta.message`` rebuilds
the lone message's properties), so parsing, parking and replay see no difference.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _quote
from types import MappingProxyType
from typing import NamedTuple

import aio_pika
from aio_pika.abc import HeadersType
from pamqp.commands import Basic

from shared.errors import ParseError

__all__ = [
    "BATCH_CONTENT_TYPE",
    "BATCH_COUNT_HEADER",
    "BatchFormatError",
    "RawMeta",
    "batch_message",
    "is_batch",
    "pack",
    "unpack",
]

BATCH_CONTENT_TYPE = "application/vnd.callback-fanout.batch+v1"
BATCH_COUNT_HEADER = "x-batch-count"

_LENGTH = struct.Struct(">I")
_MAX_LENGTH = 2**32 - 1
_META_KEYS = frozenset(
    {"request_id", "received_at", "content_type", "source_address", "headers", "token_name"}
)
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class BatchFormatError(ParseError):
    """A message claims to be a batch but its body does not follow the format."""


class RawMeta(NamedTuple):
    """What the ingress knows about one request; it travels as AMQP message properties.

    A named tuple: built once per request on the ingress's hot path, never changed.
    """

    request_id: str
    received_at: float  # seconds since the epoch
    content_type: str | None
    source_address: str | None
    headers: Mapping[str, str] = _NO_HEADERS
    token_name: str | None = None

    def message(self, body: bytes) -> aio_pika.Message:
        """The lone message of ``body``: the body as it came, this request as properties."""
        return aio_pika.Message(
            body,
            message_id=self.request_id,
            content_type=self.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=self._headers(),
        )

    def properties(self) -> Basic.Properties:
        """The AMQP properties of :meth:`message`, as a consumer receives them."""
        return Basic.Properties(
            content_type=self.content_type,
            delivery_mode=2,
            headers=self._headers(),
            message_id=self.request_id,
        )

    def _headers(self) -> HeadersType:
        http_headers: HeadersType = dict(self.headers)
        headers: HeadersType = {
            # An integer: AMQP clients send a Python float as a 32-bit float, which would
            # move an epoch time by up to a minute.
            "x-received-at-us": round(self.received_at * 1_000_000),
            "x-http-headers": http_headers,
        }
        if self.source_address:
            headers["x-source-address"] = self.source_address
        if self.token_name:
            headers["x-token-name"] = self.token_name
        return headers

    def to_json(self) -> bytes:
        """The meta of a batch entry: a JSON object in ASCII, written field by field (the
        general encoder costs several times more, once per body)."""
        headers = ",".join(f"{_quote(k)}:{_quote(v)}" for k, v in self.headers.items())
        return (
            f'{{"request_id":{_quote(self.request_id)},"received_at":{self.received_at!r},'
            f'"content_type":{_optional(self.content_type)},'
            f'"source_address":{_optional(self.source_address)},'
            f'"headers":{{{headers}}},"token_name":{_optional(self.token_name)}}}'
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RawMeta:
        """The meta of a batch entry, checked field by field."""
        try:
            fields = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BatchFormatError(f"entry meta is not JSON: {exc}") from None
        if not isinstance(fields, dict) or not fields.keys() >= _META_KEYS:
            raise BatchFormatError(f"entry meta must be an object with {sorted(_META_KEYS)}")
        request_id = fields["request_id"]
        received_at = fields["received_at"]
        headers = fields["headers"]
        if not isinstance(request_id, str) or not request_id:
            raise BatchFormatError("entry meta: request_id must be a non-empty string")
        if not isinstance(received_at, int | float) or isinstance(received_at, bool):
            raise BatchFormatError("entry meta: received_at must be a number")
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise BatchFormatError("entry meta: headers must map strings to strings")
        optional = {k: fields[k] for k in ("content_type", "source_address", "token_name")}
        for key, value in optional.items():
            if value is not None and not isinstance(value, str):
                raise BatchFormatError(f"entry meta: {key} must be a string or null")
        return cls(
            request_id=request_id,
            received_at=float(received_at),
            content_type=optional["content_type"],
            source_address=optional["source_address"],
            headers=headers,
            token_name=optional["token_name"],
        )


def _optional(text: str | None) -> str:
    return "null" if text is None else str(_quote(text))


def pack(entries: Sequence[tuple[RawMeta, bytes]]) -> bytes:
    """The body of a batch message holding ``entries`` (meta and body each), in order."""
    parts: list[bytes] = []
    append = parts.append
    length = _LENGTH.pack
    for meta, body in entries:
        encoded = meta.to_json()
        if len(body) > _MAX_LENGTH:
            raise ValueError("a body of 4 GiB or more does not fit a batch entry")
        append(length(len(encoded)))
        append(encoded)
        append(length(len(body)))
        append(body)
    return b"".join(parts)


def unpack(data: bytes) -> list[tuple[RawMeta, bytes]]:
    """The entries of a batch body; :class:`BatchFormatError` unless it is exactly entries."""
    view = memoryview(data)
    entries: list[tuple[RawMeta, bytes]] = []
    offset = 0
    end = len(data)
    while offset < end:
        meta_bytes, offset = _chunk(view, offset, end, "meta", len(entries))
        body, offset = _chunk(view, offset, end, "body", len(entries))
        entries.append((RawMeta.from_json(meta_bytes), body))
    return entries


def _chunk(view: memoryview, offset: int, end: int, what: str, index: int) -> tuple[bytes, int]:
    if offset + _LENGTH.size > end:
        raise BatchFormatError(f"entry {index}: truncated before the length of its {what}")
    (size,) = _LENGTH.unpack_from(view, offset)
    start = offset + _LENGTH.size
    if start + size > end:
        raise BatchFormatError(f"entry {index}: its {what} runs past the end of the batch")
    return view[start : start + size].tobytes(), start + size


def is_batch(content_type: str | None) -> bool:
    """True when a raw message with this content type is a batch."""
    return content_type == BATCH_CONTENT_TYPE


def batch_message(entries: Sequence[tuple[RawMeta, bytes]]) -> aio_pika.Message:
    """One persistent message carrying every entry (at least two; one goes alone)."""
    if not entries:
        raise ValueError("a batch holds at least one body")
    return aio_pika.Message(
        pack(entries),
        message_id=f"batch-{entries[0][0].request_id}",
        content_type=BATCH_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={BATCH_COUNT_HEADER: len(entries)},
    )
