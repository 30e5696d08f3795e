"""Between AMQP messages and the event model: envelopes in, copies of messages out."""

from __future__ import annotations

from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, HeadersType

from shared.callbacks.events import Envelope

__all__ = [
    "copy_with_headers",
    "envelope_of",
    "http_headers_of",
    "parked_copy",
]


def http_headers_of(message: AbstractIncomingMessage) -> dict[str, str]:
    """The request headers the ingress kept with the body."""
    kept = (message.headers or {}).get("x-http-headers") or {}
    if not isinstance(kept, dict):
        return {}
    return {str(k): _text(v) for k, v in kept.items()}


def envelope_of(message: AbstractIncomingMessage) -> Envelope:
    """The envelope of a raw message, from the properties the ingress set."""
    headers = message.headers or {}
    received = headers.get("x-received-at-us")  # microseconds since the epoch
    received_at = (
        datetime.fromtimestamp(received / 1_000_000, UTC)
        if isinstance(received, int) and not isinstance(received, bool)
        else datetime.now(UTC)
    )
    source = headers.get("x-source-address")
    token = headers.get("x-token-name")
    return Envelope(
        request_id=message.message_id or "",
        received_at=received_at,
        source_address=_text(source) if source is not None else None,
        content_type=message.content_type,
        headers=http_headers_of(message),
        token_name=_text(token) if token is not None else None,
        raw_body=message.body,
    )


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


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
