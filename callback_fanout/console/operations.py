"""What the console reads and does: the operator tools' own functions (the ones the CLI
commands call), over one broker connection, each action logged with the operator's name and
what it touched, and counted (``callback_fanout_console_actions_total``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from callback_fanout.consumers import ConsumerView, consumer_views, pause, resume
from callback_fanout.parking import MessageFilter, ParkedMessage, Parking
from callback_fanout.readiness import readyz_url
from callback_fanout.replaying import (
    FileCheckpoints,
    ReplayPlan,
    ReplayProgress,
    ReplayRequest,
    default_checkpoint_dir,
    plan_replay,
    replay,
)
from callback_fanout.sources import (
    archive_sources,
    archive_table,
    consumer_refs,
    consumer_routes,
    loaded_consumers,
)
from callback_fanout.status import SystemStatus, read_status
from callback_fanout.tracing import Trace, trace
from shared.errors import FanoutError
from shared.logs import get_logger
from shared.metrics import CounterFamily, Metrics
from shared.settings import Settings
from shared.topology import Topology

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from callback_fanout.archived import ArchiveTable
    from shared.control import PauseRecord
    from workers.consumer import ConsumerSpec

__all__ = ["ACTIONS", "HistoryReplay", "Operations", "console_metrics"]

log = get_logger("console")

#: The actions the console counts, by ``action`` label.
ACTIONS = ("pause", "resume", "parked_replay", "parked_purge", "history_replay", "login")
T = TypeVar("T")


def console_metrics(metrics: Metrics) -> CounterFamily:
    return metrics.counter(
        "callback_fanout_console_actions_total",
        "Actions taken at the console, by action (pause, resume, parked_replay, parked_purge, "
        "history_replay, login) and outcome (done, refused, failed).",
        ("action", "outcome"),
    )


@dataclass
class HistoryReplay:
    """A re-delivery of archived events started at the console, and where it is."""

    plan: ReplayPlan
    operator: str
    rate: float | None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    progress: ReplayProgress | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


class Operations:
    """The console's view of one deployment (its settings) over one broker connection."""

    def __init__(
        self,
        settings: Settings,
        connection: AbstractRobustConnection,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.topology = Topology(settings.prefix, settings.quorum_initial_group_size)
        self.parking = Parking(connection, self.topology)
        self.specs: dict[str, ConsumerSpec] = {
            c.spec.name: c.spec for c in loaded_consumers(settings)
        }
        self._refs = consumer_refs(settings)
        self._routes = consumer_routes(settings)
        self._archives = archive_sources(settings)
        self._urls = [readyz_url(url) for url in settings.console_role_urls]
        self._counted = console_metrics(metrics) if metrics is not None else None
        self.replays: dict[str, HistoryReplay] = {}

    # -- reading ----------------------------------------------------------------------------

    async def status(self, holds: Mapping[str, str] | None = None) -> SystemStatus:
        """`status`, one reading (rates over time come from the console's sampler);
        ``holds``: the consumers' states as read a moment ago (None: ask the workers now)."""
        return await read_status(
            self.connection, self.settings, self._refs, urls=self._urls, window=0, holds=holds
        )

    async def consumers(self) -> list[ConsumerView]:
        """`consumers list`."""
        return await consumer_views(self.connection, self.topology, list(self.specs))

    async def parked_counts(self) -> dict[str, int]:
        """`parked list`."""
        return await self.parking.counts(list(self.specs))

    async def parked(
        self, queue: str, where: MessageFilter, *, limit: int, window: int
    ) -> list[ParkedMessage]:
        """`parked show`, looking at the first ``window`` messages of the queue at most."""
        return await self.parking.show(queue, where, limit, window)

    async def trace(self, id: str, *, window: int) -> Trace:
        """`trace ID --window N`."""
        dsn = self.settings.history_dsn
        return await trace(
            id,
            prefix=self.settings.prefix,
            consumers=self._routes,
            history_dsn=dsn.get_secret_value() if dsn is not None else None,
            archives=self._archives,
            connection=self.connection,
            topology=self.topology,
            window=window,
            tracing_ui_url=self.settings.tracing_ui_url,
        )

    def archive(self) -> ArchiveTable:
        """The configuration file's archive (:class:`ConfigError` when there is none)."""
        return archive_table(self.settings, None, hint="to replay history at the console")

    # -- acting: every action logged with its operator and counted ---------------------------

    async def _act(
        self, action: str, operator: str, touched: dict[str, object], run: Awaitable[T]
    ) -> T:
        try:
            done = await run
        except Exception as exc:  # a refusal (FanoutError: said to the operator) or a fault
            outcome = "refused" if isinstance(exc, FanoutError) else "failed"
            self.count(action, outcome)
            write = log.warning if outcome == "refused" else log.error
            error = str(exc) if outcome == "refused" else repr(exc)
            write(
                f"console action {outcome}",
                action=action,
                operator=operator,
                **touched,
                error=error,
            )
            raise
        self.count(action, "done")
        said = {"count": done} if isinstance(done, int) else {}
        log.info("console action", action=action, operator=operator, **touched, **said)
        return done

    def count(self, action: str, outcome: str) -> None:
        if self._counted is not None:
            self._counted.labels(action, outcome).inc()

    async def pause(self, operator: str, name: str, seconds: float | None) -> PauseRecord:
        """`consumers pause NAME [--for]`."""
        run = pause(self.connection, self.topology, name, by=operator, seconds=seconds)
        return await self._act("pause", operator, {"consumer": name, "seconds": seconds}, run)

    async def resume(self, operator: str, name: str) -> PauseRecord:
        """`consumers resume NAME`."""
        run = resume(self.connection, self.topology, name, by=operator)
        return await self._act("resume", operator, {"consumer": name}, run)

    async def replay_parked(
        self, operator: str, queue: str, where: MessageFilter, *, dry_run: bool
    ) -> int:
        """`parked replay QUEUE [filters] [--dry-run]`; how many (would be) replayed."""
        run = self.parking.replay(queue, where, dry_run=dry_run)
        if dry_run:
            return await run
        return await self._act("parked_replay", operator, _touched(queue, where), run)

    async def purge_parked(self, operator: str, queue: str, where: MessageFilter) -> int:
        """`parked purge QUEUE [filters] --yes`; how many were purged."""
        run = self.parking.purge(queue, where)
        return await self._act("parked_purge", operator, _touched(queue, where), run)

    async def plan_history_replay(self, request: ReplayRequest) -> ReplayPlan:
        """`replay ... --dry-run`: the count and the first events."""
        checkpoints = FileCheckpoints(default_checkpoint_dir())
        async with self.archive() as archive:
            return await plan_replay(self.connection, self.topology, archive, request, checkpoints)

    async def start_history_replay(
        self, operator: str, request: ReplayRequest, rate: float | None
    ) -> HistoryReplay:
        """`replay ... --yes`, in the background: its progress is in :attr:`replays` under
        the plan's key. A replay of the same request already running is returned as it is."""
        plan = await self.plan_history_replay(request)
        running = self.replays.get(plan.key)
        if running is not None and running.running:
            return running
        job = HistoryReplay(plan, operator, rate)
        touched: dict[str, object] = {
            "consumer": request.consumer,
            "window": plan.window.describe(),
            "rate": rate,
        }
        job.task = asyncio.create_task(self._history_replay(job, touched))
        self.replays[plan.key] = job
        return job

    async def _history_replay(self, job: HistoryReplay, touched: dict[str, object]) -> None:
        checkpoints = FileCheckpoints(default_checkpoint_dir())

        def progress(done: ReplayProgress) -> None:
            job.progress = done

        async def run() -> int:
            async with self.archive() as archive:
                done = await replay(
                    self.connection,
                    archive,
                    job.plan,
                    checkpoints,
                    rate=job.rate,
                    progress=progress,
                    stop=job.stop,
                )
            job.progress = done
            return done.sent

        try:
            await self._act("history_replay", job.operator, touched, run())
        except Exception as exc:  # said on its page; logged and counted by _act
            job.error = str(exc) or repr(exc)

    async def close(self, grace: float = 5.0) -> None:
        """Stop the replays still running: each ends after the event in flight is confirmed
        and checkpointed (cancelled after ``grace`` seconds)."""
        tasks = [job.task for job in self.replays.values() if job.task is not None]
        for job in self.replays.values():
            job.stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _touched(queue: str, where: MessageFilter) -> dict[str, object]:
    said: dict[str, object] = {"queue": queue}
    if where.routing_key is not None:
        said["routing_key"] = where.routing_key
    if where.job_id is not None:
        said["job_id"] = where.job_id
    if where.reason is not None:
        said["reason"] = where.reason
    if where.message_ids is not None:
        said["message_ids"] = sorted(where.message_ids)
    return said
