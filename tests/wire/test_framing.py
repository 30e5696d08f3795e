"""The one length-prefixed framing: chunks come back as written, or the body is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ParseError
from shared.wire.framing import Frames, frame, prefix


class _Refused(ParseError):
    pass


@given(st.lists(st.binary(max_size=300), max_size=10))
def test_chunks_come_back_in_order_byte_for_byte(chunks: list[bytes]) -> None:
    frames = Frames(frame(*chunks), _Refused, "message")
    read: list[bytes] = []
    while frames.more():
        read.append(frames.chunk("part", len(read)))
    assert read == chunks


def test_a_length_read_alone_leaves_its_bytes_to_take() -> None:
    frames = Frames(prefix(3) + b"abc" + prefix(0xFFFFFFFF), _Refused, "message")
    assert frames.take(frames.length("part", 0), "part", 0) == b"abc"
    assert frames.length("marker", 1) == 0xFFFFFFFF
    assert not frames.more()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\x00\x00", "entry 0: truncated before the length of its part"),
        (prefix(5) + b"abc", "entry 0: its part runs past the end of the batch"),
    ],
)
def test_a_body_cut_short_is_refused_with_the_format_s_error(data: bytes, says: str) -> None:
    with pytest.raises(_Refused, match=says):
        Frames(data, _Refused, "batch").chunk("part", 0)
