"""Framed event messages: their exact bytes and headers, and the copy of one event alone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, cast

import aio_pika
import pydantic
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared.callbacks.events import CallbackEvent
from shared.wire import events
from shared.wire.events import (
    EVENTS_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    Entry,
    EventFormatError,
    encode,
    entries_of,
    event_message,
    events_message,
    is_events,
    json_entry,
    json_message,
)
from shared.wire.framing import frame, prefix
from shared.wire.headers import (
    ATTEMPTS,
    EVENT_COUNT,
    IDEMPOTENCY_KEY,
    LAST_ERROR,
    REQUEST_ID,
    ROUTING_KEY,
    TRACEPARENT,
)
from workers.testing import make_event

SAME = b"\xff\xff\xff\xff"
STAMP = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@dataclass
class Source:
    """The properties of a received message that a copy of one of its events keeps."""

    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = EVENTS_CONTENT_TYPE
    message_id: str | None = "req-9.0"
    timestamp: dt.datetime | None = STAMP


def received(source: Source) -> AbstractIncomingMessage:
    return cast(AbstractIncomingMessage, source)


def without_envelope(event: CallbackEvent) -> CallbackEvent:
    return event.model_copy(update={"envelope": None})


def test_an_entry_is_the_event_s_json_without_its_raw_body_and_the_raw_body() -> None:
    event = make_event()
    assert event.envelope is not None

    entry = encode(event)

    assert entry.raw == event.envelope.raw_body
    assert b"raw_body" not in entry.doc
    assert entry.event() == event


def test_an_event_without_an_envelope_carries_an_empty_raw_body() -> None:
    event = without_envelope(make_event())

    entry = encode(event)

    assert entry.raw == b""
    assert entry == Entry(event.model_dump_json().encode(), b"")


def test_an_entry_of_the_older_format_has_its_raw_body_inside() -> None:
    event = make_event()

    entry = json_entry(event)

    assert entry.raw is None
    assert entry.event() == event


def test_an_entry_that_is_not_an_event_fails_validation() -> None:
    with pytest.raises(pydantic.ValidationError):
        Entry(b"{not json", b"raw").event()
    with pytest.raises(pydantic.ValidationError):
        Entry(b"[]", None).event()


def test_a_message_of_several_events_is_their_entries_framed_the_body_once_per_run() -> None:
    first, second, third = make_event(), make_event(), make_event()
    a, b, c = encode(first), encode(second), encode(third)
    shared = b"<same body/>"
    entries = [
        Entry(a.doc, shared),
        Entry(b.doc, bytes(bytearray(shared))),  # equal, not the same object
        Entry(c.doc, b"<other/>"),
    ]

    message = events_message("TaskFinish.x", entries, first)

    assert message.body == (
        prefix(len(a.doc))
        + a.doc
        + prefix(len(shared))
        + shared
        + prefix(len(b.doc))
        + b.doc
        + SAME
        + prefix(len(c.doc))
        + c.doc
        + prefix(8)
        + b"<other/>"
    )
    assert entries_of(EVENTS_CONTENT_TYPE, message.body, 3) == [
        Entry(a.doc, shared),
        Entry(b.doc, shared),
        Entry(c.doc, b"<other/>"),
    ]
    assert message.headers == {ROUTING_KEY: "TaskFinish.x", EVENT_COUNT: 3}
    assert message.content_type == EVENTS_CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.envelope is not None
    assert message.message_id == f"{first.envelope.request_id}.{first.job_index}"


def test_a_body_is_written_again_after_another_one() -> None:
    doc = encode(make_event()).doc
    entries = [Entry(doc, b"A"), Entry(doc, b"B"), Entry(doc, b"A")]

    message = events_message("k", entries, make_event())

    assert message.body == frame(doc, b"A", doc, b"B", doc, b"A")


def test_an_entry_without_its_raw_body_cannot_be_framed() -> None:
    entry = json_entry(make_event())

    with pytest.raises(AssertionError, match=r"^framed entries carry their raw body"):
        events_message("k", [entry], make_event())


def test_a_message_of_one_event_names_it_in_its_headers() -> None:
    event = make_event()
    assert event.envelope is not None

    message = event_message(event)

    assert message.headers == {
        ROUTING_KEY: event.routing_key,
        EVENT_COUNT: 1,
        IDEMPOTENCY_KEY: event.idempotency_key,
        REQUEST_ID: event.envelope.request_id,
    }
    assert entries_of(message.content_type, message.body, 1) == [encode(event)]


def test_a_message_of_an_event_without_an_envelope_has_an_empty_request_id() -> None:
    event = without_envelope(make_event())

    message = events_message("k", [Entry(encode(event).doc, b"")], event)

    assert message.headers is not None
    assert message.headers[REQUEST_ID] == ""
    assert message.message_id == f".{event.job_index}"


def test_a_message_of_the_older_format_is_the_event_s_json() -> None:
    event = make_event()
    assert event.envelope is not None
    doc = json_entry(event).doc

    message = json_message(event, doc)

    assert message.body == doc
    assert message.content_type == JSON_CONTENT_TYPE == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == f"{event.envelope.request_id}.{event.job_index}"
    assert message.headers == {
        IDEMPOTENCY_KEY: event.idempotency_key,
        REQUEST_ID: event.envelope.request_id,
        ROUTING_KEY: event.routing_key,
    }
    assert entries_of(message.content_type, message.body) == [Entry(doc, None)]


def test_an_older_message_of_an_event_without_an_envelope_has_an_empty_request_id() -> None:
    event = without_envelope(make_event())

    message = json_message(event, b"{}")

    assert message.headers is not None
    assert message.headers[REQUEST_ID] == ""
    assert message.message_id == f".{event.job_index}"


def test_only_the_events_content_type_is_framed() -> None:
    assert EVENTS_CONTENT_TYPE == "application/vnd.callback-fanout.events+v1"
    assert is_events(EVENTS_CONTENT_TYPE)
    assert not is_events(JSON_CONTENT_TYPE)
    assert not is_events(None)
    assert events.EVENT_COUNT_HEADER == EVENT_COUNT


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "the message holds no event"),
        (frame(b"{}") + SAME, "entry 0: refers to a previous body, has none"),
        (prefix(2) + b"{}" + prefix(5) + b"ab", "entry 0: its raw body runs past the end"),
        (frame(b"{}")[:-1], "entry 0: its event runs past the end of the message"),
        (frame(b"{}", b"r") + frame(b"{}"), "entry 1: truncated before the length of its raw body"),
    ],
)
def test_a_body_that_is_not_exactly_entries_is_refused_with_the_reason(
    body: bytes, says: str
) -> None:
    with pytest.raises(EventFormatError, match=f"^{says}"):
        entries_of(EVENTS_CONTENT_TYPE, body)


def test_the_count_a_message_declares_is_checked_when_it_is_an_integer() -> None:
    body = frame(b"{}", b"r", b"{}", b"s")

    assert len(entries_of(EVENTS_CONTENT_TYPE, body, 2)) == 2
    assert len(entries_of(EVENTS_CONTENT_TYPE, body, True)) == 2  # a bool is no count
    assert len(entries_of(EVENTS_CONTENT_TYPE, body, "3")) == 2
    assert len(entries_of(EVENTS_CONTENT_TYPE, body, None)) == 2
    with pytest.raises(
        EventFormatError, match=r"^message holds 2 events but its x-event-count says 3$"
    ):
        entries_of(EVENTS_CONTENT_TYPE, body, 3)


# The copy of one event that leaves its message (retried or parked) alone.

BATCH_HEADERS: dict[str, Any] = {
    ROUTING_KEY: "TaskFinish.Transcode.Success",
    EVENT_COUNT: 3,
    IDEMPOTENCY_KEY: "of-the-batch",
    REQUEST_ID: "of-the-batch",
    TRACEPARENT: "00-abc-def-01",
    ATTEMPTS: 2,
}


def test_the_copy_of_one_event_of_a_shared_message_keeps_every_property_of_it() -> None:
    event = make_event()
    assert event.envelope is not None
    entry = encode(event)
    source = Source(headers=dict(BATCH_HEADERS))

    copy = entry.message(received(source), {ATTEMPTS: 3, LAST_ERROR: "boom"}, event)

    assert copy.body == frame(entry.doc, entry.raw or b"")
    assert entries_of(copy.content_type, copy.body, 1) == [entry]
    assert copy.content_type == EVENTS_CONTENT_TYPE
    assert copy.message_id == "req-9.0"
    assert copy.timestamp == STAMP
    assert copy.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert copy.headers == {
        ROUTING_KEY: "TaskFinish.Transcode.Success",
        TRACEPARENT: "00-abc-def-01",
        EVENT_COUNT: 1,
        IDEMPOTENCY_KEY: event.idempotency_key,
        REQUEST_ID: event.envelope.request_id,
        ATTEMPTS: 3,  # the given headers win
        LAST_ERROR: "boom",
    }
    assert source.headers == BATCH_HEADERS  # the received message is left as it was


def test_the_copy_of_an_event_that_did_not_validate_drops_the_batch_s_names() -> None:
    source = Source(headers=dict(BATCH_HEADERS))

    copy = Entry(b"{not json", b"raw").message(received(source), {LAST_ERROR: "invalid"})

    assert copy.headers == {
        ROUTING_KEY: "TaskFinish.Transcode.Success",
        TRACEPARENT: "00-abc-def-01",
        ATTEMPTS: 2,
        EVENT_COUNT: 1,
        LAST_ERROR: "invalid",
    }
    assert copy.body == frame(b"{not json", b"raw")


def test_the_copy_of_a_message_of_one_event_keeps_all_its_headers() -> None:
    headers = {**BATCH_HEADERS, EVENT_COUNT: 1, IDEMPOTENCY_KEY: "k1", REQUEST_ID: "r1"}
    source = Source(headers=dict(headers))

    copy = Entry(b"{not json", b"raw").message(received(source), {LAST_ERROR: "invalid"})

    assert copy.headers == {**headers, LAST_ERROR: "invalid"}


def test_the_copy_of_an_event_of_the_older_format_keeps_its_body_and_content_type() -> None:
    event = make_event()
    entry = json_entry(event)
    headers = {IDEMPOTENCY_KEY: event.idempotency_key, REQUEST_ID: "r1", ROUTING_KEY: "k"}
    source = Source(headers=dict(headers), content_type=JSON_CONTENT_TYPE, timestamp=None)

    copy = entry.message(received(source), {ATTEMPTS: 1})

    assert copy.body == entry.doc
    assert copy.content_type == JSON_CONTENT_TYPE
    assert copy.headers == {**headers, ATTEMPTS: 1}  # no x-event-count: not framed
    assert copy.message_id == "req-9.0"
    assert copy.timestamp is None
    assert copy.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


def test_the_copy_of_an_event_without_an_envelope_has_an_empty_request_id() -> None:
    event = without_envelope(make_event())

    copy = encode(event).message(received(Source(headers={})), {}, event)

    assert copy.headers == {IDEMPOTENCY_KEY: event.idempotency_key, REQUEST_ID: "", EVENT_COUNT: 1}


def test_a_source_without_headers_gives_a_copy_with_the_given_ones() -> None:
    source = Source()
    source.headers = cast(dict[str, Any], None)

    copy = Entry(b"{}", None).message(received(source), {ATTEMPTS: 4})

    assert copy.headers == {ATTEMPTS: 4}
