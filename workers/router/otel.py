"""The router's spans, when tracing is on (``shared.otel``): one body's parse, and its publish.

Each body of a raw delivery gets a consumer span, ``process <prefix>.raw``, the child of the
ingress's publish of that body (the context its facts carry, alone or in a batch): its job
ids, routing keys and event count are attributes; never its bytes. Its child,
``publish <prefix>.events`` (or ``publish <prefix>.unparsed`` for a body that does not
parse), is a producer span that ends once the broker confirmed every message the delivery
published (when the router acks it). Each event of the body carries that span's context in
its envelope (``Envelope.traceparent``): the consumers' attempts are its children, whichever
message of the outbox carried the event.

A body replayed from the unparsed queue (``x-trace-replay-of``) starts a trace of its own,
linked to the one it was parked in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, use_span

from shared import otel
from shared.callbacks.events import CallbackEvent
from shared.errors import ParseError
from shared.topology import Topology
from shared.wire.headers import TRACE_REPLAY_OF
from workers.router.rawbodies import RawBody

__all__ = ["DeliverySpans", "RouterSpans"]

Parse = Callable[[RawBody], "list[CallbackEvent] | ParseError"]


class RouterSpans:
    """Makes the spans of each raw delivery (one :class:`DeliverySpans` each)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def delivery(self, message: AbstractIncomingMessage) -> DeliverySpans:
        return DeliverySpans(self.topology, (message.headers or {}).get(TRACE_REPLAY_OF))


class DeliverySpans:
    """The spans of one raw delivery's bodies; the publish spans end with the delivery."""

    def __init__(self, topology: Topology, replay_of: object) -> None:
        self._topology = topology
        self._replay_of = replay_of
        self._publishing: list[Span] = []

    def parse(self, body: RawBody, parse: Parse) -> list[CallbackEvent] | ParseError:
        """``parse(body)`` under the body's spans; its events carry the publish span's
        context."""
        envelope = body.envelope
        tracer = otel.tracer()
        link = otel.link_to(self._replay_of) if self._replay_of else None
        parent = None if link else otel.context_of(envelope.traceparent, envelope.tracestate)
        raw = self._topology.raw
        with tracer.start_as_current_span(
            f"process {raw}",
            context=parent or Context(),
            kind=SpanKind.CONSUMER,
            links=[link] if link else None,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": raw,
                "messaging.message.id": body.request_id,
                "messaging.message.body.size": len(body.body),
            },
        ) as process:
            publishing = tracer.start_span(
                f"publish {self._topology.events}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "publish",
                    "messaging.destination.name": self._topology.events,
                },
            )
            self._publishing.append(publishing)
            carried = otel.inject(publishing)
            traced = envelope.model_copy(
                update={
                    "traceparent": carried.get("traceparent"),
                    "tracestate": carried.get("tracestate"),
                }
            )
            result = parse(replace(body, envelope=traced))
            if isinstance(result, ParseError):
                process.set_attribute("error.type", type(result).__name__)
                process.set_status(Status(StatusCode.ERROR))
                publishing.update_name(f"publish {self._topology.unparsed}")
                publishing.set_attribute("messaging.destination.name", self._topology.unparsed)
                publishing.set_attribute("messaging.rabbitmq.destination.routing_key", raw)
            else:
                keys = sorted({event.routing_key for event in result})
                process.set_attribute("callback_fanout.event_count", len(result))
                process.set_attribute("callback_fanout.job_ids", [e.job_id or "" for e in result])
                process.set_attribute("callback_fanout.routing_keys", keys)
                publishing.set_attribute("messaging.batch.message_count", len(result))
                publishing.set_attribute("callback_fanout.routing_keys", keys)
            return result

    def confirmed(self) -> None:
        """Every message of the delivery was confirmed: the publish spans end."""
        for span in self._publishing:
            span.end()
        self._publishing.clear()

    def failed(self, error: BaseException) -> None:
        """A publish failed (the delivery is handed back): the publish spans end with it."""
        for span in self._publishing:
            with use_span(span, end_on_exit=True, record_exception=False):
                span.set_attribute("error.type", type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, repr(error)[:200]))
        self._publishing.clear()
