"""Raw bodies on ``<prefix>.raw``: a batch's exact bytes and properties, and a lone message."""

from __future__ import annotations

import aio_pika
import pytest

from shared.wire import raw
from shared.wire.facts import RequestFacts
from shared.wire.framing import prefix
from shared.wire.headers import (
    BATCH_COUNT,
    HTTP_HEADERS,
    LAST_ERROR,
    RECEIVED_AT_US,
    SOURCE_ADDRESS,
)
from shared.wire.raw import (
    BATCH_CONTENT_TYPE,
    BatchFormatError,
    RawMeta,
    batch_message,
    is_batch,
    pack,
    unpack,
)

FIRST = RequestFacts("req-1", 1_700_000_000.25, "application/xml", "10.0.0.1", {"a": "b"})
SECOND = RequestFacts("req-2", 1_700_000_001.5, None, None)


def test_a_batch_is_each_entry_s_facts_then_its_body_each_after_its_length() -> None:
    first_json, second_json = FIRST.to_json(), SECOND.to_json()

    assert pack([(FIRST, b"<x/>"), (SECOND, b"")]) == (
        prefix(len(first_json))
        + first_json
        + prefix(4)
        + b"<x/>"
        + prefix(len(second_json))
        + second_json
        + prefix(0)
    )


def test_a_batch_unpacks_to_its_entries_in_order() -> None:
    entries = [(FIRST, b"<x/>"), (SECOND, b""), (FIRST, b"\x00\xff")]

    assert unpack(pack(entries)) == entries
    assert unpack(b"") == []


def test_a_body_longer_than_a_length_can_say_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raw, "MAX_LENGTH", 3)

    assert unpack(pack([(FIRST, b"abc")])) == [(FIRST, b"abc")]  # as long as it may be
    with pytest.raises(ValueError, match=r"^a body of 4 GiB or more does not fit a batch entry$"):
        pack([(FIRST, b"abcd")])


def test_an_entry_whose_facts_do_not_read_is_refused_with_its_index() -> None:
    data = pack([(FIRST, b"ok")]) + prefix(2) + b"{}" + prefix(0)

    with pytest.raises(BatchFormatError, match=r"^entry 1: meta must be an object with "):
        unpack(data)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (prefix(5) + b"{}", "entry 0: its meta runs past the end of the batch"),
        (prefix(2) + b"{}" + b"\x00", "entry 0: truncated before the length of its body"),
        (prefix(2) + b"{}" + prefix(9), "entry 0: its body runs past the end of the batch"),
    ],
)
def test_a_body_that_is_not_exactly_entries_is_refused(data: bytes, says: str) -> None:
    with pytest.raises(BatchFormatError) as refused:
        unpack(data)

    assert str(refused.value) == says


def test_only_the_batch_content_type_is_a_batch() -> None:
    assert is_batch(BATCH_CONTENT_TYPE)
    assert BATCH_CONTENT_TYPE == "application/vnd.callback-fanout.batch+v1"
    assert not is_batch("application/xml")
    assert not is_batch(None)


def test_a_batch_message_is_persistent_and_named_after_its_first_body() -> None:
    entries = [(FIRST, b"<x/>"), (SECOND, b"{}")]

    message = batch_message(entries)

    assert message.body == pack(entries)
    assert message.message_id == "batch-req-1"
    assert message.content_type == BATCH_CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.headers == {BATCH_COUNT: 2}
    assert raw.BATCH_COUNT_HEADER == BATCH_COUNT == "x-batch-count"


def test_a_batch_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^a batch holds at least one body$"):
        batch_message([])


def test_the_lone_message_rebuilt_from_a_batch_entry_is_persistent_with_every_fact() -> None:
    [(facts, body)] = unpack(pack([(FIRST, b"<x/>")]))

    lone = facts.message(body, {LAST_ERROR: "why"})

    assert lone.body == b"<x/>"
    assert lone.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert lone.message_id == "req-1"
    assert lone.content_type == "application/xml"
    assert lone.headers == {
        RECEIVED_AT_US: 1_700_000_000_250_000,
        HTTP_HEADERS: {"a": "b"},
        SOURCE_ADDRESS: "10.0.0.1",
        LAST_ERROR: "why",
    }
    assert lone.properties.delivery_mode == 2


def test_raw_meta_is_the_request_s_facts_under_its_old_name() -> None:
    assert RawMeta is RequestFacts
