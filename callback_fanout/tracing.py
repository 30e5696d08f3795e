"""What happened to a job: its whole story from what the system keeps (`callback-fanout trace`).

:func:`trace` gathers, for a job id, a request id or an idempotency key, every event it
names: when and how it was received (the ``archive`` built-in's table when one runs, else
the envelopes the delivery history kept), its routing key, every attempt of every consumer
with its outcome, error and duration (the delivery history), and where the event is now:
handled, waiting in a consumer's queue, retrying, or parked (found in the parking queues,
with the `parked show` command to look at it). What it cannot tell (no history, no archive,
a parking queue longer than the window it reads) it says in :attr:`Trace.notes`.

It returns data and prints nothing: the command renders it, and the web console can call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import asyncpg
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from callback_fanout.parking import MessageFilter, ParkedMessage, Parking
from shared.callbacks.routing import topic_matches
from shared.history import MOST_ROWS, TABLE, HistoryRow, lookup_sql
from shared.otel import trace_link
from shared.topology import Topology
from shared.wire.headers import IDEMPOTENCY_KEY, REQUEST_ID

__all__ = [
    "ArchiveSource",
    "Attempt",
    "ConsumerRoutes",
    "EventTrace",
    "Now",
    "Received",
    "Trace",
    "trace",
]

#: How many messages of each parking queue a trace reads at most.
PARKING_WINDOW = 500
#: Seconds a database may take to answer a trace.
_DB_TIMEOUT = 10.0

State = Literal["handled", "duplicate", "filtered", "waiting", "retrying", "parked", "unknown"]


@dataclass(frozen=True)
class ConsumerRoutes:
    """A consumer the workers load: its name and the routing patterns it takes."""

    name: str
    routes: tuple[str, ...]

    def takes(self, routing_key: str) -> bool:
        return any(topic_matches(route, routing_key) for route in self.routes)


@dataclass(frozen=True)
class ArchiveSource:
    """The table of a configured ``archive`` consumer."""

    consumer: str
    dsn: str = field(repr=False)
    table: str


@dataclass(frozen=True)
class Received:
    """How the ingress received the callback that carried the event."""

    at: datetime | None
    request_id: str | None
    source_address: str | None
    token_name: str | None
    source: str  # where this came from: "archive <consumer>" or "history"


@dataclass(frozen=True)
class Attempt:
    """One outcome of one consumer (a history row)."""

    at: datetime
    consumer: str
    attempt: int
    outcome: str
    error: str | None
    handler_seconds: float | None


@dataclass(frozen=True)
class Now:
    """Where the event is now, for one consumer."""

    consumer: str
    state: State
    queue: str | None = None
    look: str | None = None  # the command that shows it
    detail: str | None = None


@dataclass
class EventTrace:
    """One event's story."""

    idempotency_key: str | None
    job_id: str | None = None
    routing_key: str | None = None
    received: Received | None = None
    attempts: list[Attempt] = field(default_factory=list)
    now: list[Now] = field(default_factory=list)
    #: The traces of the tracing backend this event was seen in, and their UI pages.
    traces: dict[str, str | None] = field(default_factory=dict)

    def steps(self) -> list[dict[str, Any]]:
        """The story as time-ordered steps (what the command prints, a line or a row each)."""
        ids = {"job_id": self.job_id, "idempotency_key": self.idempotency_key}
        out: list[dict[str, Any]] = []
        received = self.received
        if received is not None:
            out.append(
                {
                    "step": "received",
                    "at": _iso(received.at),
                    **ids,
                    "request_id": received.request_id,
                    "source_address": received.source_address,
                    "token_name": received.token_name,
                    "from": received.source,
                }
            )
        if self.routing_key is not None:
            out.append(
                {
                    "step": "routed",
                    "at": _iso(received.at) if received is not None else None,
                    **ids,
                    "routing_key": self.routing_key,
                }
            )
        for a in self.attempts:
            out.append(
                {
                    "step": "attempt",
                    "at": _iso(a.at),
                    **ids,
                    "consumer": a.consumer,
                    "attempt": a.attempt,
                    "outcome": a.outcome,
                    "error": a.error,
                    "handler_seconds": a.handler_seconds,
                }
            )
        for trace_id, url in self.traces.items():
            out.append({"step": "traced", "at": None, **ids, "trace_id": trace_id, "url": url})
        for now in self.now:
            out.append(
                {
                    "step": "now",
                    "at": None,
                    **ids,
                    "consumer": now.consumer,
                    "state": now.state,
                    "queue": now.queue,
                    "look": now.look,
                    "detail": now.detail,
                }
            )
        return out


@dataclass
class Trace:
    """Everything found for ``id``; ``notes`` say what could not be told."""

    id: str
    events: list[EventTrace] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.events)

    def steps(self) -> list[dict[str, Any]]:
        return [step for event in self.events for step in event.steps()]


async def trace(
    id: str,
    *,
    prefix: str,
    consumers: Sequence[ConsumerRoutes],
    history_dsn: str | None,
    archives: Sequence[ArchiveSource] = (),
    connection: AbstractConnection | None = None,
    topology: Topology | None = None,
    window: int = PARKING_WINDOW,
    tracing_ui_url: str | None = None,
) -> Trace:
    """The story of every event ``id`` (a job id, request id or idempotency key) names.

    ``connection`` (with ``topology``) is the broker whose parking queues are looked in;
    None: they are not. Reads at most ``window`` messages of each parking queue and
    :data:`shared.history.MOST_ROWS` history rows. ``tracing_ui_url`` (the setting) links
    each trace id the history names to the tracing UI.
    """
    result = Trace(id)
    events: dict[str, EventTrace] = {}  # by idempotency key (or a stand-in)

    def event_of(key: str | None, job_id: str | None) -> EventTrace:
        slot = key or f"job:{job_id}"
        if slot not in events:
            events[slot] = EventTrace(key, job_id)
        found = events[slot]
        if found.job_id is None:
            found.job_id = job_id
        return found

    rows: list[HistoryRow] = []
    if history_dsn is None:
        result.notes.append(
            "no delivery history (--history-dsn): the consumers' attempts, outcomes and "
            "errors are not known, nor whether the event was handled"
        )
    else:
        try:
            rows = await _history_rows(history_dsn, prefix, id)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            result.notes.append(f"the delivery history could not be read: {_said(exc)}")
        if len(rows) >= MOST_ROWS:
            result.notes.append(f"only the first {MOST_ROWS} outcomes are shown")
    for row in rows:
        event = event_of(row.idempotency_key, row.job_id)
        event.routing_key = event.routing_key or row.routing_key
        if event.received is None and (row.received_at is not None or row.request_id):
            event.received = Received(
                row.received_at, row.request_id, row.source_address, row.token_name, "history"
            )
        event.attempts.append(
            Attempt(row.at, row.consumer, row.attempt, row.outcome, row.error, row.handler_seconds)
        )
        if row.trace_id is not None:
            event.traces[row.trace_id] = trace_link(tracing_ui_url, row.trace_id)

    if not archives:
        result.notes.append(
            "no `archive` consumer configured: the received step comes "
            "from the delivery history only"
        )
    for archive in archives:
        try:
            found = await _archive_rows(archive, id)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            result.notes.append(f"archive {archive.consumer!r} could not be read: {_said(exc)}")
            continue
        for record in found:
            event = event_of(record["idempotency_key"], record["job_id"])
            event.routing_key = event.routing_key or record["routing_key"]
            event.received = Received(
                record["received_at"],
                record["request_id"],
                record["source_address"],
                record["token_name"],
                f"archive {archive.consumer}",
            )

    parked: list[ParkedMessage] = []
    if connection is not None and topology is not None:
        parked = await _parked(
            connection, topology, consumers, id=id, events=events, window=window, result=result
        )
    else:
        result.notes.append("the parking queues were not looked in")

    for message in parked:
        key = message.headers.get(IDEMPOTENCY_KEY)
        if key is None and not message.job_ids:
            continue
        event = event_of(str(key) if key else None, message.job_id)
        event.routing_key = event.routing_key or message.routing_key
    for event in events.values():
        event.attempts.sort(key=lambda a: (a.at, a.consumer, a.attempt))
        event.now = _whereabouts(event, consumers, topology, parked, history_dsn is not None)
    result.events = sorted(events.values(), key=_first_seen)
    return result


async def _history_rows(dsn: str, prefix: str, id: str) -> list[HistoryRow]:
    connection = await asyncpg.connect(dsn, timeout=_DB_TIMEOUT)
    try:
        exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE)
        if not exists:
            return []
        records = await connection.fetch(lookup_sql(), prefix, id, MOST_ROWS, timeout=_DB_TIMEOUT)
    finally:
        await connection.close()
    return [HistoryRow.from_record(r) for r in records]


async def _archive_rows(archive: ArchiveSource, id: str) -> list[asyncpg.Record]:
    """The archive's rows of ``id``: by job id or idempotency key (indexed), else by request
    id (the archive has no index on it: a scan, bounded by the timeout)."""
    table = ".".join(f'"{part}"' for part in archive.table.split("."))
    columns = (
        "idempotency_key, job_id, routing_key, received_at, request_id, "
        "event->'envelope'->>'source_address' AS source_address, "
        "event->'envelope'->>'token_name' AS token_name"
    )
    connection = await asyncpg.connect(archive.dsn, timeout=_DB_TIMEOUT)
    try:
        exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", archive.table)
        if not exists:
            return []
        found: list[asyncpg.Record] = await connection.fetch(
            f"SELECT {columns} FROM {table} WHERE job_id = $1 OR idempotency_key = $1 "
            "ORDER BY received_at LIMIT 100",
            id,
            timeout=_DB_TIMEOUT,
        )
        if not found:
            found = await connection.fetch(
                f"SELECT {columns} FROM {table} WHERE request_id = $1 "
                "ORDER BY received_at LIMIT 100",
                id,
                timeout=_DB_TIMEOUT,
            )
    finally:
        await connection.close()
    return found


async def _parked(
    connection: AbstractConnection,
    topology: Topology,
    consumers: Sequence[ConsumerRoutes],
    *,
    id: str,
    events: dict[str, EventTrace],
    window: int,
    result: Trace,
) -> list[ParkedMessage]:
    """The parked messages of the events (or of ``id``), in the first ``window`` messages of
    every parking queue."""
    parking = Parking(cast("AbstractRobustConnection", connection), topology)  # .channel() only
    keys = {id} | {k for k in events if not k.startswith("job:")}
    jobs = {id} | {e.job_id for e in events.values() if e.job_id}
    queues = topology.parking_queues([c.name for c in consumers])
    counts = await parking.counts([c.name for c in consumers])
    found: list[ParkedMessage] = []
    for queue in queues:
        if not counts.get(queue):
            continue
        if counts[queue] > window:
            result.notes.append(
                f"{queue}: only the first {window} of {counts[queue]} parked messages were read"
            )
        for message in await parking.show(queue, MessageFilter(), window, window):
            headers = message.headers
            if (
                str(headers.get(IDEMPOTENCY_KEY, "")) in keys
                or str(headers.get(REQUEST_ID, "")) == id
                or message.message.message_id == id
                or (message.may_hold(*jobs) and jobs.intersection(message.job_ids))
            ):
                found.append(message)
    return found


def _whereabouts(
    event: EventTrace,
    consumers: Sequence[ConsumerRoutes],
    topology: Topology | None,
    parked: Sequence[ParkedMessage],
    with_history: bool,
) -> list[Now]:
    """Where the event is now, for every consumer that took it or whose routes take it."""
    last: dict[str, Attempt] = {}
    for each in event.attempts:
        last[each.consumer] = each
    mine = [m for m in parked if _is_of(m, event)]
    names = list(last)
    if event.routing_key is not None:
        names += [c.name for c in consumers if c.takes(event.routing_key) and c.name not in last]
    names += [
        name for m in mine if (name := _consumer_of(m, topology)) is not None and name not in names
    ]
    out: list[Now] = []
    for name in names:
        dead = next((m for m in mine if _consumer_of(m, topology) == name), None)
        queue = topology.consumer(name, ()).main if topology is not None else None
        attempt = last.get(name)
        if dead is not None or (attempt is not None and attempt.outcome == "parked"):
            out.append(_parked_now(name, event, dead, topology))
        elif attempt is None:
            state: State = "waiting" if with_history else "unknown"
            detail = (
                "no outcome yet: in its queue, or not taken yet"
                if with_history
                else "not parked; without the delivery history nothing more is known"
            )
            out.append(Now(name, state, queue, detail=detail))
        elif attempt.outcome in ("retried", "timed_out"):
            detail = f"attempt {attempt.attempt} failed; the next one waits in a delay queue"
            out.append(Now(name, "retrying", queue, detail=detail))
        elif attempt.outcome == "duplicate":
            out.append(Now(name, "duplicate", detail="dropped as a duplicate: handled before"))
        elif attempt.outcome == "filtered":
            out.append(Now(name, "filtered", detail="refused by its filter: acked, not handled"))
        else:
            out.append(Now(name, "handled", detail=f"attempt {attempt.attempt}"))
    for m in mine:  # parked where no consumer is: unrouted, unparsed
        if _consumer_of(m, topology) is None:
            out.append(Now("-", "parked", m.queue, _look(m.queue, event, topology), m.reason))
    return out


def _parked_now(
    name: str, event: EventTrace, dead: ParkedMessage | None, topology: Topology | None
) -> Now:
    queue = (
        dead.queue
        if dead is not None
        else (topology.consumer(name, ()).dead if topology is not None else None)
    )
    detail = dead.reason if dead is not None else "parked (not in the window of the queue read)"
    return Now(name, "parked", queue, _look(name, event, topology), detail)


def _look(queue: str, event: EventTrace, topology: Topology | None) -> str:
    short = queue
    if topology is not None and queue in (topology.unparsed, topology.unrouted):
        short = queue.removeprefix(f"{topology.prefix}.")
    which = f" --job-id {event.job_id}" if event.job_id else ""
    return f"callback-fanout parked show {short}{which}"


def _consumer_of(message: ParkedMessage, topology: Topology | None) -> str | None:
    if topology is None or not message.queue.endswith(".dead"):
        return None
    return message.queue.removeprefix(f"{topology.prefix}.consumer.").removesuffix(".dead")


def _is_of(message: ParkedMessage, event: EventTrace) -> bool:
    key = message.headers.get(IDEMPOTENCY_KEY)
    if key is not None and event.idempotency_key is not None:
        return str(key) == event.idempotency_key
    return event.job_id is not None and event.job_id in message.job_ids


def _first_seen(event: EventTrace) -> tuple[datetime, str]:
    times = [a.at for a in event.attempts]
    if event.received is not None and event.received.at is not None:
        times.append(event.received.at)
    return (min(times) if times else datetime.max.replace(tzinfo=UTC), event.job_id or "")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
