"""Messages the previous release left in the queues read the same, and are written the same.

The recorded messages (``tests/wire/recorded.py``) were written by the code before the
message formats moved into ``shared.wire``; today's code reads each of them back to the
facts, bodies and events they were made from, and writes the raw and parked ones byte for
byte as they were.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.wire.envelope import envelope_of
from shared.wire.events import (
    EVENTS_CONTENT_TYPE,
    entries_of,
    event_message,
    events_message,
    is_events,
    json_entry,
    json_message,
)
from shared.wire.facts import RequestFacts
from shared.wire.raw import batch_message, is_batch, unpack
from tests.wire.recorded import (
    BARE,
    BATCH,
    LONE,
    PARSE_REASON,
    delivered,
    header_frame,
    recorded,
)
from workers.router.rawbodies import raw_bodies, raw_messages


def test_a_lone_raw_message_reads_to_its_facts_and_is_written_byte_for_byte() -> None:
    header, body = recorded("raw-lone")
    assert RequestFacts.of_message(delivered("raw-lone")) == LONE
    assert header_frame(LONE.message(body)) == header
    bare_header, bare_body = recorded("raw-lone-bare")
    assert RequestFacts.of_message(delivered("raw-lone-bare")) == BARE
    assert header_frame(BARE.message(bare_body)) == bare_header


def test_a_batch_reads_to_its_facts_and_bodies_and_is_written_byte_for_byte() -> None:
    header, body = recorded("raw-batch")
    delivery = delivered("raw-batch")
    assert is_batch(delivery.content_type)
    entries = unpack(body)
    assert [facts for facts, _ in entries] == BATCH
    assert entries[0][1] == recorded("raw-lone")[1]
    rewritten = batch_message(entries)
    assert (header_frame(rewritten), rewritten.body) == (header, body)


def test_each_body_of_a_recorded_batch_has_the_envelope_of_its_lone_message() -> None:
    bodies = raw_bodies(delivered("raw-batch"))
    lone = raw_messages(delivered("raw-batch"))
    assert [b.envelope for b in bodies] == [envelope_of(m) for m in lone]
    assert bodies[0].envelope == envelope_of(delivered("raw-lone"))
    # 1_764_547_200.9999996 s is the microsecond after, as the lone message says
    assert bodies[1].envelope.received_at == datetime(2025, 12, 1, 0, 0, 1, tzinfo=UTC)
    assert [b.envelope.source_address for b in bodies] == [
        "203.0.113.7",
        None,
        "2001:db8::1",
        "198.51.100.1",
    ]


def test_a_parked_batch_entry_is_the_copy_the_previous_release_parked() -> None:
    header, body = recorded("parked-batch-entry")
    parked = raw_bodies(delivered("raw-batch"))[2].parked(PARSE_REASON)
    assert (header_frame(parked), parked.body) == (header, body)


def test_a_parked_lone_body_is_the_copy_the_previous_release_parked() -> None:
    header, body = recorded("parked-lone")
    [only] = raw_bodies(delivered("raw-lone-bare"))
    parked = only.parked(PARSE_REASON)
    assert (header_frame(parked), parked.body) == (header, body)


def test_framed_events_read_to_their_events_and_frame_again_byte_for_byte() -> None:
    header, body = recorded("events-framed")
    message = delivered("events-framed")
    assert is_events(message.content_type)
    entries = entries_of(
        message.content_type, message.body, (message.headers or {}).get("x-event-count")
    )
    events = [entry.event() for entry in entries]
    assert [e.envelope.request_id for e in events if e.envelope] == [
        "0123456789abcdef0123456789abcdef",
        "req-1",
        "req-3",
    ]
    assert [e.envelope.raw_body for e in events if e.envelope] == [
        recorded("raw-lone")[1],
        *(b for f, b in unpack(recorded("raw-batch")[1]) if f.request_id in ("req-1", "req-3")),
    ]
    again = events_message(events[0].routing_key, entries, events[0])
    assert (header_frame(again), again.body) == (header, body)


def test_a_framed_message_of_one_event_reads_to_the_first_of_them() -> None:
    message = delivered("events-one")
    [entry] = entries_of(
        message.content_type, message.body, (message.headers or {}).get("x-event-count")
    )
    framed = delivered("events-framed")
    first = entries_of(EVENTS_CONTENT_TYPE, framed.body)[0].event()
    assert entry.event() == first
    assert header_frame(event_message(first)) == recorded("events-one")[0]


def test_an_event_of_the_json_format_reads_and_is_written_byte_for_byte() -> None:
    header, body = recorded("event-json")
    message = delivered("event-json")
    [entry] = entries_of(message.content_type, message.body)
    event = entry.event()
    assert event.envelope is not None
    assert event.envelope.raw_body == recorded("raw-lone")[1]
    assert json.loads(json_entry(event).doc) == json.loads(body)
    assert header_frame(json_message(event, body)) == header
