"""Reading a request body in bounded memory: the limit holds for what the body expands to.

aiohttp's own decompression buffers several times the body limit ahead of the reader, so a
small gzip bomb costs the ingress a multiple of the limit; the server runs with
``auto_decompress=False`` and this module decodes ``gzip`` and ``deflate`` itself, never
producing more than one byte past the limit. Other content codings are refused (415): a
callback sender has no need of them.
"""

from __future__ import annotations

import zlib

from aiohttp import hdrs, web

from shared.errors import FanoutError

__all__ = ["BodyRefused", "read_body"]

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


class BodyRefused(FanoutError):
    """The body cannot be taken: ``status`` to answer, ``reason`` to count and log."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


def _too_large(max_bytes: int) -> BodyRefused:
    return BodyRefused(413, "too_large", f"the body is larger than {max_bytes} bytes")


class _Decoder:
    """gzip (several members too) or deflate (zlib-wrapped or raw), output bounded per call."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._wbits = _GZIP_WBITS if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._inflater: zlib._Decompress | None = None

    def _start(self, first: bytes) -> zlib._Decompress:
        if self._coding == "deflate" and first[0] & 0x0F != 8:
            self._wbits = -zlib.MAX_WBITS  # raw deflate, as some senders send it
        return zlib.decompressobj(self._wbits)

    def feed(self, data: bytes, room: int, max_bytes: int) -> bytes:
        """Decode ``data``; :class:`BodyRefused` as soon as it expands past ``room`` bytes."""
        out = bytearray()
        try:
            while data:
                if self._inflater is None:
                    self._inflater = self._start(data)
                inflater = self._inflater
                out += inflater.decompress(data, room - len(out) + 1)
                if len(out) > room:
                    raise _too_large(max_bytes)
                if inflater.unconsumed_tail:
                    data = inflater.unconsumed_tail
                elif inflater.eof and inflater.unused_data:  # the next gzip member
                    data, self._inflater = inflater.unused_data, None
                else:
                    break
        except zlib.error:
            reason = f"the body is not valid {self._coding}"
            raise BodyRefused(400, "bad_encoding", reason) from None
        return bytes(out)

    def finish(self) -> None:
        if self._inflater is None or not self._inflater.eof:
            raise BodyRefused(400, "bad_encoding", f"the {self._coding} body is truncated")


async def read_body(request: web.BaseRequest, max_bytes: int) -> bytes:
    """The whole (decoded) body, at most ``max_bytes``; :class:`BodyRefused` otherwise.

    Memory stays within about twice ``max_bytes`` plus the transport's read buffer,
    whatever the client sends or declares.
    """
    coding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if coding not in _CODINGS:
        raise BodyRefused(415, "bad_encoding", "content codings taken: gzip, deflate, identity")
    decoder = _Decoder(coding) if coding not in ("", "identity") else None
    body = bytearray()
    while chunk := await request.content.readany():
        if decoder is not None:
            chunk = decoder.feed(chunk, max_bytes - len(body), max_bytes)
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    if decoder is not None:
        decoder.finish()
    return bytes(body)
