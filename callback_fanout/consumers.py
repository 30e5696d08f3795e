"""Holding a destination, for the command and any console: list the consumers, pause one
(for a while), resume it.

One implementation per action: :func:`pause` and :func:`resume` append a record to the
control stream (:mod:`shared.control`) that every worker replica follows, and log one line
naming who (``cli``, or a token's name) and what. :func:`consumer_views` reads the control
stream, each consumer queue, and the answers of the running workers (breaker states, rate
limits) into one row per consumer. Nothing here prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from shared.control import ControlLog, PauseRecord, ask_exchange, read_states
from shared.errors import ConfigError, FanoutError
from shared.logs import get_logger
from shared.topology import Topology

__all__ = [
    "ConsumerView",
    "WorkerAnswer",
    "ask_workers",
    "consumer_views",
    "hold_of",
    "holds",
    "pause",
    "resume",
]

log = get_logger("consumers")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Seconds ``consumers list`` waits for the workers' answers.
ANSWER_WAIT = 0.5


@dataclass(frozen=True)
class WorkerAnswer:
    """One running worker's answer: what it holds of each consumer it runs."""

    worker: str
    consumers: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class ConsumerView:
    """One consumer as ``consumers list`` shows it."""

    name: str
    state: str  # running, paused, breaker open, half-open, no worker
    ready: int | None  # messages waiting in its queue; None: no queue
    consumers: int | None  # AMQP consumers on its queue (one per worker consuming it)
    workers: int  # worker processes that run it (answered)
    paused_until: float | None = None
    paused_by: str | None = None
    breakers: Mapping[str, int] = field(default_factory=dict)  # state -> workers in it
    rate_limit: float | None = None
    rate_scope: str | None = None  # global (Redis, every replica) or process

    def as_dict(self) -> dict[str, Any]:
        return {
            "consumer": self.name,
            "state": self.state,
            "ready": self.ready,
            "consumers": self.consumers,
            "workers": self.workers,
            "paused_until": _iso(self.paused_until),
            "paused_by": self.paused_by,
            "breakers": dict(self.breakers),
            "rate_limit": self.rate_limit,
            "rate_scope": self.rate_scope,
        }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _checked(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{name!r} is not a consumer name")
    return name


async def _queue_exists(connection: AbstractConnection, queue: str) -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
    with contextlib.suppress(Exception):
        await channel.close()
    return True


async def _append(connection: AbstractConnection, prefix: str, record: PauseRecord) -> None:
    channel = await connection.channel(publisher_confirms=True)
    try:
        await ControlLog(channel, prefix).append(record)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def pause(
    connection: AbstractConnection,
    topology: Topology,
    name: str,
    *,
    by: str = "cli",
    seconds: float | None = None,
) -> PauseRecord:
    """Pause consumer ``name`` on every worker (for ``seconds``, None: until resumed).

    Its queue must exist (a worker ran it once). Raises :class:`FanoutError` otherwise.
    """
    prefix = topology.prefix
    queue = topology.consumer(_checked(name), ()).main
    if seconds is not None and not seconds > 0:
        raise ConfigError("a pause lasts a positive number of seconds")
    if not await _queue_exists(connection, queue):
        raise FanoutError(f"no consumer {name!r} under prefix {prefix!r} (no queue {queue})")
    now = time.time()
    record = PauseRecord(name, True, by, now, now + seconds if seconds is not None else None)
    await _append(connection, prefix, record)
    log.info("consumer paused", consumer=name, by=by, until=record.until)
    return record


async def resume(
    connection: AbstractConnection, topology: Topology, name: str, *, by: str = "cli"
) -> PauseRecord:
    """Resume consumer ``name`` on every worker (a no-op record when it was not paused)."""
    record = PauseRecord(_checked(name), False, by, time.time())
    await _append(connection, topology.prefix, record)
    log.info("consumer resumed", consumer=name, by=by)
    return record


async def ask_workers(
    connection: AbstractConnection, prefix: str, wait: float = ANSWER_WAIT
) -> list[WorkerAnswer]:
    """The answers of the workers running now, gathered for ``wait`` seconds (none, at
    once, when no worker ever declared the question exchange: nothing is created)."""
    channel = await connection.channel()
    answers: list[WorkerAnswer] = []
    asked = uuid.uuid4().hex

    async def on_answer(message: AbstractIncomingMessage) -> None:
        if message.correlation_id != asked:
            return
        with contextlib.suppress(ValueError, KeyError, TypeError):
            data = json.loads(message.body)
            answers.append(WorkerAnswer(str(data["worker"]), dict(data["consumers"])))

    try:
        try:
            exchange = await channel.declare_exchange(
                ask_exchange(prefix), aio_pika.ExchangeType.FANOUT, durable=True, passive=True
            )
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return []
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        await replies.consume(on_answer, no_ack=True)
        question = aio_pika.Message(b"{}", reply_to=replies.name, correlation_id=asked)
        await exchange.publish(question, routing_key="")
        await asyncio.sleep(wait)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return answers


async def _depth(channel: AbstractChannel, topology: Topology, queue: str) -> tuple[int, int]:
    """Ready messages and consumers of ``queue`` (exact: declared again with its own
    arguments, as quorum queues answer a passive declare from lagging figures)."""
    declared = await topology.declare_queue(channel, queue)
    result = declared.declaration_result
    return result.message_count or 0, result.consumer_count or 0


def hold_of(
    name: str, record: PauseRecord | None, answers: Iterable[WorkerAnswer], now: float
) -> str:
    """A consumer's state: paused, else the worst of its workers' breakers, else running
    (``no worker`` when none answered for it)."""
    if record is not None and record.paused_at(now):
        return "paused"
    states = [a.consumers[name].get("state") for a in answers if name in a.consumers]
    for worst in ("breaker open", "half-open", "running"):
        if worst in states:
            return worst
    return "no worker"


async def _states_and_answers(
    connection: AbstractConnection, prefix: str, wait: float
) -> tuple[dict[str, PauseRecord], list[WorkerAnswer]]:
    """The control stream's latest record of each consumer, and the workers' answers (read
    and asked at the same time)."""
    channel = await connection.channel()
    try:
        return await asyncio.gather(
            read_states(channel, prefix), ask_workers(connection, prefix, wait)
        )
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def holds(
    connection: AbstractConnection, prefix: str, wait: float = ANSWER_WAIT
) -> dict[str, str]:
    """Every consumer paused or run by a worker now, with its state (:func:`hold_of`)."""
    states, answers = await _states_and_answers(connection, prefix, wait)
    now = time.time()
    names = set(states) | {n for a in answers for n in a.consumers}
    return {name: hold_of(name, states.get(name), answers, now) for name in names}


async def consumer_views(
    connection: AbstractConnection,
    topology: Topology,
    configured: Iterable[str] = (),
    *,
    wait: float = ANSWER_WAIT,
) -> list[ConsumerView]:
    """Every consumer: the configured ones, those the workers run, those ever paused."""
    states, answers = await _states_and_answers(connection, topology.prefix, wait)
    names = set(configured) | set(states) | {n for a in answers for n in a.consumers}
    now = time.time()
    views = []
    for name in sorted(names):
        queue = topology.consumer(name, ()).main
        ready: int | None = None
        attached: int | None = None
        if await _queue_exists(connection, queue):
            probe = await connection.channel()
            try:
                ready, attached = await _depth(probe, topology, queue)
            except aio_pika.exceptions.ChannelPreconditionFailed:
                pass
            finally:
                with contextlib.suppress(Exception):
                    await probe.close()
        running = [a.consumers[name] for a in answers if name in a.consumers]
        breakers: dict[str, int] = {}
        for held in running:
            if held.get("breaker"):
                breakers[str(held["breaker"])] = breakers.get(str(held["breaker"]), 0) + 1
        limited = next((h for h in running if h.get("rate_limit")), None)
        record = states.get(name)
        paused = record is not None and record.paused_at(now)
        views.append(
            ConsumerView(
                name=name,
                state=hold_of(name, record, answers, now),
                ready=ready,
                consumers=attached,
                workers=len(running),
                paused_until=record.until if paused and record is not None else None,
                paused_by=record.by if paused and record is not None else None,
                breakers=breakers,
                rate_limit=float(limited["rate_limit"]) if limited else None,
                rate_scope=str(limited["rate_scope"]) if limited else None,
            )
        )
    return views
