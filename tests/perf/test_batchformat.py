"""The batch format: what goes in comes out, byte for byte, or the batch is refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ParseError
from shared.wire.raw import (
    BATCH_CONTENT_TYPE,
    BATCH_COUNT_HEADER,
    BatchFormatError,
    RawMeta,
    batch_message,
    is_batch,
    pack,
    unpack,
)
from tests.conftest import SEEDS

_text = st.text(max_size=40)
_metas = st.builds(
    RawMeta,
    request_id=st.text(min_size=1, max_size=40),
    received_at=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    content_type=st.none() | _text,
    source_address=st.none() | _text,
    headers=st.dictionaries(_text, _text, max_size=4),
    token_name=st.none() | _text,
    # W3C Trace Context: absent, or a value (an empty one is no context, and reads as absent)
    traceparent=st.none() | st.text(min_size=1, max_size=60),
    tracestate=st.none() | st.text(min_size=1, max_size=60),
)


@given(st.lists(st.tuples(_metas, st.binary(max_size=3000)), min_size=1, max_size=20))
def test_any_entries_come_back_byte_for_byte_with_their_meta_and_in_order(
    entries: list[tuple[RawMeta, bytes]],
) -> None:
    assert unpack(pack(entries)) == entries


def test_the_seed_bodies_and_real_request_facts_round_trip_exactly() -> None:
    seeds = sorted(p for p in SEEDS.glob("*.*") if p.suffix in (".json", ".xml"))
    entries = [
        (
            RawMeta(
                request_id=f"{i:032x}",
                received_at=1_763_771_000.123456 + i,
                content_type="application/json" if p.suffix == ".json" else "application/xml",
                source_address="203.0.113.7",
                headers={"Content-Type": "application/xml", "User-Agent": "CI/1.0 (\u6570\u636e)"},
                token_name="tencent-ci" if i % 2 else None,
            ),
            p.read_bytes(),
        )
        for i, p in enumerate(seeds)
    ]
    assert len(entries) == 12
    unpacked = unpack(pack(entries))
    assert [body for _, body in unpacked] == [p.read_bytes() for p in seeds]
    assert [meta for meta, _ in unpacked] == [meta for meta, _ in entries]
    assert all(type(meta.received_at) is float for meta, _ in unpacked)


def test_a_batch_message_is_persistent_and_says_what_it_is_and_how_many_it_holds() -> None:
    entries = [(RawMeta(f"r{i}", 1.5, "application/xml", None), b"<a/>") for i in range(3)]
    message = batch_message(entries)
    assert message.content_type == BATCH_CONTENT_TYPE
    assert is_batch(message.content_type)
    assert not is_batch("application/xml")
    assert message.delivery_mode == 2
    assert message.headers == {BATCH_COUNT_HEADER: 3}
    assert message.message_id == "batch-r0"
    assert unpack(message.body) == entries


def test_a_lone_message_carries_the_body_and_the_request_as_properties() -> None:
    meta = RawMeta("rid", 12.25, "application/xml", "10.0.0.1", {"User-Agent": "ci"}, "main")
    message = meta.message(b"<Response/>")
    assert message.body == b"<Response/>"
    assert message.message_id == "rid"
    assert message.content_type == "application/xml"
    assert message.headers == {
        "x-received-at-us": 12_250_000,
        "x-http-headers": {"User-Agent": "ci"},
        "x-source-address": "10.0.0.1",
        "x-token-name": "main",
    }


def _entry(meta: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(meta)) + meta + struct.pack(">I", len(body)) + body


_GOOD_META = (
    b'{"request_id":"r","received_at":1.0,"content_type":null,"source_address":null,'
    b'"headers":{},"token_name":null}'
)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_entry(_GOOD_META, b"body")[:-1], "runs past the end"),
        (_entry(_GOOD_META, b"body") + b"\x00\x00", "truncated"),
        (_entry(b"not json", b"body"), "not JSON"),
        (_entry(b"[1, 2]", b"body"), "must be an object"),
        (_entry(_GOOD_META.replace(b'"r"', b'""'), b"body"), "request_id"),
        (_entry(_GOOD_META.replace(b"1.0", b'"yesterday"'), b"body"), "received_at"),
        (_entry(_GOOD_META.replace(b"{}", b'{"a":1}'), b"body"), "headers"),
        (_entry(_GOOD_META.replace(b'"token_name":null', b'"token_name":7'), b"b"), "token_name"),
    ],
)
def test_a_body_that_is_not_exactly_entries_is_refused_with_the_reason(
    data: bytes, says: str
) -> None:
    with pytest.raises(BatchFormatError, match=says) as refused:
        unpack(data)
    assert isinstance(refused.value, ParseError)  # the router parks it like any bad body
