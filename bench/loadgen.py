"""An open-loop HTTP load generator: a fixed request rate, latency counted from the release.

wrk measures throughput at saturation (closed loop: each connection sends its next request
when the previous answer arrives). Latency at a fixed offered rate needs an open loop, or a
slow answer delays the next request and hides the wait (coordinated omission); wrk2 is not
packaged, so this does it: requests are released on a fixed schedule (checked about every
millisecond) over a pool of keep-alive connections, wait in a local line when every connection
is busy, and each latency is measured from the release, so the time spent waiting for a free
connection counts, as it would for a real sender.

Bounded: ``rate * duration`` requests at most, a local backlog of ``backlog`` seconds of
requests (beyond it requests are counted as ``dropped``: the server is saturated), and a drain
deadline for the answers still outstanding at the end.

``--closed`` runs closed loop instead (each connection as fast as answers come), the fallback
when wrk is not installed. ``--ids FILE`` writes the ``X-Request-Id`` of every 2xx answer.

Prints one JSON object: counts, achieved rate and latency percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["LoadResult", "percentile", "run_load"]

_TICK = 0.001  # the scheduler wakes about every millisecond and releases what is due


def percentile(sorted_values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[max(0, min(len(sorted_values), rank) - 1)]


@dataclass
class LoadResult:
    """What one load run observed."""

    mode: str
    offered_rate: float | None
    duration: float
    connections: int
    sent: int = 0
    answered: int = 0
    ok: int = 0  # 2xx
    non_2xx: int = 0
    errors: int = 0  # connection failures, unparsable answers
    dropped: int = 0  # not sent: the local backlog bound was reached
    unanswered: int = 0  # sent, but no answer before the drain deadline
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx and non-2xx alike
    status_counts: collections.Counter[int] = field(default_factory=collections.Counter)
    request_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        ms = {
            f"p{name}": round(percentile(ordered, pct) * 1000, 3)
            for name, pct in (("50", 50), ("90", 90), ("99", 99), ("999", 99.9))
        }
        return {
            "mode": self.mode,
            "offered_rate": self.offered_rate,
            "duration": self.duration,
            "connections": self.connections,
            "sent": self.sent,
            "answered": self.answered,
            "ok": self.ok,
            "non_2xx": self.non_2xx,
            "errors": self.errors,
            "dropped": self.dropped,
            "unanswered": self.unanswered,
            "elapsed": round(self.elapsed, 3),
            "rate": round(self.answered / self.elapsed, 1) if self.elapsed else 0.0,
            "latency_ms": {**ms, "max": round(ordered[-1] * 1000, 3) if ordered else math.nan},
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
        }


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.since: float | None = None  # when the request in flight was released
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, since: float) -> None:
        assert self.transport is not None
        self.since = since
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = _header(head, b"content-length")
            if length is None or not head.startswith(b"http/1.1 "):
                self.gen.failed(self)
                assert self.transport is not None
                self.transport.abort()
                return
            total = end + 4 + int(length)
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            request_id = _header(head, b"x-request-id") if self.gen.collect_ids else None
            self.gen.answered(self, int(head[9:12]), request_id)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.since is not None:
            self.gen.failed(self)
        if not self.lost.done():
            self.lost.set_result(None)


def _header(head: bytes, name: bytes) -> str | None:
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    stop = head.find(b"\r\n", start)
    return head[start : stop if stop >= 0 else len(head)].strip().decode("latin-1")


class _Generator:
    def __init__(
        self,
        url: str,
        body: bytes,
        content_type: str,
        result: LoadResult,
        *,
        collect_ids: bool,
        closed: bool,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path or "/"
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "User-Agent: callback-fanout-bench\r\n\r\n"
        ).encode() + body
        self.result = result
        self.collect_ids = collect_ids
        self.closed = closed
        self.idle: list[_Connection] = []
        self.backlog: collections.deque[float] = collections.deque()
        self.in_flight = 0
        self.sending = True
        self.all_answered = asyncio.Event()

    async def open(self, count: int) -> list[_Connection]:
        loop = asyncio.get_running_loop()
        connections = []
        for _ in range(count):
            _, protocol = await loop.create_connection(
                lambda: _Connection(self), self.host, self.port
            )
            connections.append(protocol)
        self.idle = list(connections)
        return connections

    def offer(self, since: float, max_backlog: int) -> None:
        self.result.sent += 1
        if self.idle:
            self.in_flight += 1
            self.idle.pop().send(since)
        elif len(self.backlog) < max_backlog:
            self.backlog.append(since)
        else:
            self.result.sent -= 1
            self.result.dropped += 1

    def answered(self, conn: _Connection, status: int, request_id: str | None) -> None:
        now = time.perf_counter()
        assert conn.since is not None
        result = self.result
        result.latencies.append(now - conn.since)
        result.answered += 1
        result.status_counts[status] += 1
        if 200 <= status < 300:
            result.ok += 1
            if request_id is not None:
                result.request_ids.append(request_id)
        else:
            result.non_2xx += 1
        conn.since = None
        self._next(conn, now)

    def failed(self, conn: _Connection) -> None:
        self.result.errors += 1
        conn.since = None
        self.in_flight -= 1
        self._check_done()

    def _next(self, conn: _Connection, now: float) -> None:
        if self.backlog:
            conn.send(self.backlog.popleft())
        elif self.closed and self.sending:
            self.result.sent += 1
            conn.send(now)
        else:
            self.in_flight -= 1
            self.idle.append(conn)
            self._check_done()

    def _check_done(self) -> None:
        if not self.sending and self.in_flight == 0 and not self.backlog:
            self.all_answered.set()


async def run_load(
    url: str,
    body: bytes,
    *,
    rate: float | None,
    duration: float,
    connections: int = 64,
    content_type: str = "application/xml",
    backlog_seconds: float = 1.0,
    drain_timeout: float = 10.0,
    collect_ids: bool = False,
) -> LoadResult:
    """Offer ``rate`` requests per second for ``duration`` seconds (``rate=None``: closed loop)."""
    closed = rate is None
    result = LoadResult("closed" if closed else "open", rate, duration, connections)
    gen = _Generator(url, body, content_type, result, collect_ids=collect_ids, closed=closed)
    conns = await gen.open(connections)
    start = time.perf_counter()
    try:
        if rate is None:
            for _ in range(len(gen.idle)):
                gen.offer(start, 0)
            await asyncio.sleep(duration)
        else:
            total = int(rate * duration)
            max_backlog = max(1, int(rate * backlog_seconds))
            released = 0
            while released < total:
                now = time.perf_counter()
                due_count = min(total, math.floor((now - start) * rate) + 1)
                while released < due_count:
                    gen.offer(now, max_backlog)
                    released += 1
                await asyncio.sleep(_TICK)
        gen.sending = False
        gen._check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gen.all_answered.wait(), drain_timeout)
        result.elapsed = time.perf_counter() - start
        result.unanswered = gen.in_flight + len(gen.backlog)
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, type=Path, help="file POSTed as the body")
    parser.add_argument("--content-type", default="application/xml")
    parser.add_argument("--rate", type=float, help="requests per second (open loop)")
    parser.add_argument("--closed", action="store_true", help="closed loop, as fast as possible")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--backlog", type=float, default=1.0, help="seconds of local backlog")
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    parser.add_argument("--ids", type=Path, help="write the X-Request-Id of each 2xx here")
    args = parser.parse_args(argv)
    if args.closed == (args.rate is not None):
        parser.error("give exactly one of --rate and --closed")
    runner = asyncio.run
    try:
        import uvloop
    except ImportError:
        pass
    else:
        runner = uvloop.run
    result = runner(
        run_load(
            args.url,
            args.body.read_bytes(),
            rate=args.rate,
            duration=args.duration,
            connections=args.connections,
            content_type=args.content_type,
            backlog_seconds=args.backlog,
            drain_timeout=args.drain_timeout,
            collect_ids=args.ids is not None,
        )
    )
    if args.ids is not None:
        args.ids.write_text("".join(f"{rid}\n" for rid in result.request_ids))
    json.dump(result.summary(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
