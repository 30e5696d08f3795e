"""The ingress's publisher: straight to the broker, or through the local spool when it is away.

:func:`build_publisher` picks one from the settings. :class:`SpoolingPublisher` answers a
request once its body is durable either way: confirmed by the broker, or fsynced in the
spool; a forwarder task moves spooled bodies to the broker, in order, once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Protocol

from ingress.groupcommit import AmqpPublisher, Durable, Publisher, RawMeta
from ingress.spool import Record, Spool
from shared.alarms import BrokerAlarm
from shared.errors import BrokerUnavailable
from shared.logs import get_logger
from shared.metrics import Histogram
from shared.settings import Settings

__all__ = ["ManagedPublisher", "SpoolingPublisher", "build_publisher"]

log = get_logger("ingress.spool")

#: Spooled records the forwarder publishes at once, at most (and at most this many bytes).
FORWARD_WINDOW_COUNT = 128
FORWARD_WINDOW_BYTES = 4 * 1024 * 1024


class ManagedPublisher(Publisher, Protocol):
    """A publisher with a life cycle, as the ingress service runs it."""

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Connect (retrying until the broker answers or ``stop`` is set)."""
        ...

    async def close(self) -> None:
        """Release the connection; idempotent."""
        ...


def build_publisher(
    settings: Settings,
    *,
    batch_bodies: Histogram | None = None,
    alarm: BrokerAlarm | None = None,
) -> ManagedPublisher:
    """The ingress's publisher: spooling when ``spool_dir`` is set, else the broker's alone.

    ``batch_bodies`` observes the bodies of each message the broker confirmed; ``alarm``
    hears when the broker blocks the connection: bodies are spooled (or refused) at once.
    """
    broker = AmqpPublisher(settings, batch_bodies=batch_bodies, alarm=alarm)
    if settings.spool_dir is None:
        return broker
    return SpoolingPublisher(broker, Spool(settings.spool_dir, settings.spool_max_bytes))


class SpoolingPublisher:
    """Publishes through ``inner``; spools what the broker does not confirm in time.

    While the spool holds records, new bodies are spooled too, so that the broker receives
    them in the order they came. A body is answered once the broker confirmed it or once it
    is on local disk; the forwarder removes a spooled body only after the broker confirmed it.
    Delivery is at least once: a body whose confirm timed out may have reached the broker
    and is spooled as well, and a crash between a confirm and the removal sends one again.
    """

    def __init__(
        self,
        inner: ManagedPublisher,
        spool: Spool,
        *,
        retry_interval: float = 0.5,
        max_retry_interval: float = 5.0,
        scan_interval: float = 5.0,
        stop_timeout: float = 10.0,
        window_count: int = FORWARD_WINDOW_COUNT,
        window_bytes: int = FORWARD_WINDOW_BYTES,
    ) -> None:
        self.inner = inner
        self.spool = spool
        self._retry_interval = retry_interval
        self._max_retry_interval = max(max_retry_interval, retry_interval)
        self._scan_interval = scan_interval
        self._stop_timeout = stop_timeout
        self._window_count = window_count
        self._window_bytes = window_bytes
        self._forwarder: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._spooling = False
        self._forwarded = 0
        self._recovering = False  # the spool's leftovers are not claimed yet

    @property
    def ready(self) -> bool:
        """True when the broker is connected or the spool can take a body."""
        return self.inner.ready or self.spool.can_accept()

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Open the spool, start forwarding what it holds, then connect the broker.

        The spool takes bodies as soon as this is called; what earlier processes left is
        claimed by the forwarder, and until then new bodies are spooled behind it.
        """
        if self._forwarder is None:
            self.spool.open(claim=False)
            self._recovering = True
            self._stopping.clear()
            self._forwarder = asyncio.create_task(self._forward(), name="spool-forwarder")
        await self.inner.start(stop)

    async def publish(self, body: bytes, meta: RawMeta) -> Durable:
        if not self._recovering and not self.spool.pending:
            try:
                return await self.inner.publish(body, meta)
            except BrokerUnavailable as exc:
                reason = str(exc)
        else:
            reason = "earlier bodies are spooled"
        await asyncio.to_thread(self.spool.append, body, meta)  # BrokerUnavailable when full
        if not self._spooling:
            self._spooling = True
            log.warning("spooling bodies: broker unavailable", reason=reason)
        log.debug("callback spooled", request_id=meta.request_id, size=len(body))
        self._wake.set()
        return "spooled"

    async def close(self) -> None:
        """Stop forwarding (the publish in flight finishes), disconnect, release the spool."""
        self._stopping.set()
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is not None:
            try:
                await asyncio.wait_for(asyncio.shield(forwarder), self._stop_timeout)
            except TimeoutError:
                forwarder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarder
        await self.inner.close()
        self.spool.close()

    async def _forward(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            left = await asyncio.to_thread(self.spool.claim_orphans)
        except OSError as exc:
            log.error("spool: cannot claim what earlier processes left", error=str(exc))
        else:
            if left:
                log.warning("spool: records left by an earlier process", records=left)
        finally:
            self._recovering = False
        next_scan = loop.time() + self._scan_interval
        backoff = self._retry_interval
        while not self._stopping.is_set():
            self._wake.clear()
            pause, refused = self._scan_interval, False
            try:
                if loop.time() >= next_scan:
                    await asyncio.to_thread(self.spool.claim_orphans)
                    next_scan = loop.time() + self._scan_interval
                if self.spool.pending:
                    pause = self._retry_interval
                    if self.inner.ready:
                        forwarded, refused = await self._drain()
                        if refused:  # back off: each attempt may reach a slow broker late
                            pause, backoff = backoff, min(backoff * 2, self._max_retry_interval)
                        else:
                            backoff = self._retry_interval
                            if forwarded:
                                continue
            except Exception:
                log.exception("spool forwarder failed; retrying")
                pause = self._retry_interval
            await self._pause(min(pause, max(0.0, next_scan - loop.time())), wake=not refused)

    async def _drain(self) -> tuple[int, bool]:
        """Forward spooled records in order; how many, and whether the broker refused one.

        Records go out a window at a time, published together in order (the broker publisher
        keeps their order and may share confirms); they are removed in order up to the first
        one refused. Any after it that the broker did confirm are sent again later.
        """
        forwarded = 0
        records = self.spool.records()
        while not self._stopping.is_set() and (window := self._window_of(records)):
            outcomes = await asyncio.gather(
                *(self.inner.publish(r.body, r.meta) for r in window), return_exceptions=True
            )
            for record, outcome in zip(window, outcomes, strict=True):
                if isinstance(outcome, BrokerUnavailable):
                    log.info("spool: broker still unavailable", error=str(outcome))
                    return forwarded, True
                if isinstance(outcome, BaseException):
                    raise outcome
                self.spool.remove(record)
                forwarded += 1
        self._forwarded += forwarded
        if forwarded and not self.spool.pending:
            log.info("spool drained: forwarding directly again", forwarded=self._forwarded)
            self._spooling = False
            self._forwarded = 0
        return forwarded, False

    def _window_of(self, records: Iterator[Record]) -> list[Record]:
        """The next records to publish together: at least one, within the window's bounds."""
        window: list[Record] = []
        size = 0
        for record in records:
            window.append(record)
            size += len(record.body)
            if len(window) >= self._window_count or size >= self._window_bytes:
                break
        return window

    async def _pause(self, seconds: float, *, wake: bool) -> None:
        """Sleep until stopped, ``seconds`` have passed, or (``wake``) a body was spooled."""
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wake:
            waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
