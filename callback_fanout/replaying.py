"""Re-delivering archived events to one consumer: ``callback-fanout replay``, and the function
a console calls (:func:`replay`, progress through a callback).

Each event of the window is read back from the ``archive`` table (:mod:`callback_fanout.archived`)
and published, as the message of one event the router would have published
(``shared.wire.events``), to the default exchange with the consumer's queue name as the routing
key: that consumer's queue alone gets it, whatever the bindings. It carries ``x-replay``
(the replay's key), so the consumer's dedupe lets it through on purpose.

Interrupted and run again, a replay does not send again what it sent. Each publish is
confirmed by the broker, then the archive row id of that event is written to the replay's
checkpoint, a small file named by the command as written (prefix, consumer, archive table,
``--since``, ``--until``, filters: :meth:`ReplayRequest.key`). A run of the same command starts
after that row; rows are read in the order they were archived (``id``). A stop asked for
(Ctrl-C, SIGTERM) ends after the publish in flight is confirmed and checkpointed, so nothing
is sent twice; only a hard kill (SIGKILL) between a confirm and its checkpoint write can
send that one event again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pydantic
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity

from callback_fanout.archived import ArchivedEvent, ArchiveTable, Window
from callback_fanout.pacing import Pace
from shared.errors import ConfigError
from shared.logs import get_logger
from shared.topology import Topology
from shared.wire.events import event_message
from shared.wire.headers import REPLAY

__all__ = [
    "CheckpointStore",
    "FileCheckpoints",
    "ReplayPlan",
    "ReplayProgress",
    "ReplayRequest",
    "default_checkpoint_dir",
    "plan_replay",
    "replay",
]

log = get_logger("replay")


@dataclass(frozen=True)
class ReplayRequest:
    """What to replay, to whom: the command's arguments. ``since_given``/``until_given`` are
    ``--since``/``--until`` as the operator wrote them (``2h`` stays ``2h``): the checkpoint
    belongs to the command as written."""

    consumer: str
    window: Window
    since_given: str
    until_given: str | None = None

    def key(self, prefix: str, archive: ArchiveTable) -> str:
        """The replay's name: ``<prefix>.<consumer>.<digest of the command as written>``."""
        said = json.dumps(
            [
                prefix,
                self.consumer,
                archive.describe(),
                self.since_given,
                self.until_given,
                self.window.routing_key,
                self.window.job_id,
            ]
        )
        return f"{prefix}.{self.consumer}.{hashlib.sha256(said.encode()).hexdigest()[:16]}"


class CheckpointStore(Protocol):
    """Where a replay keeps the last archive row it sent (by the replay's key)."""

    def last_sent(self, key: str) -> int:
        """The id of the last row sent; 0 when none was."""
        ...

    def sent(self, key: str, row_id: int, details: dict[str, Any]) -> None:
        """Remember that the row ``row_id`` was sent (confirmed)."""
        ...

    def forget(self, key: str) -> None:
        """Start again from the beginning."""
        ...


def default_checkpoint_dir() -> Path:
    """``$XDG_STATE_HOME/callback-fanout/replay`` (``~/.local/state/...`` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "callback-fanout" / "replay"


@dataclass
class FileCheckpoints:
    """A JSON file per replay in ``directory``, replaced whole at each row (write, rename)."""

    directory: Path

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def last_sent(self, key: str) -> int:
        try:
            stored = json.loads(self._path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the replay checkpoint {self._path(key)}: {exc}"
            ) from None
        last = stored.get("last_id") if isinstance(stored, dict) else None
        if not isinstance(last, int):
            raise ConfigError(f"the replay checkpoint {self._path(key)} holds no last_id")
        return last

    def sent(self, key: str, row_id: int, details: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps({"last_id": row_id, **details}), encoding="utf-8")
        partial.replace(path)

    def forget(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay sends: ``total`` events in the window, ``done`` of them (or as many)
    sent by an earlier run of the same command, ``pending`` left; ``first``: the first of
    those left."""

    key: str
    queue: str
    archive: str
    window: Window
    total: int
    pending: int
    after: int
    first: list[ArchivedEvent] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.total - self.pending


@dataclass
class ReplayProgress:
    """Where a replay is, after each event sent: ``sent`` of ``pending``; ``refused`` rows were
    skipped because they do not validate as events (logged with their id)."""

    pending: int
    sent: int = 0
    refused: int = 0
    last_id: int = 0
    stopped: bool = False

    @property
    def finished(self) -> bool:
        return not self.stopped and self.sent + self.refused >= self.pending


async def plan_replay(
    connection: AbstractRobustConnection,
    topology: Topology,
    archive: ArchiveTable,
    request: ReplayRequest,
    checkpoints: CheckpointStore,
    *,
    first: int = 10,
    restart: bool = False,
) -> ReplayPlan:
    """Count what a replay of ``request`` sends, and read the ``first`` of those events;
    ``restart``: as if no earlier run had sent any (the checkpoint is left as it is).

    ``archive`` is open (``async with``). Raises :class:`ConfigError` when the consumer has no
    queue under this prefix (no worker ever ran it).
    """
    queue = topology.consumer(request.consumer, ()).main
    await _queue_exists(connection, queue, request.consumer, topology.prefix)
    key = request.key(topology.prefix, archive)
    after = 0 if restart else checkpoints.last_sent(key)
    window = request.window
    return ReplayPlan(
        key=key,
        queue=queue,
        archive=archive.describe(),
        window=window,
        total=await archive.count(window),
        pending=await archive.count(window, after=after),
        after=after,
        first=await archive.first(window, first, after=after),
    )


async def replay(
    connection: AbstractRobustConnection,
    archive: ArchiveTable,
    plan: ReplayPlan,
    checkpoints: CheckpointStore,
    *,
    rate: float | None = None,
    progress: Callable[[ReplayProgress], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ReplayProgress:
    """Publish the events of ``plan`` to its consumer's queue, confirmed, at most ``rate`` a
    second, each checkpointed once confirmed; ``progress`` is called after each one. Ends
    after the event in flight when ``stop`` is set."""
    done = ReplayProgress(plan.pending, last_id=plan.after)
    log.info(
        "replay started",
        queue=plan.queue,
        window=plan.window.describe(),
        pending=plan.pending,
        after_id=plan.after,
        rate=rate,
        replay=plan.key,
    )
    pace = Pace(rate)
    channel = await connection.channel(publisher_confirms=True)
    try:
        async for row in archive.events(plan.window, after=plan.after):
            if stop is not None and stop.is_set():
                done.stopped = True
                if progress is not None:
                    progress(done)
                break
            await pace.wait()
            await _send(channel, plan, row, done)
            checkpoints.sent(plan.key, row.id, _details(plan, done))
            done.last_id = row.id
            if progress is not None:
                progress(done)
    finally:
        await channel.close()
    log.info(
        "replay stopped" if done.stopped else "replay finished",
        queue=plan.queue,
        sent=done.sent,
        refused=done.refused,
        last_id=done.last_id,
        replay=plan.key,
    )
    return done


async def _send(
    channel: AbstractChannel, plan: ReplayPlan, row: ArchivedEvent, done: ReplayProgress
) -> None:
    try:
        event = row.callback_event()
    except pydantic.ValidationError as exc:
        done.refused += 1
        log.warning("archived row is not an event, not sent", row_id=row.id, error=str(exc))
        return
    message = event_message(event)
    message.headers[REPLAY] = plan.key
    await channel.default_exchange.publish(message, routing_key=plan.queue, mandatory=True)
    done.sent += 1


def _details(plan: ReplayPlan, done: ReplayProgress) -> dict[str, Any]:
    return {
        "queue": plan.queue,
        "archive": plan.archive,
        "window": {k: _jsonable(v) for k, v in asdict(plan.window).items()},
        "sent": done.sent,
        "updated_at": datetime.now(UTC).isoformat(),
    }


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


async def _queue_exists(
    connection: AbstractRobustConnection, queue: str, consumer: str, prefix: str
) -> None:
    channel = await connection.channel()
    try:
        await channel.declare_queue(queue, passive=True)
    except ChannelNotFoundEntity:
        raise ConfigError(
            f"no queue {queue}: consumer {consumer!r} has never run under prefix {prefix!r} "
            "(start a worker that runs it first)"
        ) from None
    finally:
        if not channel.is_closed:
            await channel.close()
