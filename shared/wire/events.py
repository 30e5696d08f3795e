"""How events travel from the router to the consumer queues: framed, several to a message.

The router publishes the events that share a routing key and wait for the broker at the
same moment as one message (group commit, as the ingress does for bodies), with the raw
body carried beside each event's JSON rather than inside it in base64:

```
content_type   application/vnd.callback-fanout.events+v1
delivery_mode  2 (persistent)
message_id     "<request id>.<job index>" of its first event
headers        x-routing-key: the routing key of every event in it
               x-event-count: the number of events
               and for a message of one event: x-idempotency-key, x-request-id
body           the entries back to back, each one:
                 4 bytes   M, big-endian unsigned
                 M bytes   the event's JSON (``CallbackEvent``) without envelope.raw_body
                 4 bytes   N, big-endian unsigned; 0xFFFFFFFF: the previous entry's body
                 N bytes   the raw body, byte for byte (absent when N is 0xFFFFFFFF)
```

The jobs of one callback share its body, so it travels once per message. A message of the
older format, one event as its JSON with the raw body inside in base64 (``application/json``,
what ``event_format = "json"`` publishes: :func:`json_entry`, :func:`json_message`), reads
the same: :func:`entries_of` takes both.

A consumer handles one event at a time whatever the message holds; an event that must be
retried or parked leaves its message alone, as a message of one entry (:meth:`Entry.message`),
so a retry or a replay never runs its neighbours again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, HeadersType

from shared.callbacks.events import RAW_BODY_CONTEXT, CallbackEvent
from shared.errors import ParseError
from shared.wire.framing import Frames, frame, prefix
from shared.wire.headers import EVENT_COUNT, IDEMPOTENCY_KEY, REQUEST_ID, ROUTING_KEY

__all__ = [
    "EVENTS_CONTENT_TYPE",
    "EVENT_COUNT_HEADER",
    "JSON_CONTENT_TYPE",
    "Entry",
    "EventFormatError",
    "encode",
    "entries_of",
    "event_message",
    "events_message",
    "is_events",
    "json_entry",
    "json_message",
]

EVENTS_CONTENT_TYPE = "application/vnd.callback-fanout.events+v1"
EVENT_COUNT_HEADER = EVENT_COUNT
#: The content type of an event in the older format (its JSON, the raw body inside).
JSON_CONTENT_TYPE = "application/json"

_SAME_BODY = 0xFFFFFFFF
_SAME_BODY_BYTES = prefix(_SAME_BODY)
_WITHOUT_RAW_BODY: Any = {"envelope": {"raw_body"}}
#: Headers that describe a whole message, not one of its events.
_MESSAGE_HEADERS = (EVENT_COUNT, IDEMPOTENCY_KEY, REQUEST_ID)


class EventFormatError(ParseError):
    """A message claims to carry framed events but its body does not follow the format."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One event of a message, as it travelled: its JSON, and the raw body beside it.

    ``raw`` is ``None`` for an event of the older format (the raw body inside the JSON).
    """

    doc: bytes
    raw: bytes | None

    def event(self) -> CallbackEvent:
        """The event; ``pydantic.ValidationError`` when the JSON is not one."""
        if self.raw is None:
            return CallbackEvent.model_validate_json(self.doc)
        return CallbackEvent.model_validate_json(self.doc, context={RAW_BODY_CONTEXT: self.raw})

    def message(
        self,
        source: AbstractIncomingMessage,
        headers: HeadersType,
        event: CallbackEvent | None = None,
    ) -> aio_pika.Message:
        """A persistent message of this event alone: ``source``'s properties and headers
        (those of a whole batch left out), plus ``headers``; with ``event`` (this entry's,
        when it validated), the headers of a message of one event. A message that held this
        event alone keeps its headers: they are the event's, whether it validated or not."""
        received = source.headers or {}
        if received.get(EVENT_COUNT, 1) == 1:
            kept = dict(received)
        else:
            kept = {k: v for k, v in received.items() if k not in _MESSAGE_HEADERS}
        if event is not None:
            kept[IDEMPOTENCY_KEY] = event.idempotency_key
            kept[REQUEST_ID] = event.envelope.request_id if event.envelope else ""
        if self.raw is None:
            body, content_type = self.doc, source.content_type
        else:
            body = frame(self.doc, self.raw)
            content_type = EVENTS_CONTENT_TYPE
            kept[EVENT_COUNT] = 1
        return aio_pika.Message(
            body,
            headers={**kept, **headers},
            content_type=content_type,
            message_id=source.message_id,
            timestamp=source.timestamp,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )


def encode(event: CallbackEvent) -> Entry:
    """The entry of ``event``: its JSON without the raw body, and the raw body."""
    envelope = event.envelope
    # The serializer itself: model_dump_json's str would be encoded again.
    to_json = CallbackEvent.__pydantic_serializer__.to_json
    if envelope is None:  # nothing to carry beside it
        return Entry(to_json(event), b"")
    return Entry(to_json(event, exclude=_WITHOUT_RAW_BODY), envelope.raw_body)


def events_message(
    routing_key: str, entries: Sequence[Entry], first: CallbackEvent
) -> aio_pika.Message:
    """One persistent message of ``entries`` (framed), all published with ``routing_key``.

    ``first`` is the first entry's event: its request id and job index name the message.
    """
    parts: list[bytes] = []
    append = parts.append
    previous: bytes | None = None
    for entry in entries:
        raw = entry.raw
        assert raw is not None, "framed entries carry their raw body"
        append(prefix(len(entry.doc)))
        append(entry.doc)
        if previous is not None and (raw is previous or raw == previous):
            append(_SAME_BODY_BYTES)
        else:
            append(prefix(len(raw)))
            append(raw)
            previous = raw
    request_id = first.envelope.request_id if first.envelope is not None else ""
    headers: HeadersType = {ROUTING_KEY: routing_key, EVENT_COUNT: len(entries)}
    if len(entries) == 1:
        headers[IDEMPOTENCY_KEY] = first.idempotency_key
        headers[REQUEST_ID] = request_id
    return aio_pika.Message(
        b"".join(parts),
        content_type=EVENTS_CONTENT_TYPE,
        message_id=f"{request_id}.{first.job_index}",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers,
    )


def event_message(event: CallbackEvent) -> aio_pika.Message:
    """The message of ``event`` alone, as the router publishes it."""
    return events_message(event.routing_key, [encode(event)], event)


def json_entry(event: CallbackEvent) -> Entry:
    """The entry of ``event`` in the older format: its JSON, the raw body inside."""
    return Entry(event.model_dump_json().encode(), None)


def json_message(event: CallbackEvent, doc: bytes) -> aio_pika.Message:
    """The message of one event in the older format: ``doc``, its JSON (:func:`json_entry`)."""
    request_id = event.envelope.request_id if event.envelope else ""
    return aio_pika.Message(
        doc,
        content_type=JSON_CONTENT_TYPE,
        message_id=f"{request_id}.{event.job_index}",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={
            IDEMPOTENCY_KEY: event.idempotency_key,
            REQUEST_ID: request_id,
            ROUTING_KEY: event.routing_key,
        },
    )


def is_events(content_type: str | None) -> bool:
    """True when a message with this content type carries framed events."""
    return content_type == EVENTS_CONTENT_TYPE


def entries_of(content_type: str | None, body: bytes, declared: object = None) -> list[Entry]:
    """The events of a message body: framed entries, or one event of the older format.

    ``declared`` is the message's ``x-event-count``, checked when it is an integer. Raises
    :class:`EventFormatError` when a framed body is not exactly its entries.
    """
    if not is_events(content_type):
        return [Entry(body, None)]
    frames = Frames(body, EventFormatError, "message")
    entries: list[Entry] = []
    previous: bytes | None = None
    while frames.more():
        index = len(entries)
        doc = frames.chunk("event", index)
        size = frames.length("raw body", index)
        if size == _SAME_BODY:
            if previous is None:
                raise EventFormatError(f"entry {index}: refers to a previous body, has none")
            raw = previous
        else:
            raw = previous = frames.take(size, "raw body", index)
        entries.append(Entry(doc, raw))
    if not entries:
        raise EventFormatError("the message holds no event")
    if isinstance(declared, int) and not isinstance(declared, bool) and declared != len(entries):
        raise EventFormatError(
            f"message holds {len(entries)} events but its {EVENT_COUNT} says {declared}"
        )
    return entries
