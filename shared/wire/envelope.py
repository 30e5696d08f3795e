"""Between AMQP messages and the event model: envelopes in, copies of messages out.

The envelope of a body is built from the request's facts (``shared.wire.facts``) here only,
whether they came as a lone message's properties or in a batch entry.
"""

from __future__ import annotations

from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractMessage, HeadersType

from shared.callbacks.events import Envelope
from shared.wire.facts import RequestFacts, http_headers
from shared.wire.headers import HTTP_HEADERS

__all__ = [
    "copy_with_headers",
    "envelope",
    "envelope_of",
    "http_headers_of",
    "parked_copy",
]


def envelope(facts: RequestFacts, body: bytes) -> Envelope:
    """The envelope of ``body`` received with ``facts``."""
    headers = facts.headers
    return Envelope(
        request_id=facts.request_id,
        # RequestFacts.received_at_us: the instant a lone message carries, in a batch too
        received_at=datetime.fromtimestamp(round(facts.received_at * 1_000_000) / 1_000_000, UTC),
        source_address=facts.source_address or None,
        content_type=facts.content_type,
        headers=headers if type(headers) is dict else dict(headers),
        token_name=facts.token_name or None,
        traceparent=facts.traceparent or None,
        tracestate=facts.tracestate or None,
        raw_body=body,
    )


def envelope_of(message: AbstractMessage) -> Envelope:
    """The envelope of a lone raw message, from the properties the ingress set."""
    facts = RequestFacts.from_properties(message.message_id, message.content_type, message.headers)
    return envelope(facts, message.body)


def http_headers_of(message: AbstractMessage) -> dict[str, str]:
    """The request headers the ingress kept with the body."""
    return http_headers((message.headers or {}).get(HTTP_HEADERS))


def copy_with_headers(message: AbstractIncomingMessage, headers: HeadersType) -> aio_pika.Message:
    """A persistent copy of ``message`` (body and properties) carrying ``headers``."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def parked_copy(message: AbstractIncomingMessage, extra_headers: HeadersType) -> aio_pika.Message:
    """The message as it came, properties kept, with extra headers (the reason)."""
    return copy_with_headers(message, {**(message.headers or {}), **extra_headers})
