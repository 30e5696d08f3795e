"""Hostile HTTP at the running ingress: oversized, compressed, slow and malformed requests
are cut off cheaply and publish nothing."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import aiohttp
import pytest

from tests.security.conftest import Ingress, StartIngress, new_secret
from tests.support.broker import BrokerClient

pytestmark = pytest.mark.broker

LIMIT = 64 * 1024
#: The limit of the memory tests: large enough to stand out from the process's own noise.
BIG_LIMIT = 1024 * 1024
T = TypeVar("T")
#: Longest a test waits for the server to act (not a timing assertion: a deadline).
DEADLINE = 15.0


async def _open(ingress: Ingress) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", ingress.port)


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (within the deadline)."""
    received = b""
    async with asyncio.timeout(DEADLINE):
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                received += chunk
    return received


async def _send_while_reading(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    chunk: bytes,
    count: int,
    pause: float,
) -> tuple[int, bytes]:
    """Send ``chunk`` up to ``count`` times, ``pause`` seconds apart, while reading what the
    server sends until it closes; returns (chunks sent, bytes received)."""
    sent = 0

    async def send() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            for _ in range(count):
                writer.write(chunk)
                await writer.drain()
                sent += 1
                await asyncio.sleep(pause)

    sending = asyncio.create_task(send())
    try:
        received = await _read_until_closed(reader)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        writer.close()
    return sent, received


def _head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_a_body_at_the_limit_is_taken_and_one_byte_more_is_refused_with_413(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], max_body_bytes=LIMIT)

    at_limit = await ingress.post(f"/callbacks/{secret}", b"a" * LIMIT)
    over = await ingress.post(f"/callbacks/{secret}", b"b" * (LIMIT + 1))

    assert (at_limit.status, over.status) == (200, 413)
    [message] = await broker.take_all(broker.topology.raw)
    assert message.body == b"a" * LIMIT


async def test_a_declared_length_past_the_limit_is_refused_before_any_body_is_read(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], max_body_bytes=LIMIT)
    reader, writer = await _open(ingress)
    # Claims 10 GiB and sends none of it: the answer comes at once, not after 10 GiB.
    writer.write(_head(f"/callbacks/{secret}", "Content-Length: 10737418240"))
    await writer.drain()

    status_line = await asyncio.wait_for(reader.readline(), DEADLINE)

    assert status_line.startswith(b"HTTP/1.1 413")
    writer.close()
    assert await broker.count(broker.topology.raw) == 0
    assert (await ingress.readiness())["refused"] == {"too_large": 1}


async def _peak_while(coroutine: Awaitable[T]) -> tuple[T, int]:
    """The result of ``coroutine`` and the peak of memory allocated while it ran."""
    tracemalloc.start()
    try:
        result = await coroutine
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


async def test_a_chunked_upload_past_the_limit_is_refused_within_bounded_memory(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], max_body_bytes=BIG_LIMIT)
    _, baseline = await _peak_while(ingress.post(f"/callbacks/{secret}", b"{}"))
    await broker.take_all(broker.topology.raw)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1024):  # 64 MiB offered in 64 KiB chunks, no Content-Length
            yield b"c" * 65536

    async def upload() -> int | None:
        try:
            return (await ingress.post(f"/callbacks/{secret}", chunks())).status
        except aiohttp.ClientError:
            return None  # the server may close the connection as soon as it has answered

    status, peak = await _peak_while(upload())

    assert status in (413, None)
    assert peak < baseline + 4 * BIG_LIMIT
    assert await broker.count(broker.topology.raw) == 0
    assert (await ingress.readiness())["refused"] == {"too_large": 1}


def _compress(coding: str, data: bytes) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data, compresslevel=9)
    return zlib.compress(data, 9)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compression_bomb_is_refused_without_allocating_its_expanded_size(
    start_ingress: StartIngress, broker: BrokerClient, coding: str
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], max_body_bytes=BIG_LIMIT)
    bomb = _compress(coding, bytes(48 * BIG_LIMIT))  # deflate packs zeros about 1000:1
    assert len(bomb) < LIMIT  # it passes any check on the bytes on the wire
    _, baseline = await _peak_while(ingress.post(f"/callbacks/{secret}", b"{}"))
    await broker.take_all(broker.topology.raw)

    reply, peak = await _peak_while(
        ingress.post(f"/callbacks/{secret}", bomb, headers={"Content-Encoding": coding})
    )

    assert reply.status == 413
    assert peak < baseline + 4 * BIG_LIMIT  # against 48 times the limit if it went off
    assert await broker.count(broker.topology.raw) == 0


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate"])
async def test_a_compressed_body_is_published_decoded(
    start_ingress: StartIngress, broker: BrokerClient, coding: str
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], max_body_bytes=LIMIT)
    body = b'{"padding":"' + b"z" * (LIMIT - 14) + b'"}'
    assert len(body) == LIMIT

    reply = await ingress.post(
        f"/callbacks/{secret}", _compress(coding, body), headers={"Content-Encoding": coding}
    )

    assert reply.status == 200
    [message] = await broker.take_all(broker.topology.raw)
    assert message.body == body


@pytest.mark.parametrize(
    ("coding", "payload", "status"),
    [
        ("gzip", gzip.compress(b'{"a":1}' * 100)[:-30], 400),  # truncated
        ("gzip", b"not gzip at all", 400),
        ("deflate", b"\x78\x9c" + b"\xff" * 16, 400),
        ("br", b"\x1b\x00\x00", 415),
        ("gzip, gzip", gzip.compress(gzip.compress(b"{}")), 415),
    ],
)
async def test_broken_or_unknown_content_codings_are_refused_and_publish_nothing(
    start_ingress: StartIngress, broker: BrokerClient, coding: str, payload: bytes, status: int
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"])
    reply = await ingress.post(
        f"/callbacks/{secret}", payload, headers={"Content-Encoding": coding}
    )
    assert reply.status == status
    assert await broker.count(broker.topology.raw) == 0
    assert (await ingress.readiness())["refused"] == {"bad_encoding": 1}


async def test_a_client_that_trickles_its_request_head_is_cut_off(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], header_timeout=0.5)
    reader, writer = await _open(ingress)
    writer.write(f"POST /callbacks/{secret} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())

    planned = int(DEADLINE / 0.1)  # one byte per 100 ms, never a full head
    sent, received = await _send_while_reading(reader, writer, b"a", planned, 0.1)
    assert sent < planned  # closed by the server while the client still trickled
    assert received == b""  # no request was ever taken
    assert await broker.count(broker.topology.raw) == 0


async def test_a_connection_that_sends_nothing_is_closed(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(tokens=[f"ci={new_secret()}"], header_timeout=0.5)
    reader, writer = await _open(ingress)
    try:
        assert await _read_until_closed(reader) == b""
    finally:
        writer.close()


async def test_a_client_that_trickles_its_body_gets_408_and_nothing_is_published(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], body_timeout=0.5)
    reader, writer = await _open(ingress)
    writer.write(_head(f"/callbacks/{secret}", "Content-Length: 1000") + b"x" * 10)
    await writer.drain()

    # 10 bytes per 100 ms: the body never ends
    _, received = await _send_while_reading(reader, writer, b"y" * 10, int(DEADLINE / 0.1), 0.1)
    assert received.startswith(b"HTTP/1.1 408")
    assert await broker.count(broker.topology.raw) == 0
    assert (await ingress.readiness())["refused"] == {"slow_body": 1}


@pytest.mark.parametrize(
    "make_head",
    [
        pytest.param(lambda s: _head(f"/callbacks/{s}?pad={'p' * 2000}"), id="long-request-line"),
        pytest.param(lambda s: _head(f"/callbacks/{s}", "X-Big: " + "h" * 2000), id="long-header"),
        pytest.param(
            lambda s: _head(f"/callbacks/{s}", *(f"X-Many-{i}: v" for i in range(40))),
            id="many-headers",
        ),
    ],
)
async def test_oversized_request_heads_are_refused_and_publish_nothing(
    start_ingress: StartIngress, broker: BrokerClient, make_head: object
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], max_header_bytes=1024, max_headers=32)
    assert callable(make_head)
    reader, writer = await _open(ingress)
    try:
        writer.write(make_head(secret)[:-2] + b"Content-Length: 2\r\n\r\n{}")
        await writer.drain()
        received = await _read_until_closed(reader)
    finally:
        writer.close()
    status = int(received.split(b" ", 2)[1])
    assert status == 400
    assert await broker.count(broker.topology.raw) == 0
    # the same request within the limits is taken
    normal = await ingress.post(f"/callbacks/{secret}", b"{}")
    assert normal.status == 200


async def test_a_refused_endless_upload_is_answered_and_its_connection_closed(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    ingress = await start_ingress(tokens=[f"ci={new_secret()}"])
    reader, writer = await _open(ingress)
    writer.write(_head(f"/callbacks/{new_secret()}", "Transfer-Encoding: chunked"))
    planned = int(DEADLINE / 0.01)  # 64 KiB chunks every 10 ms, never a last chunk
    chunk = b"10000\r\n" + b"u" * 65536 + b"\r\n"
    sent, received = await _send_while_reading(reader, writer, chunk, planned, 0.01)
    assert received.startswith(b"HTTP/1.1 404")
    assert sent < planned  # not read to the end: closed while the client still sent
    assert await broker.count(broker.topology.raw) == 0
