"""The framed event message: what the router packs comes out, byte for byte, or is refused."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.callbacks.events import CallbackEvent, Envelope
from shared.callbacks.parser import parse_callback
from shared.errors import ParseError
from shared.wire.events import (
    EVENT_COUNT_HEADER,
    EVENTS_CONTENT_TYPE,
    EventFormatError,
    encode,
    entries_of,
    events_message,
)
from tests.conftest import SEEDS

OCR = (SEEDS / "ocr.1.xml").read_bytes()


def _events(bodies: list[bytes]) -> list[CallbackEvent]:
    now = datetime.now(UTC)
    out = []
    for i, body in enumerate(bodies):
        envelope = Envelope(request_id=f"r{i}", received_at=now, raw_body=body)
        out += parse_callback(body, envelope=envelope)
    return out


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([b"", b" ", b"\n\n"]), min_size=1, max_size=6))
def test_events_come_back_equal_with_their_raw_bodies_exact(tails: list[bytes]) -> None:
    bodies = [OCR + tail for tail in tails]  # equal neighbours share their body on the wire
    events = _events(bodies)
    message = events_message(events[0].routing_key, [encode(e) for e in events], events[0])
    assert message.content_type == EVENTS_CONTENT_TYPE
    assert (message.headers or {})[EVENT_COUNT_HEADER] == len(events)
    back = [e.event() for e in entries_of(message.content_type, message.body, len(events))]
    assert back == events
    assert [e.envelope.raw_body for e in back if e.envelope] == bodies


def test_the_jobs_of_one_callback_carry_its_body_once() -> None:
    body = (SEEDS / "pic-process.1.xml").read_bytes()
    events = _events([body])
    events = [*events, *events]  # two events of the same callback
    one = events_message(events[0].routing_key, [encode(events[0])], events[0])
    two = events_message(events[0].routing_key, [encode(e) for e in events], events[0])
    doc = encode(events[0]).doc
    assert len(two.body) == len(one.body) + 4 + len(doc) + 4  # the second body is a marker
    assert two.body.endswith(struct.pack(">I", 0xFFFFFFFF))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "holds no event"),
        (b"\x00\x00", "truncated before the length of its event"),
        (struct.pack(">I", 50) + b"{}", "its event runs past the end"),
        (struct.pack(">I", 2) + b"{}", "truncated before the length of its raw body"),
        (struct.pack(">I", 2) + b"{}" + struct.pack(">I", 9) + b"abc", "raw body runs past"),
        (struct.pack(">I", 2) + b"{}" + struct.pack(">I", 0xFFFFFFFF), "has none"),
    ],
)
def test_a_body_that_is_not_exactly_entries_is_refused_with_the_reason(
    body: bytes, reason: str
) -> None:
    with pytest.raises(EventFormatError, match=reason) as caught:
        entries_of(EVENTS_CONTENT_TYPE, body)
    assert isinstance(caught.value, ParseError)  # one exception tree


def test_a_count_header_that_disagrees_is_refused() -> None:
    events = _events([OCR])
    message = events_message(events[0].routing_key, [encode(events[0])], events[0])
    with pytest.raises(EventFormatError, match="holds 1 events but its x-event-count says 2"):
        entries_of(message.content_type, message.body, 2)


def test_a_json_message_is_one_entry_of_its_own_body() -> None:
    [event] = _events([OCR])
    body = event.model_dump_json().encode()
    [entry] = entries_of("application/json", body)
    assert (entry.doc, entry.raw) == (body, None)
    assert entry.event() == event
