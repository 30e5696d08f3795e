"""The request's facts: one type, read the same from a lone message and from a batch entry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.wire.envelope import envelope, envelope_of
from shared.wire.facts import FactsError, RequestFacts
from shared.wire.headers import RECEIVED_AT_US
from shared.wire.raw import batch_message
from tests.wire.recorded import redelivered
from workers.router.rawbodies import raw_bodies

_text = st.text(min_size=1, max_size=30)
_facts = st.builds(
    RequestFacts,
    request_id=_text,
    # from 1970 to 2106: the span a 32-bit unsigned count of seconds covers
    received_at=st.floats(min_value=0, max_value=2**32, allow_nan=False),
    content_type=st.none() | _text,
    source_address=st.none() | _text,
    headers=st.dictionaries(_text, st.text(max_size=30), max_size=4),
    token_name=st.none() | _text,
    traceparent=st.none() | st.from_regex(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", fullmatch=True),
    tracestate=st.none() | _text,
)


@given(st.integers(min_value=0, max_value=2**32 * 1_000_000))
def test_the_microseconds_of_a_lone_message_read_back_exactly(us: int) -> None:
    facts = RequestFacts.from_properties("r", None, {RECEIVED_AT_US: us})
    assert facts.received_at_us == us


@given(_facts, st.binary(max_size=200))
def test_a_body_has_the_same_envelope_in_a_batch_as_alone(facts: RequestFacts, body: bytes) -> None:
    other = RequestFacts("other", 1.0, None, None)
    batch = redelivered(batch_message([(facts, body), (other, b"x")]))
    in_batch = raw_bodies(batch)[0].envelope
    assert in_batch == envelope_of(redelivered(facts.message(body)))
    assert in_batch == envelope(facts, body)


@given(_facts, st.binary(max_size=200))
def test_a_lone_message_carries_every_fact_to_the_microsecond(
    facts: RequestFacts, body: bytes
) -> None:
    read = RequestFacts.of_message(redelivered(facts.message(body)))
    assert read._replace(received_at=facts.received_at) == facts
    assert read.received_at_us == facts.received_at_us


def test_a_lone_message_without_its_time_reads_as_received_now() -> None:
    before = datetime.now(UTC)
    read = envelope_of(
        redelivered(RequestFacts("r", 1.0, None, None).message(b"x", {RECEIVED_AT_US: "?"}))
    )
    assert before <= read.received_at <= datetime.now(UTC)


def test_a_parked_copy_is_the_lone_message_with_the_reason_added() -> None:
    facts = RequestFacts("r", 2.5, "application/xml", "192.0.2.1", {"User-Agent": "ci"}, "main")
    copy = facts.message(b"<a/>", {"x-parse-error": "bad"})
    lone = facts.message(b"<a/>")
    assert copy.headers == {**lone.headers, "x-parse-error": "bad"}
    assert (copy.body, copy.message_id, copy.content_type, copy.delivery_mode) == (
        b"<a/>",
        "r",
        "application/xml",
        lone.delivery_mode,
    )


@given(_facts)
def test_the_json_form_reads_back_exactly(facts: RequestFacts) -> None:
    assert RequestFacts.from_json(facts.to_json()) == facts


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{", "not JSON"),
        (b'{"request_id":"r"}', "must be an object with"),
        (
            b'{"request_id":"r","received_at":true,"content_type":null,"source_address":null,'
            b'"headers":{},"token_name":null}',
            "received_at must be a number",
        ),
    ],
)
def test_json_that_is_not_the_facts_is_refused_with_the_reason(data: bytes, says: str) -> None:
    with pytest.raises(FactsError, match=says):
        RequestFacts.from_json(data)
