"""The delivery history's writer: every outcome a worker decides, in PostgreSQL, beside the work.

:meth:`HistoryWriter.record` is all the hot path does: a row (a tuple in the table's column
order, :mod:`shared.history`) appended to a bounded in-memory queue; it never waits and never
raises. A background task hands the queue in batches (at most ``batch_size`` rows,
``flush_wait`` seconds after the first) to the writing process the worker starts beside it
(:mod:`shared.history_process`), which creates the table, writes each batch with
``COPY`` and removes rows older than the retention every ``purge_every`` seconds: the
encoding and the database's round trips never run on the worker's event loop.

History is observability: a database that is down costs history, never a delivery. A row
that cannot be written (the queue is full, the database did not take its batch, the writing
process ended or the worker stopped before it could) is counted in
``callback_fanout_history_dropped_total{reason}`` and :attr:`HistoryWriter.dropped`; an outage
is said in one log line when the first row is lost, and one when rows are written again (with
how many were lost in between). Every row is either written or counted dropped: the writing
process reports each batch, and what it was handed but never reported is counted dropped
when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aio_pika.abc import AbstractIncomingMessage

from shared.history import TABLE, truncated
from shared.history_process import Config, HistoryStore, frame
from shared.logs import get_logger, mask_values
from shared.metrics import Counter, Metrics
from shared.otel import trace_id_of
from shared.settings import Settings, mask_url
from shared.wire.headers import IDEMPOTENCY_KEY, REQUEST_ID, ROUTING_KEY, TRACEPARENT
from workers.runtime.handling import Outcome

__all__ = ["DROP_REASONS", "IN_FLIGHT_BATCHES", "HistoryWriter"]

log = get_logger("history")

#: Why a row was dropped: ``full`` (the queue was full: the database is away or slower than
#: the work, and the writing process already holds :data:`IN_FLIGHT_BATCHES` batches),
#: ``unwritten`` (the database did not take its batch, the writing process ended holding it,
#: or the worker stopped first).
DROP_REASONS = ("full", "unwritten")

#: A writing process that ends within this many seconds of its start, saying nothing, is not
#: started again before ``retry_after`` (a broken installation does not start one per batch).
_START_WITHIN = 5.0

#: Batches handed to the writing process and not yet reported, at most: beyond, rows wait in
#: the worker's bounded queue (so a database that is away fills that queue, not the process).
IN_FLIGHT_BATCHES = 2

#: A row as COPY writes it: the values of :data:`shared.history.COLUMNS`, in order.
Row = tuple[Any, ...]


class HistoryWriter:
    """Writes outcome rows in batches to the history table of ``dsn``."""

    #: The writing process's command line.
    command: tuple[str, ...] = (
        sys.executable,
        "-c",
        "from shared.history_process import main; main()",
    )

    def __init__(
        self,
        dsn: str,
        prefix: str,
        retention: float,
        metrics: Metrics | None = None,
        *,
        capacity: int = 20_000,
        batch_size: int = 1000,
        flush_wait: float = 0.2,
        retry_after: float = 2.0,
        purge_every: float = 300.0,
        connect_timeout: float = 5.0,
        table: str = TABLE,
    ) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.retention = retention
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_wait = flush_wait
        self.retry_after = retry_after
        self.purge_every = purge_every
        self.connect_timeout = connect_timeout
        self.table = table
        #: Rows written, and rows dropped, since the start.
        self.written = 0
        self.dropped = 0
        self._rows: deque[Row] = deque()
        self._pending = asyncio.Event()  # rows are waiting
        self._closing = False
        self._close_asked = asyncio.Event()  # set with _closing: cuts the waits short
        self._task: asyncio.Task[None] | None = None
        self._writing: _Writing | None = None  # the writing process, once started
        self._lost: int | None = None  # rows dropped in the outage going on; None: none
        self._counted_written: Counter | None = None
        self._counted_dropped: dict[str, Counter] = {}
        mask_values(dsn, *filter(None, [urlsplit(dsn).password]))
        if metrics is not None:
            dropped = metrics.counter(
                "callback_fanout_history_dropped_total",
                "Outcomes the delivery history could not keep, by reason: full (its queue was "
                "full) or unwritten (the database did not take them).",
                ("reason",),
            )
            self._counted_dropped = {r: dropped.labels(r) for r in DROP_REASONS}
            self._counted_written = metrics.counter(
                "callback_fanout_history_written_total",
                "Outcomes written to the delivery history.",
            ).labels()

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None) -> HistoryWriter | None:
        """The writer the settings ask for; None without a history DSN."""
        if settings.history_dsn is None:
            return None
        dsn = settings.history_dsn.get_secret_value()
        return cls(dsn, settings.prefix, settings.history_retention, metrics)

    # The hot path -----------------------------------------------------------------------

    def record(self, consumer: str, outcome: Outcome, message: AbstractIncomingMessage) -> None:
        """Queue the row of ``outcome`` (of an event of ``message``); drop it when full."""
        if len(self._rows) >= self.capacity or self._closing:
            self._drop(1, "unwritten" if self._closing else "full")
            return
        event = outcome.event
        kind = "timed_out" if outcome.timed_out and outcome.kind == "retried" else outcome.kind
        reason = truncated(outcome.reason)
        at = datetime.now(UTC)
        if event is not None:
            envelope = event.envelope
            row: Row = (
                at,
                self.prefix,
                consumer,
                kind,
                outcome.attempt,
                event.idempotency_key,
                event.job_id,
                envelope.request_id if envelope is not None else None,
                event.routing_key,
                reason,
                outcome.handler_seconds,
                envelope.received_at if envelope is not None else None,
                envelope.source_address if envelope is not None else None,
                envelope.token_name if envelope is not None else None,
                trace_id_of(envelope.traceparent) if envelope is not None else None,
            )
        else:  # it did not validate: what its message says of it
            headers = message.headers or {}
            key, request_id = headers.get(IDEMPOTENCY_KEY), headers.get(REQUEST_ID)
            routing_key = headers.get(ROUTING_KEY) or message.routing_key
            row = (
                at,
                self.prefix,
                consumer,
                kind,
                outcome.attempt,
                str(key) if key else None,
                None,
                str(request_id) if request_id else None,
                str(routing_key) if routing_key else None,
                reason,
                outcome.handler_seconds,
                None,
                None,
                None,
                trace_id_of(headers.get(TRACEPARENT)),
            )
        self._rows.append(row)
        if not self._pending.is_set():
            self._pending.set()

    # The background task ----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The writing process's pid; None while it is not running."""
        writing = self._writing
        return writing.process.pid if writing is not None and writing.open else None

    @property
    def held(self) -> int:
        """Rows handed to the writing process that it has not yet said written or dropped."""
        writing = self._writing
        return writing.unreported if writing is not None else 0

    def start(self) -> None:
        """Start the background writer (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="history-writer")
            log.info(
                "delivery history on",
                database=mask_url(self.dsn),
                retention_s=self.retention,
            )

    async def _run(self) -> None:
        with contextlib.suppress(OSError):  # not started: tried again with the first batch
            await self._spawn()
        while True:
            await self._pending.wait()
            if len(self._rows) < self.batch_size and not self._closing:
                await self._until_closing(self.flush_wait)  # let a batch gather
            while self._rows:
                batch = [self._rows.popleft() for _ in range(min(self.batch_size, len(self._rows)))]
                if not await self._send(batch):
                    if self._closing:  # no waiting at shutdown
                        self._drop(len(self._rows), "unwritten")
                        self._rows.clear()
                    else:
                        await self._until_closing(self.retry_after)
                    break
            if not self._rows:
                self._pending.clear()
                if self._closing:
                    return

    async def _until_closing(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the writer is closed meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._close_asked.wait(), seconds)

    async def _spawn(self) -> _Writing:
        """The writing process, started (with its config) when none is running."""
        writing = self._writing
        if writing is not None and writing.open:
            return writing
        loop = asyncio.get_running_loop()
        if (
            writing is not None
            and not writing.reported
            and writing.ended_at - writing.started_at < _START_WITHIN
            and loop.time() < writing.ended_at + self.retry_after
        ):  # it ended at its start, saying nothing: started again after retry_after
            raise RuntimeError(f"it ended at its start (exit code {writing.process.returncode})")
        child = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        config = Config(
            self.dsn,
            self.prefix,
            self.retention,
            table=self.table,
            retry_after=self.retry_after,
            purge_every=self.purge_every,
            connect_timeout=self.connect_timeout,
        )
        writing = _Writing(child, loop.time())
        writing.send(frame(config))
        writing.reports = asyncio.create_task(self._read_reports(writing), name="history-reports")
        self._writing = writing
        return writing

    async def _send(self, batch: list[Row]) -> bool:
        """Hand ``batch`` to the writing process once it holds fewer than
        :data:`IN_FLIGHT_BATCHES` batches; False (counted dropped) when none could start."""
        try:
            writing = await self._spawn()
            most = IN_FLIGHT_BATCHES * self.batch_size
            while (
                writing.open
                and writing.unreported
                and writing.unreported + len(batch) > most
                and not self._closing
            ):
                await writing.progressed()
            if not writing.open:  # it ended meanwhile: another
                writing = await self._spawn()
        except (OSError, RuntimeError) as exc:
            self._drop(len(batch), "unwritten", f"writing process: {type(exc).__name__}: {exc}")
            return False
        except asyncio.CancelledError:  # stopped before it was handed over
            self._drop(len(batch), "unwritten")
            raise
        writing.send(frame(batch))
        writing.unreported += len(batch)  # from here it reports the batch, or its end does
        await writing.drained()
        return True

    async def _read_reports(self, writing: _Writing) -> None:
        """Count what the writing process says became of each batch, until it ends; what
        it was handed and never reported is counted dropped then."""
        stdout = writing.process.stdout
        assert stdout is not None
        try:
            while line := await stdout.readline():
                try:
                    self._reported(writing, json.loads(line))
                except (ValueError, TypeError, KeyError) as exc:
                    log.warning("delivery history: a report not understood", error=f"{exc}")
        except (OSError, ValueError) as exc:  # its output broke (a line past the limit)
            log.warning("delivery history: the writing process's reports", error=f"{exc}")
            writing.kill()
        finally:
            writing.open = False  # the next batch starts another
            await writing.process.wait()
            writing.ended_at = asyncio.get_running_loop().time()
            ended = f"writing process ended (exit code {writing.process.returncode})"
            self._drop(writing.unreported, "unwritten", ended)  # handed over, never said
            writing.unreported = 0
            writing.progress.set()

    def _reported(self, writing: _Writing, report: dict[str, Any]) -> None:
        writing.reported = True
        writing.progress.set()
        if "written" in report:
            count = int(report["written"])
            writing.unreported -= count
            self.written += count
            if self._counted_written is not None:
                self._counted_written.inc(count)
            if self._lost is not None:
                log.info("delivery history written again", lost=self._lost)
                self._lost = None
        elif "dropped" in report:
            count = int(report["dropped"])
            writing.unreported -= count
            self._drop(count, "unwritten", report.get("error"))
        elif "removed" in report:
            log.info("delivery history: old rows removed", rows=int(report["removed"]))
        elif "purge_error" in report:
            log.debug("delivery history: old rows not removed", error=report["purge_error"])

    def _drop(self, count: int, reason: str, error: str | None = None) -> None:
        if count <= 0:
            return
        self.dropped += count
        counter = self._counted_dropped.get(reason)
        if counter is not None:
            counter.inc(count)
        if self._lost is None:
            self._lost = 0
            log.warning(
                "delivery history unavailable: outcomes are dropped until it is back",
                reason=reason,
                error=error,
            )
        self._lost += count

    # Retention --------------------------------------------------------------------------

    async def purge(self) -> int:
        """Remove this prefix's rows older than the retention now; how many."""
        store = HistoryStore(self.dsn, table=self.table, connect_timeout=self.connect_timeout)
        try:
            removed = await store.purge(self.prefix, self.retention)
        finally:
            await store.close()
        if removed:
            log.info("delivery history: old rows removed", rows=removed)
        return removed

    # Stopping ---------------------------------------------------------------------------

    async def close(self, within: float = 5.0) -> None:
        """Write what is queued (within ``within`` seconds), then close; whatever could not
        be written is counted dropped."""
        self._closing = True
        self._close_asked.set()
        self._pending.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), within)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception as exc:  # the writer itself failed: say it, lose nothing silently
                log.warning("delivery history writer failed", error=f"{exc}")
        self._drop(len(self._rows), "unwritten")
        self._rows.clear()
        writing = self._writing
        if writing is not None and writing.reports is not None:
            writing.end_input()  # it writes what it has, then exits
            try:
                await asyncio.wait_for(
                    asyncio.shield(writing.reports), max(deadline - loop.time(), 0.5)
                )
            except TimeoutError:
                writing.kill()  # its end counts what it did not report
                with contextlib.suppress(asyncio.CancelledError):
                    await writing.reports


class _Writing:
    """One writing process: its pipes, the task reading its reports, and the rows it was
    handed that it has not yet said written or dropped."""

    def __init__(self, process: asyncio.subprocess.Process, started_at: float) -> None:
        self.process = process
        self.started_at = started_at  # the event loop's time
        self.reports: asyncio.Task[None] | None = None
        self.unreported = 0
        self.open = True  # until its reports end
        self.reported = False  # it said something: it started
        self.ended_at = 0.0  # the event loop's time when it ended
        self.progress = asyncio.Event()  # set by each report, and by its end

    async def progressed(self) -> None:
        """Wait for its next report (or its end)."""
        self.progress.clear()
        await self.progress.wait()

    def send(self, data: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        with contextlib.suppress(OSError, RuntimeError):  # gone: its end counts the rows
            stdin.write(data)  # into the pipe's buffer

    async def drained(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        with contextlib.suppress(OSError, RuntimeError):  # gone: its end counts the rows
            await stdin.drain()

    def end_input(self) -> None:
        stdin = self.process.stdin
        if stdin is not None:
            stdin.close()

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
