"""Numbers over time for the console's charts: every few seconds, the status (queue depths)
and the roles' ``/metrics`` (counters, histograms), the last 15 minutes kept in memory.

Rates come from the roles' counters when their admin URLs are given (``console_role_urls``):
intake is the ingress's requests accepted or spooled, delivery the workers' events handled.
Without them, from the management API's per-queue rates when it answers; else there is no
rate to draw and the chart says so. Depths (ready, retrying, parked) always come from the
broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from callback_fanout.consumers import ConsumerView
from callback_fanout.status import SystemStatus
from shared.logs import get_logger

__all__ = ["HISTORY_SECONDS", "Point", "Sample", "Sampler", "parse_metrics"]

log = get_logger("console")

#: How far back the charts go.
HISTORY_SECONDS = 15 * 60
Point = tuple[float, float | None]
#: Handler and lag buckets: (upper bound, cumulative count) per consumer.
Buckets = dict[str, list[tuple[float, float]]]


@dataclass(frozen=True)
class Counters:
    """What the roles' ``/metrics`` say at one moment, summed over the roles."""

    intake: float = 0.0  # callbacks accepted or spooled
    outcomes: dict[tuple[str, str], float] = field(default_factory=dict)  # (consumer, outcome)
    handle: Buckets = field(default_factory=dict)
    lag: Buckets = field(default_factory=dict)

    def handled(self, consumer: str | None = None) -> float:
        return self.outcome("handled", consumer)

    def outcome(self, outcome: str, consumer: str | None = None) -> float:
        return sum(
            n for (c, o), n in self.outcomes.items() if o == outcome and consumer in (None, c)
        )


@dataclass(frozen=True)
class Sample:
    """One reading: the status and, when the roles answered, their counters."""

    at: float
    status: SystemStatus
    consumers: list[ConsumerView]
    counters: Counters | None


def parse_metrics(texts: Iterable[str]) -> Counters:
    """The counters the console draws, summed over several roles' ``/metrics`` texts."""
    intake = 0.0
    outcomes: dict[tuple[str, str], float] = {}
    buckets: dict[str, Buckets] = {"handle": {}, "lag": {}}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "callback_fanout_ingress_requests_total":
                    if labels.get("outcome") in ("accepted", "spooled"):
                        intake += sample.value
                elif sample.name == "callback_fanout_consumer_events_total":
                    key = (labels.get("consumer", ""), labels.get("outcome", ""))
                    outcomes[key] = outcomes.get(key, 0.0) + sample.value
                elif sample.name in (
                    "callback_fanout_consumer_handle_seconds_bucket",
                    "callback_fanout_consumer_lag_seconds_bucket",
                ):
                    kind = "handle" if "handle" in sample.name else "lag"
                    per = buckets[kind].setdefault(labels.get("consumer", ""), [])
                    per.append((float(labels.get("le", "inf")), sample.value))
    for per_consumer in buckets.values():
        for name, rows in per_consumer.items():  # the same bound from several roles: add up
            merged: dict[float, float] = {}
            for bound, count in rows:
                merged[bound] = merged.get(bound, 0.0) + count
            per_consumer[name] = sorted(merged.items())
    return Counters(intake, outcomes, buckets["handle"], buckets["lag"])


def quantile(
    first: Sequence[tuple[float, float]], last: Sequence[tuple[float, float]], q: float
) -> float | None:
    """The ``q`` quantile of what was observed between two cumulative bucket readings (the
    upper bound of the bucket it falls in); None when nothing was."""
    before = dict(first)
    counts = [(bound, count - before.get(bound, 0.0)) for bound, count in last]
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return None
    for bound, count in counts:
        if count >= q * total:
            return bound if math.isfinite(bound) else None
    return None


class Sampler:
    """Reads every ``interval`` seconds in the background; keeps 15 minutes of samples."""

    def __init__(
        self,
        read_status: Callable[[Mapping[str, str] | None], Awaitable[SystemStatus]],
        read_consumers: Callable[[], Awaitable[list[ConsumerView]]],
        metrics_urls: Sequence[str],
        *,
        interval: float = 5.0,
    ) -> None:
        self._read_status = read_status
        self._read_consumers = read_consumers
        self._urls = [url.rstrip("/") + "/metrics" for url in metrics_urls]
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=int(HISTORY_SECONDS / interval) + 1)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def has_role_metrics(self) -> bool:
        return bool(self._urls)

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        self._task = asyncio.create_task(self._run(), name="console-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample()
            except Exception as exc:  # the next reading may work: the page says how old
                log.warning("console sample failed", error=str(exc) or repr(exc))
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def sample(self) -> Sample:
        """Read now and keep it."""
        consumers, counters = await asyncio.gather(self._read_consumers(), self._counters())
        status = await self._read_status(holds_of(consumers))
        taken = Sample(time.time(), status, consumers, counters)
        self.samples.append(taken)
        return taken

    async def _counters(self) -> Counters | None:
        if not self._urls or self._session is None:
            return None
        session = self._session

        async def text(url: str) -> str | None:
            try:
                async with session.get(url) as response:
                    return await response.text() if response.status == 200 else None
            except (aiohttp.ClientError, TimeoutError):
                return None

        texts = await asyncio.gather(*(text(url) for url in self._urls))
        answered = [t for t in texts if t is not None]
        return parse_metrics(answered) if answered else None

    async def consumer_views(self) -> list[ConsumerView]:
        """The consumers as last sampled (asking the workers takes half a second: a page
        does not wait for it), or read now before the first sample."""
        if not self.samples:
            return (await self.sample()).consumers
        return self.samples[-1].consumers

    async def holds(self) -> dict[str, str]:
        """Each consumer's state as last sampled (:meth:`consumer_views`)."""
        return holds_of(await self.consumer_views())

    # -- series for the charts --------------------------------------------------------------

    def _rates(self, read: Callable[[Counters], float]) -> list[Point]:
        points: list[Point] = []
        previous: Sample | None = None
        for sample in self.samples:
            if previous is not None:
                value = None
                if sample.counters is not None and previous.counters is not None:
                    change = read(sample.counters) - read(previous.counters)
                    seconds = sample.at - previous.at
                    value = max(0.0, change) / seconds if seconds > 0 else None
                points.append((sample.at, value))
            previous = sample
        return points

    def _from_rows(self, read: Callable[[SystemStatus], float | None]) -> list[Point]:
        return [(s.at, read(s.status)) for s in self.samples]

    def intake(self) -> list[Point]:
        """Callbacks taken per second: the ingress's counters, else the raw queue's rate."""
        if self.has_role_metrics:
            return self._rates(lambda c: c.intake)
        return self._from_rows(lambda s: _sum(r.in_per_s for r in s.rows if r.kind == "raw"))

    def delivered(self, consumer: str | None = None) -> list[Point]:
        """Events handled per second (by one consumer, or all)."""
        if self.has_role_metrics:
            return self._rates(lambda c: c.handled(consumer))
        return self._from_rows(
            lambda s: _sum(
                r.out_per_s
                for r in s.rows
                if r.kind == "consumer" and consumer in (None, r.consumer)
            )
        )

    def outcome_rate(self, consumer: str, outcome: str) -> list[Point]:
        """``retried`` or ``parked`` per second of one consumer (roles' counters only)."""
        if not self.has_role_metrics:
            return []
        return self._rates(lambda c: c.outcome(outcome, consumer))

    def depth(self, consumer: str, what: str) -> list[Point]:
        """``ready``, ``retrying`` or ``parked`` of one consumer's queues over time."""

        def read(status: SystemStatus) -> float | None:
            for row in status.rows:
                if row.kind == "consumer" and row.consumer == consumer:
                    value = getattr(row, what)
                    return float(value) if value is not None else None
            return None

        return self._from_rows(read)

    def percentile(self, consumer: str, kind: str, q: float = 0.99) -> float | None:
        """The handler time (``handle``) or lag (``lag``) ``q`` quantile over the samples
        kept, in seconds; None without the roles' metrics or observations."""
        readings = [s.counters for s in self.samples if s.counters is not None]
        if len(readings) < 2:
            return None
        first, last = (getattr(c, kind).get(consumer, []) for c in (readings[0], readings[-1]))
        return quantile(first, last, q)


def holds_of(views: Iterable[ConsumerView]) -> dict[str, str]:
    """What :func:`callback_fanout.consumers.holds` says, from views read a moment ago: the
    consumers paused or run by a worker, with their state."""
    return {v.name: v.state for v in views if v.state != "no worker"}


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
