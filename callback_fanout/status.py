"""`callback-fanout status`: every queue under the prefix, one row each, problems flagged.

Rows, in order: ``<prefix>.raw``; one per consumer, its delay queues (``retrying``) and its
dead queue (``parked``) folded in; ``<prefix>.unparsed``; ``<prefix>.unrouted``.

AMQP alone gives, per named queue, its ready messages and the consumers attached (a queue
that does not exist is reported missing, never created). AMQP has no way to list queues, so
the consumers come from the configuration the workers use (``--consumer``,
``CALLBACK_FANOUT_CONSUMERS``, the configuration file, the entry points); the management
API, when it answers, adds every other consumer queue under the prefix, the unacknowledged
counts, and the publish and ack rates it measures. Without it the unacknowledged column is
``None`` and only the change of the ready count per second is measured.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from callback_fanout.management import Management, QueueStats
from callback_fanout.readiness import RoleReadiness
from shared.settings import Settings
from shared.topology import Topology

__all__ = [
    "ConsumerGroup",
    "ConsumerRef",
    "QueueRow",
    "SystemStatus",
    "collect",
    "consumer_groups",
]

Kind = Literal["raw", "consumer", "parking"]


@dataclass(frozen=True)
class ConsumerRef:
    """A consumer whose queues to report: its name and its retry delays (seconds)."""

    name: str
    delays: tuple[float, ...] = ()


@dataclass(frozen=True)
class _Reading:
    """One queue at one moment, from AMQP and (when there) the management API."""

    ready: int
    consumers: int
    unacked: int | None = None
    in_per_s: float | None = None
    out_per_s: float | None = None


@dataclass(frozen=True)
class QueueRow:
    """One line of the status table."""

    queue: str
    kind: Kind
    consumer: str | None
    exists: bool
    ready: int | None
    unacked: int | None  # None: unknown without the management API
    consumers: int | None
    retrying: int | None  # consumer rows: messages waiting in the delay queues
    parked: int | None  # consumer rows: the dead queue; parking rows: what they hold
    in_per_s: float | None  # published per second, as the management API measures it
    out_per_s: float | None  # acknowledged per second, as the management API measures it
    ready_change_per_s: float | None  # from two readings over the window
    problems: tuple[str, ...]
    hold: str | None = None  # consumer rows: running, paused, breaker open, half-open

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "kind": self.kind,
            "consumer": self.consumer,
            "exists": self.exists,
            "ready": self.ready,
            "unacked": self.unacked,
            "consumers": self.consumers,
            "retrying": self.retrying,
            "parked": self.parked,
            "in_per_s": self.in_per_s,
            "out_per_s": self.out_per_s,
            "ready_change_per_s": self.ready_change_per_s,
            "problems": list(self.problems),
            "hold": self.hold,
        }


@dataclass(frozen=True)
class SystemStatus:
    """Everything `status` shows; ``healthy`` decides its exit status."""

    prefix: str
    checked_at: datetime
    window: float
    management: str | None  # the management API used (password masked), None: AMQP only
    rows: tuple[QueueRow, ...]
    roles: tuple[RoleReadiness, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def problems(self) -> list[str]:
        out = [f"{row.queue}: {problem}" for row in self.rows for problem in row.problems]
        out += [f"{role.url}: not ready" for role in self.roles if not role.ready]
        out += [
            f"{role.url}: broker blocks the {name} connection ({reason})"
            for role in self.roles
            for name, reason in role.blocked.items()
        ]
        return out

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def exit_status(self) -> int:
        """0 when healthy; 1 when something is parked, missing or unconsumed, or a role is
        not ready or blocked by a broker alarm."""
        return 0 if self.healthy else 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "prefix": self.prefix,
            "checked_at": self.checked_at.isoformat(),
            "window_seconds": self.window,
            "management_api": self.management,
            "queues": [row.as_dict() for row in self.rows],
            "roles": [role.as_dict() for role in self.roles],
            "problems": self.problems,
            "notes": list(self.notes),
        }


# -- finding the queues ------------------------------------------------------------------


@dataclass
class ConsumerGroup:
    """The queues of one consumer that fold into its row."""

    name: str
    main: str
    dead: str
    delays: set[str]


def consumer_groups(
    topology: Topology, configured: Iterable[ConsumerRef], listed: Iterable[str]
) -> list[ConsumerGroup]:
    """Every consumer's queues: the configured ones, and those the management API listed."""
    groups: dict[str, ConsumerGroup] = {}

    def group(name: str) -> ConsumerGroup:
        if name not in groups:
            queues = topology.consumer(name, ())
            groups[name] = ConsumerGroup(name, queues.main, queues.dead, set())
        return groups[name]

    for ref in configured:
        group(ref.name).delays.update(q for _, q in topology.consumer(ref.name, ref.delays).delays)
    pattern = re.compile(
        rf"^{re.escape(topology.prefix)}\.consumer\.([a-z0-9_-]{{1,63}})(\.dead|\.delay\.\d+ms)?$"
    )
    for queue in listed:
        match = pattern.match(queue)
        if match is None:
            continue
        found = group(match.group(1))
        if (match.group(2) or "").startswith(".delay."):
            found.delays.add(queue)
    return sorted(groups.values(), key=lambda g: g.name)


# -- reading the queues ------------------------------------------------------------------


class _Prober:
    """Reads queues over AMQP without creating any: a passive declare first."""

    def __init__(self, connection: AbstractConnection, topology: Topology) -> None:
        self.connection = connection
        self.topology = topology
        self._channel: AbstractChannel | None = None

    async def _open(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self.connection.channel(publisher_confirms=False)
        return self._channel

    async def read(self, queue: str) -> _Reading | None:
        """Ready messages and consumers of ``queue``; None when it does not exist."""
        channel = await self._open()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            self._channel = None  # the broker closed the channel
            return None
        try:
            # Quorum queues answer a passive declare from lagging figures; declaring it again
            # with its own arguments changes nothing and returns the exact count.
            declared = await self.topology.declare_queue(channel, queue)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            self._channel = None  # declared with other arguments: keep the passive figures
        result = declared.declaration_result
        return _Reading(result.message_count or 0, result.consumer_count or 0)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


async def _snapshot(
    prober: _Prober, queues: Sequence[str], management: Management | None, prefix: str
) -> tuple[dict[str, _Reading | None], bool]:
    """Every queue now; True when the management API answered."""
    listed = await management.queues(prefix) if management is not None else None
    readings: dict[str, _Reading | None] = {}
    for queue in queues:
        reading = await prober.read(queue)
        stats = (listed or {}).get(queue)
        readings[queue] = _with_stats(reading, stats) if reading is not None else None
    return readings, listed is not None


def _with_stats(reading: _Reading, stats: QueueStats | None) -> _Reading:
    if stats is None:
        return reading
    return _Reading(
        reading.ready, reading.consumers, stats.unacked, stats.in_per_s, stats.out_per_s
    )


# -- the rows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Readings:
    first: Mapping[str, _Reading | None]
    last: Mapping[str, _Reading | None]
    seconds: float

    def row(
        self,
        queue: str,
        kind: Kind,
        *,
        consumer: str | None = None,
        retrying: int | None = None,
        parked: int | None = None,
        problems: Sequence[str] = (),
        hold: str | None = None,
    ) -> QueueRow:
        now, then = self.last.get(queue), self.first.get(queue)
        return QueueRow(
            queue=queue,
            kind=kind,
            consumer=consumer,
            exists=now is not None,
            ready=now.ready if now else None,
            unacked=now.unacked if now else None,
            consumers=now.consumers if now else None,
            retrying=retrying,
            parked=parked,
            in_per_s=now.in_per_s if now else None,
            out_per_s=now.out_per_s if now else None,
            ready_change_per_s=self._change(then, now),
            problems=tuple(problems),
            hold=hold,
        )

    def _change(self, then: _Reading | None, now: _Reading | None) -> float | None:
        """Ready messages gained (or lost) per second over the window."""
        if then is None or now is None or self.seconds <= 0:
            return None
        return round((now.ready - then.ready) / self.seconds, 1)

    def held(self, queue: str) -> int:
        """Messages in ``queue``, ready or unacked (0 when it does not exist)."""
        reading = self.last.get(queue)
        return 0 if reading is None else reading.ready + (reading.unacked or 0)


def _consumed_problems(readings: _Readings, queue: str, missing: str, idle: str) -> list[str]:
    reading = readings.last.get(queue)
    if reading is None:
        return [missing]
    return [idle] if reading.consumers == 0 else []


def _rows(
    topology: Topology,
    groups: Sequence[ConsumerGroup],
    r: _Readings,
    holds: Mapping[str, str],
) -> list[QueueRow]:
    rows = [
        r.row(
            topology.raw,
            "raw",
            problems=_consumed_problems(r, topology.raw, "missing", "no router"),
        )
    ]
    for g in groups:
        parked = r.held(g.dead)
        hold = holds.get(g.name)
        idle = {"paused": [], "breaker open": ["breaker open"]}.get(hold or "", ["no consumer"])
        reading = r.last.get(g.main)
        # a paused consumer takes nothing on purpose; an open breaker says why it takes nothing
        problems = ["missing"] if reading is None else idle if reading.consumers == 0 else []
        if parked:
            problems.append(f"{parked} parked")
        retrying = sum(r.held(q) for q in sorted(g.delays))
        row = r.row(
            g.main,
            "consumer",
            consumer=g.name,
            retrying=retrying,
            parked=parked,
            problems=problems,
            hold=hold,
        )
        rows.append(row)
    for queue in (topology.unparsed, topology.unrouted):
        held = r.held(queue)
        rows.append(
            r.row(queue, "parking", parked=held, problems=[f"{held} parked"] if held else [])
        )
    return rows


async def collect(
    connection: AbstractConnection,
    topology: Topology,
    consumers: Sequence[ConsumerRef],
    *,
    management: Management | None = None,
    window: float = 1.0,
    roles: Sequence[RoleReadiness] = (),
    holds: Mapping[str, str] | None = None,
) -> SystemStatus:
    """Read every queue (twice, ``window`` seconds apart, when ``window`` > 0); the status.

    ``holds``: each consumer's state (:func:`callback_fanout.consumers.holds`): a paused
    consumer's queue without consumers is no problem.
    """
    prober = _Prober(connection, topology)
    try:
        listed = await management.queues(topology.prefix) if management is not None else None
        groups = consumer_groups(topology, consumers, listed or {})
        names = [topology.raw, topology.unparsed, topology.unrouted]
        for g in groups:
            names += [g.main, g.dead, *sorted(g.delays)]
        used = management if listed is not None else None
        first: dict[str, _Reading | None] = {}
        started = time.monotonic()
        if window > 0:  # a first reading, for the change over the window
            first, _ = await _snapshot(prober, names, None, topology.prefix)
            await asyncio.sleep(window)
        last, answered = await _snapshot(prober, names, used, topology.prefix)
        seconds = time.monotonic() - started if window > 0 else 0.0
    finally:
        await prober.close()
    notes = []
    if used is None or not answered:
        why = (
            "management_url is off"
            if management is None
            else f"the management API at {management.masked_url} did not answer"
        )
        notes.append(
            f"AMQP only ({why}): unacknowledged counts and in/out rates are unknown (-); "
            "consumer queues come from the configured consumers"
        )
    return SystemStatus(
        prefix=topology.prefix,
        checked_at=datetime.now(UTC),
        window=round(seconds, 3),
        management=used.masked_url if used is not None and answered else None,
        rows=tuple(_rows(topology, groups, _Readings(first, last, seconds), holds or {})),
        roles=tuple(roles),
        notes=tuple(notes),
    )


async def read_status(
    connection: AbstractConnection,
    settings: Settings,
    consumers: Sequence[ConsumerRef],
    *,
    urls: Sequence[str] = (),
    window: float = 1.0,
    holds: Mapping[str, str] | None = None,
) -> SystemStatus:
    """One `status`: the queues of ``consumers`` and of the consumers paused or run by a
    worker without being configured here, the roles at ``urls`` (their ``/readyz``), and each
    consumer's hold (``holds``: as read a moment ago; None: asked now, which waits for the
    workers' answers). What `status` prints and the console's overview shows."""
    from callback_fanout.consumers import holds as read_holds
    from callback_fanout.management import management_for
    from callback_fanout.readiness import check_readiness

    async def asked() -> Mapping[str, str]:
        return holds if holds is not None else await read_holds(connection, settings.prefix)

    roles, held = await asyncio.gather(check_readiness(urls), asked())
    configured = {ref.name for ref in consumers}
    return await collect(
        connection,
        Topology(settings.prefix, settings.quorum_initial_group_size),
        [*consumers, *(ConsumerRef(n) for n in sorted(held) if n not in configured)],
        management=management_for(settings),
        window=window,
        roles=roles,
        holds=held,
    )
