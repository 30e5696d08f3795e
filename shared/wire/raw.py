"""How raw bodies travel on ``<prefix>.raw``: one body per message, or several in a batch.

A **lone body** is an ordinary message: the body byte for byte, and the request's facts
(``shared.wire.facts``) as its properties; ``RequestFacts.message`` builds it.

When several bodies wait for the broker at the same moment, the ingress coalesces them into
one **batch message** (group commit: one publish and one confirm for all of them):

```
content_type   application/vnd.callback-fanout.batch+v1
delivery_mode  2 (persistent)
message_id     "batch-" + the request id of its first body
headers        x-batch-count: the number of bodies
body           the entries back to back (``shared.wire.framing``), each one:
                 4 bytes   M, big-endian unsigned
                 M bytes   the request's facts as a JSON object (``RequestFacts.to_json``)
                 4 bytes   N, big-endian unsigned
                 N bytes   the body, byte for byte
```

The router unpacks a batch and treats each body exactly as the lone message it would have
been (:func:`unpack` gives back the facts and the body of each), so parsing, parking and
replay see no difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import aio_pika

from shared.errors import ParseError
from shared.wire.facts import FactsError, RequestFacts
from shared.wire.framing import MAX_LENGTH, Frames, prefix
from shared.wire.headers import BATCH_COUNT

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
BATCH_COUNT_HEADER = BATCH_COUNT

#: The request's facts under the name they had before ``shared.wire.facts`` (the ingress's
#: ``RawMeta``): the same class.
RawMeta = RequestFacts


class BatchFormatError(ParseError):
    """A message claims to be a batch but its body does not follow the format."""


def pack(entries: Sequence[tuple[RequestFacts, bytes]]) -> bytes:
    """The body of a batch message holding ``entries`` (facts and body each), in order."""
    parts: list[bytes] = []
    append = parts.append
    for facts, body in entries:
        encoded = facts.to_json()
        if len(body) > MAX_LENGTH:
            raise ValueError("a body of 4 GiB or more does not fit a batch entry")
        append(prefix(len(encoded)))
        append(encoded)
        append(prefix(len(body)))
        append(body)
    return b"".join(parts)


def unpack(data: bytes) -> list[tuple[RequestFacts, bytes]]:
    """The entries of a batch body; :class:`BatchFormatError` unless it is exactly entries."""
    frames = Frames(data, BatchFormatError, "batch")
    chunk = frames.chunk
    from_json = RequestFacts.from_json
    entries: list[tuple[RequestFacts, bytes]] = []
    while frames.more():
        index = len(entries)
        meta = chunk("meta", index)
        body = chunk("body", index)
        try:
            facts = from_json(meta)
        except FactsError as exc:
            raise BatchFormatError(f"entry {index}: {exc}") from None
        entries.append((facts, body))
    return entries


def is_batch(content_type: str | None) -> bool:
    """True when a raw message with this content type is a batch."""
    return content_type == BATCH_CONTENT_TYPE


def batch_message(entries: Sequence[tuple[RequestFacts, bytes]]) -> aio_pika.Message:
    """One persistent message carrying every entry (at least two; one goes alone)."""
    if not entries:
        raise ValueError("a batch holds at least one body")
    return aio_pika.Message(
        pack(entries),
        message_id=f"batch-{entries[0][0].request_id}",
        content_type=BATCH_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={BATCH_COUNT: len(entries)},
    )
