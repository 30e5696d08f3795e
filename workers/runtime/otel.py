"""A consumer's spans, when tracing is on (``shared.otel``): one per attempt at one event.

``process <prefix>.consumer.<name>`` is a consumer span around the whole attempt: the
handler with its middleware (a handler's own spans, and the built-ins' HTTP request or
insert, are its children), then its settling (a retry or a park is published under it).
Its attributes say which consumer, which attempt, the outcome (handled, duplicate, retried,
parked), the delay of a retry, and the error's type (never its message).

Its parent, in order:

1. the message's ``traceparent``: a retried copy's, the attempt that retried it, so a
   second attempt is the child of the first;
2. ``x-trace-replay-of``: a copy replayed from a parking queue starts a trace of its own,
   linked to the one it was parked in; an event replayed from the archive (``x-replay``)
   too, linked to its own context;
3. the event's own context (``Envelope.traceparent``): the router's publish of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pydantic
from aio_pika.abc import AbstractIncomingMessage
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, get_current_span

from shared import otel
from shared.callbacks.events import CallbackEvent
from shared.wire.events import Entry
from shared.wire.headers import REPLAY, ROUTING_KEY, TRACE_REPLAY_OF, TRACEPARENT, TRACESTATE
from workers.runtime.handling import Outcome

__all__ = ["HandleEntry", "traced_attempts"]

#: How the runner takes one event of a message (``ConsumerRunner._handle_entry``).
HandleEntry = Callable[[AbstractIncomingMessage, Entry, int], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class _Decoded(Entry):
    """An entry whose event was decoded to read its context: handling does not decode again."""

    decoded: CallbackEvent | None = None

    def event(self) -> CallbackEvent:
        return self.decoded if self.decoded is not None else Entry.event(self)


def traced_attempts(consumer: str, queue: str, handle: HandleEntry) -> HandleEntry:
    """``handle`` under a consumer span per attempt (see the module's documentation)."""
    name = f"process {queue}"

    async def traced(message: AbstractIncomingMessage, entry: Entry, done: int) -> Outcome:
        headers = message.headers or {}
        parent: Context | None = otel.context_of(headers.get(TRACEPARENT), headers.get(TRACESTATE))
        link: Link | None = None
        if parent is None:
            replay_of = headers.get(TRACE_REPLAY_OF)
            if replay_of:
                link = otel.link_to(replay_of)
            else:
                entry, context = _event_context(entry)
                if context is not None and headers.get(REPLAY) is not None:
                    link = Link(get_current_span(context).get_span_context())  # from the archive
                else:
                    parent = context
        with otel.tracer().start_as_current_span(
            name,
            context=parent or Context(),
            kind=SpanKind.CONSUMER,
            links=[link] if link is not None else None,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": queue,
                "messaging.consumer.group.name": consumer,
                "messaging.message.id": message.message_id or "",
                "messaging.rabbitmq.destination.routing_key": str(headers.get(ROUTING_KEY, "")),
                "callback_fanout.consumer": consumer,
                "callback_fanout.attempt": done + 1,
            },
            record_exception=False,
        ) as span:
            outcome = await handle(message, entry, done)
            span.set_attribute("callback_fanout.outcome", outcome.kind)
            if outcome.event is not None:
                span.set_attribute("callback_fanout.job_id", outcome.event.job_id or "")
            if outcome.delay is not None:
                span.set_attribute("callback_fanout.retry_delay", outcome.delay)
            if outcome.reason is not None:
                span.set_attribute("error.type", _error_type(outcome))
                span.set_status(Status(StatusCode.ERROR))
            return outcome

    return traced


def _event_context(entry: Entry) -> tuple[Entry, Context | None]:
    """The entry, decoded once, and the context its event's envelope carries."""
    try:
        event = entry.event()
    except pydantic.ValidationError:
        return entry, None  # handling parks it, and says why
    envelope = event.envelope
    decoded = _Decoded(entry.doc, entry.raw, event)
    if envelope is None:
        return decoded, None
    return decoded, otel.context_of(envelope.traceparent, envelope.tracestate)


def _error_type(outcome: Outcome) -> str:
    """The type of what failed: the exception's class name the reason begins with."""
    if outcome.timed_out:
        return "TimeoutError"
    head = (outcome.reason or "").split(":", 1)[0]
    return head if head.replace(".", "_").isidentifier() else "_OTHER"
