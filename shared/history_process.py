"""The delivery history's writing process: the rows a worker sends it, in PostgreSQL.

It imports nothing of the project but :mod:`shared.history` and the one length-prefixed
framing (:mod:`shared.wire.framing`), so that it starts in a
twentieth of a second and holds about 27 MB.

A worker's :class:`workers.runtime.history.HistoryWriter` starts this process beside it
(``main()`` in a Python process of its own) and sends it its rows in batches. Encoding
them for ``COPY`` and the database's round trips are spent here, on whatever core the system
gives this process, never on the worker's event loop: done in the worker they cost it about a
tenth of its events/s, handed over here 3 to 5 % (``docs/bench.md``).

Standard input carries frames, each a 4-byte big-endian length and a pickle (a pipe private to
the worker and its own child): first the :class:`Config`, then batches, each a list of rows
(:data:`shared.history.COLUMNS`' values, in order). Standard output says what became of each
batch, one JSON object a line: ``{"written": n}``, ``{"dropped": n, "error": "..."}``, and
``{"removed": n}`` or ``{"purge_error": "..."}`` after a purge of old rows. The process logs
nothing itself: the worker counts and says it all. At the end of its input it writes what it
has read (what is left when a write has failed is reported dropped at once), reports it, and
exits. The worker hands it at most two batches at a time, so what it holds is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shared.history import COLUMNS, TABLE, create_table_sql, purge_sql, truncated
from shared.wire import framing

__all__ = ["Config", "HistoryStore", "frame", "main"]

#: Rows removed by one purge statement (a batch at a time, so no statement holds the table).
PURGE_BATCH = 10_000

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Config:
    """What the writing process needs: where, what prefix, how long rows are kept."""

    dsn: str
    prefix: str
    retention: float
    table: str = TABLE
    retry_after: float = 2.0
    purge_every: float = 300.0
    connect_timeout: float = 5.0


def frame(value: object) -> bytes:
    """``value`` as one frame of the process's input."""
    return framing.frame(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's value; None at the end of the input."""
    try:
        (length,) = framing.LENGTH.unpack(await reader.readexactly(framing.LENGTH.size))
        return pickle.loads(await reader.readexactly(length))  # our own parent's frames
    except asyncio.IncompleteReadError:
        return None


class HistoryStore:
    """The history table of one database: created when missing, written, purged."""

    def __init__(self, dsn: str, *, table: str = TABLE, connect_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.table = table
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._table_ready = False

    async def _ready_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,  # connect on first use, again after the database was away
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

    async def write(self, rows: list[Row]) -> None:
        """Write ``rows`` (one ``COPY``); raises when the database did not take them."""
        pool = await self._ready_pool()
        async with pool.acquire(timeout=self.connect_timeout) as connection:
            await connection.copy_records_to_table(
                self.table, records=rows, columns=COLUMNS, timeout=self.connect_timeout * 2
            )

    async def purge(self, prefix: str, retention: float) -> int:
        """Remove ``prefix``'s rows older than ``retention`` seconds; how many."""
        pool = await self._ready_pool()
        before = datetime.now(UTC) - timedelta(seconds=retention)
        removed = 0
        async with pool.acquire(timeout=self.connect_timeout) as connection:
            while True:
                status = await connection.execute(
                    purge_sql(self.table), prefix, before, PURGE_BATCH
                )
                count = int(status.split()[-1])
                removed += count
                if count < PURGE_BATCH:
                    return removed

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5.0)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                self._pool.terminate()
            self._pool = None


class _Process:
    """The loop of the writing process: batches in, reports out."""

    def __init__(self, config: Config, report: Any) -> None:
        self.config = config
        self.report = report
        self.store = HistoryStore(
            config.dsn, table=config.table, connect_timeout=config.connect_timeout
        )
        self.batches: asyncio.Queue[list[Row] | None] = asyncio.Queue()
        self.ended = asyncio.Event()  # the input ended
        self.away = False  # the last write failed
        self.purged_at: float | None = None

    async def read(self, reader: asyncio.StreamReader) -> None:
        while (batch := await _read_frame(reader)) is not None:
            self.batches.put_nowait(batch)
        self.ended.set()
        self.batches.put_nowait(None)

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.config.purge_every):  # idle: still purge
                    batch = await self.batches.get()
            except TimeoutError:
                await self.purge_when_due()
                continue
            if batch is None:
                return
            if self.away and self.ended.is_set():  # no waiting for the database at the end
                self.report({"dropped": len(batch), "error": None})
                continue
            try:
                await self.store.write(batch)
            except Exception as exc:  # the database is away, or refused: history only
                self.away = True
                error = truncated(f"{type(exc).__name__}: {exc}")
                self.report({"dropped": len(batch), "error": error})
                with contextlib.suppress(TimeoutError):  # wait before trying again
                    await asyncio.wait_for(self.ended.wait(), self.config.retry_after)
                continue
            self.away = False
            self.report({"written": len(batch)})
            await self.purge_when_due()

    async def purge_when_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.away or (
            self.purged_at is not None and now - self.purged_at < self.config.purge_every
        ):
            return
        self.purged_at = now
        try:
            removed = await self.store.purge(self.config.prefix, self.config.retention)
        except Exception as exc:  # away while idle: said when rows are lost, not here
            self.report({"purge_error": truncated(f"{type(exc).__name__}: {exc}")})
            return
        if removed:
            self.report({"removed": removed})


async def serve(reader: asyncio.StreamReader, write_line: Any) -> None:
    """Read the config, then batches, from ``reader``; report each with ``write_line``."""
    config = await _read_frame(reader)
    if not isinstance(config, Config):
        return

    def report(what: dict[str, Any]) -> None:
        write_line(json.dumps(what) + "\n")

    process = _Process(config, report)
    reading = asyncio.create_task(process.read(reader))
    try:
        await process.run()
    finally:
        reading.cancel()
        await process.store.close()


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def write_line(line: str) -> None:
        sys.stdout.write(line)
        sys.stdout.flush()

    await serve(reader, write_line)


def main() -> None:
    """Run the writing process on this process's standard input and output."""
    for stop in (signal.SIGINT, signal.SIGTERM):  # its worker ends it: the end of its input
        signal.signal(stop, signal.SIG_IGN)  # (a Ctrl-C or a group's stop reaches both)
    with contextlib.suppress(BrokenPipeError):
        asyncio.run(_main())
