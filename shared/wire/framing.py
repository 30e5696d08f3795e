"""Length-prefixed framing, the one both message formats use for their entries.

A chunk is a 4-byte big-endian unsigned length N, then N bytes. A batch of raw bodies
(``raw``) and a message of framed events (``events``) are entries of such chunks, back to
back; what a chunk holds, and any length with a meaning of its own, is the format's.
"""

from __future__ import annotations

import struct

from shared.errors import ParseError

__all__ = ["LENGTH", "MAX_LENGTH", "Frames", "frame", "prefix"]

LENGTH = struct.Struct(">I")
#: The largest length a prefix can say.
MAX_LENGTH = 2**32 - 1
#: The 4 bytes that go before a chunk of ``n`` bytes.
prefix = LENGTH.pack
_SIZE = LENGTH.size


def frame(*chunks: bytes) -> bytes:
    """``chunks``, each after its length."""
    return b"".join(part for chunk in chunks for part in (prefix(len(chunk)), chunk))


class Frames:
    """Reads the chunks of one message body in order, or refuses it with ``error``.

    ``container`` names the body in the reasons ("batch", "message"); ``what`` and ``index``
    name the chunk (its entry and what it holds).
    """

    __slots__ = ("_container", "_data", "_end", "_error", "offset")

    def __init__(self, data: bytes, error: type[ParseError], container: str) -> None:
        # Sliced as bytes: one copy each, no view to make first.
        self._data = data if type(data) is bytes else bytes(data)
        self._end = len(data)
        self._error = error
        self._container = container
        self.offset = 0

    def more(self) -> bool:
        """Whether any byte is left."""
        return self.offset < self._end

    def length(self, what: str, index: int) -> int:
        """The next length prefix (the bytes it counts are not read)."""
        offset = self.offset
        if offset + _SIZE > self._end:
            raise self._error(f"entry {index}: truncated before the length of its {what}")
        (size,) = LENGTH.unpack_from(self._data, offset)
        self.offset = offset + _SIZE
        return int(size)

    def take(self, size: int, what: str, index: int) -> bytes:
        """The next ``size`` bytes (those a length said)."""
        start = self.offset
        stop = start + size
        if stop > self._end:
            raise self._error(
                f"entry {index}: its {what} runs past the end of the {self._container}"
            )
        self.offset = stop
        return self._data[start:stop]

    def chunk(self, what: str, index: int) -> bytes:
        """The next chunk: its length, then as many bytes."""
        offset = self.offset
        end = self._end
        if offset + _SIZE > end:
            raise self._error(f"entry {index}: truncated before the length of its {what}")
        (size,) = LENGTH.unpack_from(self._data, offset)
        start = offset + _SIZE
        stop = start + size
        if stop > end:
            raise self._error(
                f"entry {index}: its {what} runs past the end of the {self._container}"
            )
        self.offset = stop
        return self._data[start:stop]
