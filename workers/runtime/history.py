"""The delivery history's writer: every outcome a worker decides, in PostgreSQL, beside the work.

:meth:`HistoryWriter.record` is all the hot path does: a row (a tuple in the table's column
order, :mod:`shared.history`) appended to a bounded in-memory queue; it never waits and never
raises. A background task writes the queue in batches (``COPY``, a batch per statement, at
most ``batch_size`` rows, ``flush_wait`` seconds after the first), creates the table on its
first connection, and removes rows older than the retention every ``purge_every`` seconds.

History is observability: a database that is down costs history, never a delivery. A row
that cannot be written (the queue is full, the database did not take its batch, the worker
stopped before it could) is counted in ``callback_fanout_history_dropped_total{reason}`` and
:attr:`HistoryWriter.dropped`; an outage is said in one log line when the first row is lost,
and one when rows are written again (with how many were lost in between). Every row is
either written or counted dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from shared.history import COLUMNS, TABLE, create_table_sql, purge_sql, truncated
from shared.logs import get_logger, mask_values
from shared.metrics import Counter, Metrics
from shared.otel import trace_id_of
from shared.settings import Settings, mask_url
from shared.wire.headers import IDEMPOTENCY_KEY, REQUEST_ID, ROUTING_KEY, TRACEPARENT
from workers.runtime.handling import Outcome

__all__ = ["DROP_REASONS", "HistoryWriter"]

log = get_logger("history")

#: Why a row was dropped: ``full`` (the queue was full: the database is away or slower than
#: the work), ``unwritten`` (the database did not take its batch, or the worker stopped first).
DROP_REASONS = ("full", "unwritten")

#: A row as COPY writes it: the values of :data:`shared.history.COLUMNS`, in order.
Row = tuple[Any, ...]

_PURGE_BATCH = 10_000


class HistoryWriter:
    """Writes outcome rows in batches to the history table of ``dsn``."""

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
        self._task: asyncio.Task[None] | None = None
        self._pool: asyncpg.Pool | None = None
        self._table_ready = False
        self._lost: int | None = None  # rows dropped in the outage going on; None: none
        self._purged_at: float | None = None
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
        while True:
            try:
                async with asyncio.timeout(self.purge_every):  # idle: still purge in time
                    await self._pending.wait()
            except TimeoutError:
                await self._purge_when_due()
                continue
            if len(self._rows) < self.batch_size and not self._closing:
                await asyncio.sleep(self.flush_wait)  # let a batch gather
            while self._rows:
                batch = [self._rows.popleft() for _ in range(min(self.batch_size, len(self._rows)))]
                if not await self._write(batch):
                    if self._closing:  # no waiting for the database at shutdown
                        self._drop(len(self._rows), "unwritten")
                        self._rows.clear()
                    else:
                        await asyncio.sleep(self.retry_after)
                    break
            if not self._rows:
                self._pending.clear()
                if self._closing:
                    return
            await self._purge_when_due()

    async def _write(self, batch: list[Row]) -> bool:
        """Write ``batch``; False (its rows counted dropped) when the database did not take it."""
        try:
            pool = await self._ready_pool()
            async with pool.acquire(timeout=self.connect_timeout) as connection:
                await connection.copy_records_to_table(
                    self.table, records=batch, columns=COLUMNS, timeout=self.connect_timeout * 2
                )
        except asyncio.CancelledError:
            self._drop(len(batch), "unwritten")
            raise
        except Exception as exc:  # the database is away, or refused: history only
            self._drop(len(batch), "unwritten", exc)
            return False
        self.written += len(batch)
        if self._counted_written is not None:
            self._counted_written.inc(len(batch))
        if self._lost is not None:
            log.info("delivery history written again", lost=self._lost)
            self._lost = None
        return True

    async def _ready_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,  # connect on first use: a worker starts without its history
                max_size=1,
                timeout=self.connect_timeout,
                command_timeout=max(self.connect_timeout * 2, 10.0),
            )
        if not self._table_ready:
            acquired = self._pool.acquire(timeout=self.connect_timeout)
            async with acquired as connection, connection.transaction():
                # one creation at a time across workers starting together
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", TABLE)
                for statement in create_table_sql(self.table):
                    await connection.execute(statement)
            self._table_ready = True
        return self._pool

    def _drop(self, count: int, reason: str, error: BaseException | None = None) -> None:
        if count <= 0:
            return
        self.dropped += count
        counter = self._counted_dropped.get(reason)
        if counter is not None:
            counter.inc(count)
        if self._lost is None:
            self._lost = 0
            said = f"{type(error).__name__}: {error}" if error is not None else None
            log.warning(
                "delivery history unavailable: outcomes are dropped until it is back",
                reason=reason,
                error=said,
            )
        self._lost += count

    # Retention --------------------------------------------------------------------------

    async def _purge_when_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._purged_at is not None and now - self._purged_at < self.purge_every:
            return
        if self._lost is not None:
            return  # the database is away: try again once it is back
        self._purged_at = now
        try:
            await self.purge()
        except Exception as exc:  # away while idle: said when rows are lost, not here
            log.debug("delivery history: old rows not removed", error=f"{exc}")

    async def purge(self) -> int:
        """Remove this prefix's rows older than the retention; how many."""
        pool = await self._ready_pool()
        before = datetime.now(UTC) - timedelta(seconds=self.retention)
        removed = 0
        async with pool.acquire(timeout=self.connect_timeout) as connection:
            while True:
                status = await connection.execute(
                    purge_sql(self.table), self.prefix, before, _PURGE_BATCH
                )
                count = int(status.split()[-1])
                removed += count
                if count < _PURGE_BATCH:
                    break
        if removed:
            log.info("delivery history: old rows removed", rows=removed)
        return removed

    # Stopping ---------------------------------------------------------------------------

    async def close(self, within: float = 5.0) -> None:
        """Write what is queued (within ``within`` seconds), then close; whatever could not
        be written is counted dropped."""
        self._closing = True
        self._pending.set()
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
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5.0)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                self._pool.terminate()
            self._pool = None
