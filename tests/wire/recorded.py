"""Messages as the previous release wrote them, recorded in ``fixtures/``, and the facts
they were made from.

Each message is two files: ``<name>.header``, its AMQP content header frame (the properties
byte for byte as they travel), and ``<name>.body``. They were written by the code before the
message formats moved into ``shared.wire``, and are never rewritten: a message that sits in
a queue across an upgrade must read the same.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import aio_pika
from aio_pika.abc import HeadersType
from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage
from pamqp import frame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from shared.wire.facts import RequestFacts

FIXTURES = Path(__file__).parent / "fixtures"

#: The request of ``raw-lone``, also the first body of ``raw-batch``.
LONE = RequestFacts(
    "0123456789abcdef0123456789abcdef",
    1_764_547_200.123457,
    "application/xml",
    "203.0.113.7",
    {"x-ci-content-version": "Simplified", "User-Agent": "CI/1.0 (\u6570\u636e)"},
    "tencent-ci",
)
#: The request of ``raw-lone-bare`` (and ``parked-lone``): nothing known but its id and time.
BARE = RequestFacts("fedcba9876543210fedcba9876543210", 1_764_547_201.5, None, None)
#: The requests of ``raw-batch``, in order; the third body does not parse.
BATCH = [
    LONE,
    RequestFacts("req-1", 1_764_547_200.9999996, "application/json", None, {}, None),
    RequestFacts(
        "req-2",
        1_764_547_201.25,
        "text/plain",
        "2001:db8::1",
        {"Content-Type": "text/plain"},
        "main",
    ),
    RequestFacts("req-3", 1_764_547_202.0, "application/json", "198.51.100.1", {}, "ci"),
]
#: The reason of ``parked-lone`` and ``parked-batch-entry``.
PARSE_REASON: HeadersType = {
    "x-parse-error": "not XML: mismatched tag",
    "x-parse-location": "line 1",
}


def header_frame(message: aio_pika.Message) -> bytes:
    """The content header frame of ``message``, as the recorded ones were written."""
    header = ContentHeader(body_size=len(message.body), properties=message.properties)
    return frame.marshal(header, 1)


def recorded(name: str) -> tuple[bytes, bytes]:
    """The recorded header frame and body of ``name``."""
    return (FIXTURES / f"{name}.header").read_bytes(), (FIXTURES / f"{name}.body").read_bytes()


def delivered(name: str) -> IncomingMessage:
    """The recorded message ``name`` as a consumer receives it from the broker."""
    header_bytes, body = recorded(name)
    _, _, header = frame.unmarshal(header_bytes)
    assert isinstance(header, ContentHeader)
    return delivery(header, body)


def redelivered(message: aio_pika.Message) -> IncomingMessage:
    """``message`` as a consumer receives it: through its header frame, as on the wire."""
    _, _, header = frame.unmarshal(header_frame(message))
    assert isinstance(header, ContentHeader)
    return delivery(header, message.body)


def delivery(header: ContentHeader, body: bytes) -> IncomingMessage:
    deliver = Basic.Deliver(consumer_tag="c", delivery_tag=7, exchange="", routing_key="raw")
    channel = SimpleNamespace(is_closed=False)  # all a message asks of its channel
    return IncomingMessage(
        DeliveredMessage(delivery=deliver, header=header, body=body, channel=channel),  # type: ignore[arg-type]
        no_ack=True,
    )
