"""The router's side of group commit: a raw delivery as the lone messages it carries.

A lone raw message is itself. A batch message (``shared.wire.raw``) carries several
bodies; each comes back as the message the ingress would have sent had the body travelled
alone: the same body, byte for byte, and the same properties (``RawMeta.message``). The
router parses, publishes and parks each of them exactly as a lone message, and acks the
delivery itself once all of them are done.

The messages rebuilt from a batch cannot be acked or rejected on their own (they were never
delivered by the broker): only the delivery that carried them can. The router itself takes
the bodies as :class:`RawBody` (:func:`raw_bodies`): the envelope of a batch entry comes
straight from its metadata, and the lone message is built only for a body that is parked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from shared.callbacks.events import Envelope
from shared.wire.envelope import envelope_of
from shared.wire.raw import BATCH_COUNT_HEADER, BatchFormatError, RawMeta, is_batch, unpack

__all__ = ["RawBody", "raw_bodies", "raw_messages"]


@dataclass(frozen=True, slots=True)
class RawBody:
    """One body to route: a lone delivery, or one entry of a batch delivery."""

    body: bytes
    envelope: Envelope
    delivery: AbstractIncomingMessage
    meta: RawMeta | None = None  # the batch entry's; None for a lone delivery

    @property
    def request_id(self) -> str:
        return self.envelope.request_id

    def message(self) -> AbstractIncomingMessage:
        """The lone message of this body (the delivery itself, or rebuilt from the batch)."""
        if self.meta is None:
            return self.delivery
        return _lone(self.delivery, self.meta, self.body)


def raw_bodies(delivery: AbstractIncomingMessage) -> list[RawBody]:
    """The bodies of ``delivery`` with their envelopes; raises as :func:`raw_messages`."""
    if not is_batch(delivery.content_type):
        return [RawBody(delivery.body, envelope_of(delivery), delivery)]
    return [
        RawBody(body, _envelope(meta, body), delivery, meta) for meta, body in _entries(delivery)
    ]


def _envelope(meta: RawMeta, body: bytes) -> Envelope:
    """The envelope :func:`envelope_of` gives the lone message of this entry, without it."""
    # Through the microseconds the lone message carries, so both give the same instant.
    received = round(meta.received_at * 1_000_000) / 1_000_000
    return Envelope(
        request_id=meta.request_id,
        received_at=datetime.fromtimestamp(received, UTC),
        source_address=meta.source_address or None,
        content_type=meta.content_type,
        headers=dict(meta.headers),
        token_name=meta.token_name or None,
        raw_body=body,
    )


def raw_messages(delivery: AbstractIncomingMessage) -> list[AbstractIncomingMessage]:
    """The lone raw messages of ``delivery``: itself, or each body of a batch.

    Raises :class:`BatchFormatError` when a batch does not unpack, or when it holds a
    different number of bodies than its ``x-batch-count`` header says.
    """
    if not is_batch(delivery.content_type):
        return [delivery]
    return [_lone(delivery, meta, body) for meta, body in _entries(delivery)]


def _entries(delivery: AbstractIncomingMessage) -> list[tuple[RawMeta, bytes]]:
    entries = unpack(delivery.body)
    declared = (delivery.headers or {}).get(BATCH_COUNT_HEADER)
    if not entries or (isinstance(declared, int) and declared != len(entries)):
        raise BatchFormatError(
            f"batch holds {len(entries)} bodies but its {BATCH_COUNT_HEADER} says {declared!r}"
        )
    return entries


def _lone(delivery: AbstractIncomingMessage, meta: RawMeta, body: bytes) -> IncomingMessage:
    """The message ``body`` would have been, had it travelled alone on the same route.

    Its properties are the values a lone message delivers: strings and integers (the
    metadata holds no floats, which the wire would narrow to 32 bits).
    """
    received = ContentHeader(body_size=len(body), properties=meta.properties())
    deliver = Basic.Deliver(
        consumer_tag=delivery.consumer_tag or "",
        delivery_tag=0,  # not a delivery of its own: it cannot be acked by itself
        redelivered=bool(delivery.redelivered),
        exchange=delivery.exchange or "",
        routing_key=delivery.routing_key or "",
    )
    return IncomingMessage(
        DeliveredMessage(delivery=deliver, header=received, body=body, channel=delivery.channel),
        no_ack=True,
    )
