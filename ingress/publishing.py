"""The ingress's publisher: straight to the broker, or through the local spool when it is away.

:func:`build_publisher` picks one from the settings. :class:`SpoolingPublisher` answers a
request once its body is durable either way: confirmed by the broker, or fsynced in the
spool; a forwarder task moves spooled bodies to the broker, in order, once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from ingress.publisher import AmqpPublisher, Publisher, RawMeta
from ingress.spool import Spool
from shared.errors import BrokerUnavailable
from shared.logs import get_logger
from shared.settings import Settings

__all__ = ["ManagedPublisher", "SpoolingPublisher", "build_publisher"]

log = get_logger("ingress.spool")


class ManagedPublisher(Publisher, Protocol):
    """A publisher with a life cycle, as the ingress service runs it."""

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Connect (retrying until the broker answers or ``stop`` is set)."""
        ...

    async def close(self) -> None:
        """Release the connection; idempotent."""
        ...


def build_publisher(settings: Settings) -> ManagedPublisher:
    """The ingress's publisher: spooling when ``spool_dir`` is set, else the broker's alone."""
    broker = AmqpPublisher(settings)
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
        scan_interval: float = 5.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.inner = inner
        self.spool = spool
        self._retry_interval = retry_interval
        self._scan_interval = scan_interval
        self._stop_timeout = stop_timeout
        self._forwarder: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._spooling = False
        self._forwarded = 0

    @property
    def ready(self) -> bool:
        """True when the broker is connected or the spool can take a body."""
        return self.inner.ready or self.spool.can_accept()

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Open the spool, start forwarding what it holds, then connect the broker."""
        if self._forwarder is None:
            left = await asyncio.to_thread(self.spool.open)
            if left:
                log.warning("spool: records left by an earlier process", records=left)
            self._stopping.clear()
            self._forwarder = asyncio.create_task(self._forward(), name="spool-forwarder")
        await self.inner.start(stop)

    async def publish(self, body: bytes, meta: RawMeta) -> None:
        if not self.spool.pending:
            try:
                await self.inner.publish(body, meta)
            except BrokerUnavailable as exc:
                reason = str(exc)
            else:
                return
        else:
            reason = "earlier bodies are still spooled"
        await asyncio.to_thread(self.spool.append, body, meta)  # BrokerUnavailable when full
        if not self._spooling:
            self._spooling = True
            log.warning("spooling bodies: broker unavailable", reason=reason)
        log.debug("callback spooled", request_id=meta.request_id, size=len(body))
        self._wake.set()

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
        next_scan = loop.time() + self._scan_interval
        while not self._stopping.is_set():
            self._wake.clear()
            pause = self._scan_interval
            try:
                if loop.time() >= next_scan:
                    await asyncio.to_thread(self.spool.claim_orphans)
                    next_scan = loop.time() + self._scan_interval
                if self.spool.pending:
                    pause = self._retry_interval
                    if self.inner.ready:
                        forwarded, failed = await self._drain()
                        if forwarded and not failed:
                            continue
            except Exception:
                log.exception("spool forwarder failed; retrying")
                pause = self._retry_interval
            await self._pause(min(pause, max(0.0, next_scan - loop.time())))

    async def _drain(self) -> tuple[int, bool]:
        """Forward spooled records in order; how many, and whether the broker refused one."""
        forwarded = 0
        for record in self.spool.records():
            if self._stopping.is_set():
                break
            try:
                await self.inner.publish(record.body, record.meta)
            except BrokerUnavailable as exc:
                log.info("spool: broker still unavailable", error=str(exc))
                return forwarded, True
            self.spool.remove(record)
            forwarded += 1
            self._forwarded += 1
        if forwarded and not self.spool.pending:
            log.info("spool drained: forwarding directly again", forwarded=self._forwarded)
            self._spooling = False
            self._forwarded = 0
        return forwarded, False

    async def _pause(self, seconds: float) -> None:
        """Sleep until woken (a body was spooled), stopped, or ``seconds`` have passed."""
        waits = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
