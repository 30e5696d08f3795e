"""The router's side of group commit: a raw delivery as the bodies it carries.

A lone raw message carries one body; a batch message (``shared.wire.raw``) several, each
with the request's facts. Each body comes with the envelope its lone message gives (built
from the facts, ``shared.wire.envelope``), so the router parses, publishes and parks it
exactly as a lone message, and acks the delivery itself once all of its bodies are done.

A body of a batch cannot be acked or rejected on its own (the broker never delivered it):
only the delivery that carried it can. When it must be parked, its copy is made from its
facts and its body (:meth:`RawBody.parked`): the lone message it would have been, with the
reason added, and no delivery of its own is pretended.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractMessage, HeadersType

from shared.callbacks.events import Envelope
from shared.wire.envelope import envelope, envelope_of, parked_copy
from shared.wire.facts import RequestFacts
from shared.wire.raw import BATCH_COUNT_HEADER, BatchFormatError, is_batch, unpack

__all__ = ["RawBody", "raw_bodies", "raw_messages"]


@dataclass(frozen=True, slots=True)
class RawBody:
    """One body to route: a lone delivery, or one entry of a batch delivery."""

    body: bytes
    envelope: Envelope
    delivery: AbstractIncomingMessage
    facts: RequestFacts | None = None  # the batch entry's; None for a lone delivery

    @property
    def request_id(self) -> str:
        return self.envelope.request_id

    def message(self) -> AbstractMessage:
        """The lone message of this body: the delivery itself, or built from the facts."""
        if self.facts is None:
            return self.delivery
        return self.facts.message(self.body)

    def parked(self, reason: HeadersType) -> aio_pika.Message:
        """The copy of this body for a parking queue: its lone message with ``reason`` added
        to its headers (a lone delivery's own properties are kept as they came)."""
        if self.facts is None:
            return parked_copy(self.delivery, reason)
        return self.facts.message(self.body, reason)


def raw_bodies(delivery: AbstractIncomingMessage) -> list[RawBody]:
    """The bodies of ``delivery`` with their envelopes; raises as :func:`raw_messages`."""
    if not is_batch(delivery.content_type):
        return [RawBody(delivery.body, envelope_of(delivery), delivery)]
    return [
        RawBody(body, envelope(facts, body), delivery, facts) for facts, body in _entries(delivery)
    ]


def raw_messages(delivery: AbstractMessage) -> list[AbstractMessage]:
    """The lone raw messages of ``delivery``: itself, or the lone message of each body of a
    batch (``RequestFacts.message``: the same body and properties as had it gone alone).

    Raises :class:`BatchFormatError` when a batch does not unpack, or when it holds a
    different number of bodies than its ``x-batch-count`` header says.
    """
    if not is_batch(delivery.content_type):
        return [delivery]
    return [facts.message(body) for facts, body in _entries(delivery)]


def _entries(delivery: AbstractMessage) -> list[tuple[RequestFacts, bytes]]:
    entries = unpack(delivery.body)
    declared = (delivery.headers or {}).get(BATCH_COUNT_HEADER)
    if not entries or (isinstance(declared, int) and declared != len(entries)):
        raise BatchFormatError(
            f"batch holds {len(entries)} bodies but its {BATCH_COUNT_HEADER} says {declared!r}"
        )
    return entries
