"""What the benchmark asks the broker: counts, backlogs, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.pipeline.common import NOOP_NAME, SEED


def broker(coro_fn: Callable[..., Any], *args: Any) -> Any:
    """Run one broker chore in its own event loop (the benchmark itself is synchronous)."""
    return asyncio.run(coro_fn(*args))


async def _connect(url: str) -> Any:
    import aio_pika

    return await aio_pika.connect(url)


async def count_bodies(url: str, prefix: str) -> tuple[int, int, set[str], int]:
    """Drain ``<prefix>.raw``: (messages, bodies, request ids, bodies not equal to the seed).

    Consumes until the queue stays empty (nothing publishes to it any more), then makes sure
    with a ``basic.get``: exact, where a quorum queue's declared count can lag. The queue is
    declared passively, so its arguments need not match this checkout's.
    """
    from shared.topology import Topology
    from shared.wire.raw import is_batch, unpack

    seed = SEED.read_bytes()
    topology = Topology(prefix)
    connection = await _connect(url)
    ids: set[str] = set()
    messages = bodies = wrong = 0

    def take(message: Any) -> None:
        nonlocal messages, bodies, wrong
        if is_batch(message.content_type):
            entries = [(m.request_id, b) for m, b in unpack(message.body)]
        else:
            entries = [(message.message_id or "", message.body)]
        for request_id, body in entries:
            ids.add(request_id)
            wrong += body != seed
        bodies += len(entries)
        messages += 1

    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        queue = await channel.declare_queue(topology.raw, passive=True)
        while True:
            with contextlib.suppress(TimeoutError):
                async with queue.iterator(timeout=2) as it:
                    async for message in it:
                        take(message)
                        await message.ack()
            last = await queue.get(fail=False)
            if last is None:
                return messages, bodies, ids, wrong
            take(last)
            await last.ack()
    finally:
        await connection.close()


async def consumers_on(url: str, queue: str) -> int:
    """Consumers of ``queue`` (a passive declare: its arguments need not match ours)."""
    connection = await _connect(url)
    try:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)
    except Exception:  # not declared yet
        return 0
    finally:
        await connection.close()


async def ready_messages(url: str, queues: Sequence[str]) -> int:
    """Ready messages in ``queues`` (passive declares: metrics, they may lag a little)."""
    connection = await _connect(url)
    try:
        total = 0
        for queue in queues:
            declared = await (await connection.channel()).declare_queue(queue, passive=True)
            total += declared.declaration_result.message_count or 0
        return total
    finally:
        await connection.close()


async def fill_backlog(url: str, prefix: str, count: int) -> int:
    """Publish ``count`` events of the seed to the no-op consumer's queue; its size in bytes."""
    import aio_pika

    from shared.callbacks.events import Envelope
    from shared.callbacks.parser import parse_callback
    from shared.settings import Settings
    from shared.topology import Topology
    from shared.wire.events import event_message

    seed = SEED.read_bytes()
    topology = Topology(prefix)
    queues = topology.consumer(NOOP_NAME, Settings.load().retry_delays)
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_consumer(channel, queues, ["#"])
        received = datetime.now(UTC)
        size = 0
        window = 500
        for start in range(0, count, window):
            messages = []
            for i in range(start, min(count, start + window)):
                envelope = Envelope(
                    request_id=f"backlog{i:010d}",
                    received_at=received,
                    source_address="127.0.0.1",
                    content_type="application/xml",
                    raw_body=seed,
                )
                [event] = parse_callback(seed, envelope=envelope)
                messages.append(event_message(event))
            size += sum(len(m.body) for m in messages)
            await asyncio.gather(
                *(channel.default_exchange.publish(m, routing_key=queues.main) for m in messages)
            )
        return size
    finally:
        await connection.close()


async def fill_raw(url: str, prefix: str, count: int) -> int:
    """Send ``count`` seed bodies to ``<prefix>.raw`` as the ingress does; the messages it took.

    Our publisher, 64 requests at a time: the bodies travel in batches as under load.
    """
    from ingress.app import next_request_id
    from ingress.groupcommit import AmqpPublisher
    from shared.logs import configure_logging
    from shared.settings import Settings
    from shared.wire.raw import RawMeta

    seed = SEED.read_bytes()
    headers = {"Content-Type": "application/xml"}
    settings = Settings.load(amqp_url=url, prefix=prefix, log_level="warning")
    configure_logging(settings)  # the benchmark's output is its tables, not our log lines
    publisher = AmqpPublisher(settings)
    await publisher.start()
    try:
        slots = asyncio.Semaphore(64)

        async def one() -> None:
            async with slots:
                meta = RawMeta(next_request_id(), time.time(), "application/xml", None, headers)
                await publisher.publish(seed, meta)

        await asyncio.gather(*(one() for _ in range(count)))
        return publisher.messages_confirmed
    finally:
        await publisher.close()


async def delete_everything(url: str, prefixes: Sequence[str], extra_queues: Sequence[str]) -> None:
    """Delete every queue and exchange the benchmark may have declared."""
    import aio_pika

    from shared.settings import Settings
    from shared.topology import Topology

    connection = await aio_pika.connect(url)
    try:
        delays = Settings.load().retry_delays
        for prefix in prefixes:
            t = Topology(prefix)
            cq = t.consumer(NOOP_NAME, delays)
            for queue in [
                t.raw,
                t.unparsed,
                t.unrouted,
                cq.main,
                cq.dead,
                *(q for _, q in cq.delays),
            ]:
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(queue)
            for exchange in (t.events, t.unrouted):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.exchange_delete(exchange)
        for queue in extra_queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
    finally:
        await connection.close()


def _progress(directory: Path) -> tuple[int, float | None]:
    """Events the no-op consumers under ``directory`` handled, and when the last one came."""
    count, last = 0, None
    for path in directory.glob("noop-*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            count += data["count"]
            if data["last"] is not None:
                last = max(last or 0.0, data["last"])
    return count, last
