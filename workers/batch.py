"""The router's side of group commit: a raw delivery as the lone messages it carries.

A lone raw message is itself. A batch message (``shared.batchformat``) carries several
bodies; each comes back as the message the ingress would have sent had the body travelled
alone: the same body, byte for byte, and the same properties (``RawMeta.message``). The
router parses, publishes and parks each of them exactly as a lone message, and acks the
delivery itself once all of them are done.

The messages rebuilt from a batch cannot be acked or rejected on their own (they were never
delivered by the broker): only the delivery that carried them can.
"""

from __future__ import annotations

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from shared.batchformat import BATCH_COUNT_HEADER, BatchFormatError, RawMeta, is_batch, unpack

__all__ = ["raw_messages"]


def raw_messages(delivery: AbstractIncomingMessage) -> list[AbstractIncomingMessage]:
    """The lone raw messages of ``delivery``: itself, or each body of a batch.

    Raises :class:`BatchFormatError` when a batch does not unpack, or when it holds a
    different number of bodies than its ``x-batch-count`` header says.
    """
    if not is_batch(delivery.content_type):
        return [delivery]
    entries = unpack(delivery.body)
    declared = (delivery.headers or {}).get(BATCH_COUNT_HEADER)
    if not entries or (isinstance(declared, int) and declared != len(entries)):
        raise BatchFormatError(
            f"batch holds {len(entries)} bodies but its {BATCH_COUNT_HEADER} says {declared!r}"
        )
    return [_lone(delivery, meta, body) for meta, body in entries]


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
