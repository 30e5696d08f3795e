"""Making a raw body durable: a publisher-confirmed, persistent message on ``<prefix>.raw``.

Group commit: bodies that wait for the broker at the same moment share one message and one
confirm. A body that finds the way free leaves at once, alone, as an ordinary message (byte
for byte: the queue stays readable and nothing waits for company at low load); bodies that
arrive while the publishes in flight use every slot travel together in the next one, as one
batch message (``shared.wire.raw``), bounded in bytes and in count. While a message is
in flight, a few bodies do not take a free slot for themselves but wait for the next
confirm and company: a message costs the ingress some 250 µs of CPU (its encoding, the
write, the confirm through the client's layers), a body in it some 5 µs. Measured at
saturation on one core: without that rule three messages in ten carried one body, 8 bodies
a message on average and 100 µs of CPU a request; with it (12 bodies), 15 bodies and 75 µs
and more requests a second (8 and 16 did worse on both). Each request still returns only
once the broker confirmed the message that holds its body; if that message fails, every
request in it gets :class:`BrokerUnavailable` (503, the sender retries).

While the broker blocks the connection (a memory or disk alarm, ``shared.alarms``), nothing
waits for it: the bodies waiting and those in messages not yet confirmed are answered
:class:`BrokerUnavailable` at once (a spool takes them), and so is every new body until the
alarm clears. A message that was on its way may still be confirmed after the alarm: its
bodies are then in the raw queue and, when spooled, in the spool too (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Literal, Protocol

from aio_pika.abc import AbstractQueue, AbstractRobustConnection

from shared.alarms import BrokerAlarm
from shared.amqp import connect, within
from shared.confirms import RenewingChannel
from shared.errors import BrokerUnavailable
from shared.logs import get_logger
from shared.metrics import Histogram
from shared.settings import Settings
from shared.topology import Topology
from shared.wire.raw import RawMeta, batch_message

__all__ = ["AmqpPublisher", "Durable", "Publisher", "RawMeta"]

log = get_logger("ingress.publisher")

#: Defaults of the group commit; measured with ``bench/ingress_bench.py``.
MAX_BATCH_BYTES = 1024 * 1024
MAX_BATCH_COUNT = 256
MAX_IN_FLIGHT = 3
MIN_FOLLOWING = 12

#: Where a body was made durable: confirmed by the broker, or fsynced in the local spool.
Durable = Literal["accepted", "spooled"]


class Publisher(Protocol):
    """Makes one body durable or raises :class:`BrokerUnavailable`."""

    @property
    def ready(self) -> bool:
        """True when the broker is connected and the topology declared."""
        ...

    async def publish(self, body: bytes, meta: RawMeta) -> Durable:
        """Return only once the body is durable, saying where."""
        ...


@dataclass(slots=True)
class _Waiting:
    body: bytes
    meta: RawMeta
    done: asyncio.Future[None]
    since: float


class AmqpPublisher:
    """Publishes raw bodies with publisher confirms on one channel, with group commit.

    At most ``max_in_flight`` messages are unconfirmed at once. A body that finds a free slot
    leaves at the next turn of the event loop (alone, unless others arrived in the same turn);
    the others wait for the first slot that frees and leave together, at most
    ``max_batch_count`` bodies or ``max_batch_bytes`` per message. A message that would leave
    while others are unconfirmed carries at least ``min_following`` bodies, or is full;
    fewer wait for the next confirm. ``confirm_timeout`` bounds
    the whole wait of each request, queueing included. ``batch_bodies``, when given,
    observes the bodies of each confirmed message.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_batch_count: int = MAX_BATCH_COUNT,
        max_in_flight: int = MAX_IN_FLIGHT,
        min_following: int = MIN_FOLLOWING,
        batch_bodies: Histogram | None = None,
        alarm: BrokerAlarm | None = None,
    ) -> None:
        if min(max_batch_bytes, max_batch_count, max_in_flight, min_following) < 1:
            raise ValueError("batch bounds, max_in_flight and min_following must be at least 1")
        self._settings = settings
        self._topology = Topology(settings.prefix, settings.quorum_initial_group_size)
        self._connection: AbstractRobustConnection | None = None
        self._publishing: RenewingChannel[AbstractQueue] | None = None
        self._declared = False
        self._max_bytes = max_batch_bytes
        self._max_count = max_batch_count
        self._max_in_flight = max_in_flight
        self._min_following = min(min_following, max_batch_count)
        self._waiting: list[_Waiting] = []
        self._waiting_bytes = 0
        self._in_flight: dict[asyncio.Task[None], list[_Waiting]] = {}
        self.alarm = alarm if alarm is not None else BrokerAlarm("ingress")
        self.alarm.listen(self._blocked)
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch_bodies = batch_bodies
        #: Messages and bodies confirmed since start (for tests and diagnostics).
        self.messages_confirmed = 0
        self.bodies_confirmed = 0

    @property
    def ready(self) -> bool:
        channel = self._publishing.channel if self._publishing is not None else None
        return (
            self._declared
            and channel is not None
            and not channel.is_closed
            and not self.alarm.blocked
        )

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Connect (retrying until the broker answers) and declare the raw queue."""
        self._loop = asyncio.get_running_loop()  # asked once: each call costs a syscall
        self._connection = await connect(
            self._settings, role="ingress", stop=stop, alarm=self.alarm
        )
        self._publishing = RenewingChannel(
            self._connection, self._topology.declare_ingress, what="ingress"
        )
        await self._publishing.open()
        self._declared = True
        log.info("ingress publisher ready", queue=self._topology.raw)

    async def publish(self, body: bytes, meta: RawMeta) -> Durable:
        loop = self._loop
        if loop is None or not self.ready:
            raise self._unavailable()
        done: asyncio.Future[None] = loop.create_future()
        self._waiting.append(_Waiting(body, meta, done, loop.time()))
        self._waiting_bytes += len(body)
        if not self._flush_scheduled and self._may_send():
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        await done
        return "accepted"

    def _may_send(self) -> bool:
        """Whether a message may leave now: a slot is free, and it leaves alone in flight
        or it is worth a slot of its own (``min_following`` bodies, or full)."""
        in_flight = len(self._in_flight)
        if in_flight >= self._max_in_flight:
            return False
        return (
            in_flight == 0
            or len(self._waiting) >= self._min_following
            or self._waiting_bytes >= self._max_bytes
        )

    def _flush(self) -> None:
        """Send what waits, as long as a message may leave."""
        self._flush_scheduled = False
        loop = self._loop
        assert loop is not None
        while self._waiting and self._may_send():
            batch = self._take()
            task = loop.create_task(self._send(batch))
            self._in_flight[task] = batch
            task.add_done_callback(self._sent)

    def _take(self) -> list[_Waiting]:
        waiting = self._waiting
        size = len(waiting[0].body)
        count = 1
        while count < len(waiting) and count < self._max_count:
            more = size + len(waiting[count].body)
            if more > self._max_bytes:
                break
            size = more
            count += 1
        batch = waiting[:count]
        del waiting[:count]
        self._waiting_bytes -= size
        return batch

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if self._waiting and not self._flush_scheduled:
            self._flush()

    async def _send(self, batch: list[_Waiting]) -> None:
        publishing = self._publishing
        channel = publishing.channel if publishing is not None else None
        loop = self._loop
        assert loop is not None
        # The oldest body of the batch has already waited; the confirm gets what remains.
        remaining = self._settings.confirm_timeout - (loop.time() - batch[0].since)
        error: BrokerUnavailable | None = None
        try:
            if channel is None or channel.is_closed or not self._declared:
                raise BrokerUnavailable("broker not connected")
            if remaining <= 0:
                raise BrokerUnavailable("broker did not confirm in time")
            if len(batch) == 1:
                message = batch[0].meta.message(batch[0].body)
            else:
                message = batch_message([(w.meta, w.body) for w in batch])
            async with asyncio.timeout(remaining):  # no task of its own, unlike wait_for
                await channel.default_exchange.publish(
                    message, routing_key=self._topology.raw, mandatory=True
                )
        except BrokerUnavailable as exc:
            error = exc
        except TimeoutError:
            error = BrokerUnavailable("broker did not confirm in time")
        except Exception as exc:  # refused, returned, channel gone: not durable
            error = BrokerUnavailable(f"broker refused the message: {exc!r}")
            if publishing is not None:
                publishing.refused(exc)  # a nack: this channel may be stale
        except BaseException:  # cancelled: no request may wait for an answer that never comes
            error = BrokerUnavailable("publish cancelled")
            raise
        else:
            self.messages_confirmed += 1
            self.bodies_confirmed += len(batch)
            if self._batch_bodies is not None:
                self._batch_bodies.observe(len(batch))
        finally:
            self._answer(batch, error)

    def _unavailable(self) -> BrokerUnavailable:
        reason = self.alarm.reason
        if reason is not None:
            return BrokerUnavailable(f"broker blocked the connection: {reason}")
        return BrokerUnavailable("broker not connected")

    def _blocked(self, reason: str | None) -> None:
        """The broker blocked the connection: answer every body that waits for it now."""
        if reason is None:
            return
        error = self._unavailable()
        waiting, self._waiting = self._waiting, []
        self._waiting_bytes = 0
        self._answer(waiting, error)
        for batch in self._in_flight.values():
            self._answer(batch, error)  # the message goes on; its requests do not wait

    @staticmethod
    def _answer(batch: list[_Waiting], error: BrokerUnavailable | None) -> None:
        for waiting in batch:
            if waiting.done.done():  # the request went away (client disconnected)
                continue
            if error is None:
                waiting.done.set_result(None)
            else:
                waiting.done.set_exception(error)

    async def close(self) -> None:
        self._declared = False
        if self._in_flight:
            with contextlib.suppress(Exception):
                await asyncio.wait(set(self._in_flight), timeout=self._settings.confirm_timeout)
        for waiting in self._waiting:
            if not waiting.done.done():
                waiting.done.set_exception(BrokerUnavailable("ingress shutting down"))
        self._waiting.clear()
        self._waiting_bytes = 0
        if self._publishing is not None:
            await within(5.0, self._publishing.close(), "close channel")
            self._publishing = None
        if self._connection is not None:
            await within(5.0, self._connection.close(), "close connection")
            self._connection = None
