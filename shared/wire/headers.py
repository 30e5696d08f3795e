"""The names of the AMQP headers the system writes and reads, in one place.

Grouped by the message that carries them. The broker's own headers, which the parking tools
read and replay removes, are at the end.
"""

from __future__ import annotations

__all__ = [
    "ATTEMPTS",
    "BATCH_COUNT",
    "BROKER_DEATH",
    "CONSUMER",
    "DEAD_AT",
    "DEATH",
    "DELIVERY_COUNT",
    "EVENT_COUNT",
    "FIRST_DEATH_EXCHANGE",
    "FIRST_DEATH_QUEUE",
    "FIRST_DEATH_REASON",
    "HTTP_HEADERS",
    "IDEMPOTENCY_KEY",
    "LAST_ERROR",
    "PARSE_ERROR",
    "PARSE_LOCATION",
    "RECEIVED_AT_US",
    "REPLAY",
    "REQUEST_ID",
    "ROUTING_KEY",
    "SOURCE_ADDRESS",
    "STREAM_OFFSET",
    "TOKEN_NAME",
    "TRACEPARENT",
    "TRACESTATE",
    "TRACE_REPLAY_OF",
]

# A lone raw body (ingress -> router): the request's facts beside ``message_id`` and
# ``content_type`` (``shared.wire.facts``).
RECEIVED_AT_US = "x-received-at-us"  # an integer: microseconds since the epoch
HTTP_HEADERS = "x-http-headers"  # a table of the kept request headers
SOURCE_ADDRESS = "x-source-address"
TOKEN_NAME = "x-token-name"

# A batch of raw bodies (``shared.wire.raw``).
BATCH_COUNT = "x-batch-count"

# An event message (router -> consumers, ``shared.wire.events``).
ROUTING_KEY = "x-routing-key"
EVENT_COUNT = "x-event-count"  # framed messages only
IDEMPOTENCY_KEY = "x-idempotency-key"  # a message of one event only
REQUEST_ID = "x-request-id"  # a message of one event only
#: An event re-delivered from the archive by `callback-fanout replay` (its value names the
#: replay); the consumer's dedupe lets it through on purpose.
REPLAY = "x-replay"

# Why a copy was parked or retried: by the router (``<prefix>.unparsed``) ...
PARSE_ERROR = "x-parse-error"
PARSE_LOCATION = "x-parse-location"
# ... and by a consumer's runtime (its delay and dead queues).
ATTEMPTS = "x-attempts"
LAST_ERROR = "x-last-error"
CONSUMER = "x-consumer"
DEAD_AT = "x-dead-at"  # whole seconds since the epoch

# Set by the broker on a message read from a stream: its offset (``shared.control``).
STREAM_OFFSET = "x-stream-offset"

# W3C Trace Context (``shared.otel``): on a raw message, the ingress's publish; on a retried or
# parked copy, the consumer's attempt that sent it there. A replayed copy carries its original
# ``traceparent`` as ``x-trace-replay-of``: its new trace links to the old one.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_REPLAY_OF = "x-trace-replay-of"

# Written by the broker: dead-lettering, and a quorum queue's redeliveries.
DEATH = "x-death"
FIRST_DEATH_EXCHANGE = "x-first-death-exchange"
FIRST_DEATH_QUEUE = "x-first-death-queue"
FIRST_DEATH_REASON = "x-first-death-reason"
DELIVERY_COUNT = "x-delivery-count"

#: Every header the broker adds when it dead-letters or redelivers a message.
BROKER_DEATH = frozenset(
    {DEATH, FIRST_DEATH_EXCHANGE, FIRST_DEATH_QUEUE, FIRST_DEATH_REASON, DELIVERY_COUNT}
)
