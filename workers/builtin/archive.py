"""The ``archive`` built-in: every event as a row in PostgreSQL (asyncpg).

The table (``table``, created at startup when missing) has one row per idempotency key:
``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING``, so redeliveries and the sender's
retries store one row. Events are written in batches (``batch_size`` events or
``batch_wait_ms`` after the first, one statement each); a handler returns, and the runtime
acks its message, only after the batch holding it committed. When the database is away the
statement fails, every handler of the batch raises and the runtime retries them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared import otel
from shared.callbacks import CallbackEvent
from shared.errors import ConfigError, GiveUp
from shared.logs import get_logger, mask_values
from shared.settings import mask_url
from workers.builtin.groupwrite import Batcher, Outcomes
from workers.consumer import Consumer, ConsumerSpec, LoadedConsumer

__all__ = ["ArchiveConsumer", "Options", "Row", "build", "create_table_sql", "insert_sql"]

log = get_logger("consumer.archive")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Options(BaseModel):
    """Options of ``use = "archive"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dsn: SecretStr = Field(
        description="PostgreSQL DSN, `postgresql://user:password@host/db` (a secret: give it "
        "as `{ env = ... }` or `{ file = ... }`)."
    )
    table: str = Field(
        "callback_events",
        description="Table name, `name` or `schema.name` (lowercase letters, digits, `_`).",
    )
    raw_body: bool = Field(False, description="Also store the callback's raw body (bytea).")
    batch_size: int = Field(
        200,
        ge=1,
        le=10000,
        description="Events per statement at most (1: a statement per event). The consumer's "
        "`concurrency` defaults to twice this.",
    )
    batch_wait_ms: float = Field(
        20.0, ge=0, description="Milliseconds a batch waits for more events after its first."
    )
    pool_size: int = Field(4, ge=1, le=100, description="Database connections at most.")
    statement_timeout: float = Field(30.0, gt=0, description="Seconds per statement.")

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
            raise ValueError(
                "table must be `name` or `schema.name`, each 1-63 lowercase letters, digits "
                "or '_', not starting with a digit"
            )
        return value


def _quoted(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


def _index_name(table: str, what: str) -> str:
    return f'"{table.rsplit(".", maxsplit=1)[-1][:40]}_{what}_idx"'


def create_table_sql(table: str) -> list[str]:
    """The statements that create ``table`` and its indexes when missing."""
    name = _quoted(table)
    return [
        f"""CREATE TABLE IF NOT EXISTS {name} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            idempotency_key text NOT NULL UNIQUE,
            job_id text,
            routing_key text NOT NULL,
            event_name text NOT NULL,
            tag text,
            state text,
            code text,
            creation_time timestamptz,
            start_time timestamptz,
            end_time timestamptz,
            received_at timestamptz,
            archived_at timestamptz NOT NULL DEFAULT now(),
            request_id text,
            event jsonb NOT NULL,
            raw_body bytea
        )""",
        f"CREATE INDEX IF NOT EXISTS {_index_name(table, 'job_id')} ON {name} (job_id)",
        f"CREATE INDEX IF NOT EXISTS {_index_name(table, 'received_at')} ON {name} (received_at)",
    ]


_COLUMNS = (
    ("idempotency_key", "text"),
    ("job_id", "text"),
    ("routing_key", "text"),
    ("event_name", "text"),
    ("tag", "text"),
    ("state", "text"),
    ("code", "text"),
    ("creation_time", "timestamptz"),
    ("start_time", "timestamptz"),
    ("end_time", "timestamptz"),
    ("received_at", "timestamptz"),
    ("request_id", "text"),
    ("event", "jsonb"),
    ("raw_body", "bytea"),
)


def insert_sql(table: str) -> str:
    """One statement for a whole batch: a column array per parameter, unnested."""
    columns = ", ".join(name for name, _ in _COLUMNS)
    arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(_COLUMNS, start=1))
    return (
        f"INSERT INTO {_quoted(table)} ({columns}) SELECT * FROM unnest({arrays}) "
        "ON CONFLICT (idempotency_key) DO NOTHING"
    )


#: The raw body is not stored twice: in ``raw_body`` (bytea) when asked for, not in the jsonb.
_NOT_IN_JSONB: Any = {"envelope": {"raw_body"}}


@dataclass(frozen=True, slots=True)
class Row:
    """One event as the table stores it."""

    idempotency_key: str
    job_id: str | None
    routing_key: str
    event_name: str
    tag: str | None
    state: str | None
    code: str | None
    creation_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    received_at: datetime | None
    request_id: str | None
    event: str
    raw_body: bytes | None

    @classmethod
    def of(cls, event: CallbackEvent, *, raw_body: bool) -> Row:
        envelope = event.envelope
        return cls(
            idempotency_key=event.idempotency_key,
            job_id=event.job_id,
            routing_key=event.routing_key,
            event_name=event.event_name,
            tag=event.tag,
            state=event.state,
            code=event.code,
            creation_time=event.creation_time,
            start_time=event.start_time,
            end_time=event.end_time,
            received_at=envelope.received_at if envelope else None,
            request_id=envelope.request_id if envelope else None,
            event=event.model_dump_json(exclude=_NOT_IN_JSONB),
            raw_body=envelope.raw_body if envelope and raw_body else None,
        )


class ArchiveConsumer(Consumer):
    """Writes events to PostgreSQL in batches; one connection pool per consumer."""

    def __init__(self, spec: ConsumerSpec, options: Options) -> None:
        self.spec = spec
        self.options = options
        self._insert = insert_sql(options.table)
        self._pool: asyncpg.Pool | None = None
        self._table_ready = False
        self._batcher = Batcher(
            self._write,
            max_size=options.batch_size,
            max_wait=options.batch_wait_ms / 1000,
        )

    async def startup(self) -> None:
        """Open the pool and create the table; a database that cannot be reached now only
        delays that to the first batch (its events retry meanwhile). A database that answers
        with an error (authentication, permissions, no such database) stops the start."""
        options = self.options
        self._pool = await asyncpg.create_pool(
            options.dsn.get_secret_value(),
            min_size=0,  # connect on first use: the worker starts without the database
            max_size=options.pool_size,
            command_timeout=options.statement_timeout,
        )
        try:
            await self._ensure_table()
        except (
            OSError,
            TimeoutError,
            asyncpg.CannotConnectNowError,  # starting up or shutting down
            asyncpg.TooManyConnectionsError,
        ) as exc:
            log.warning(
                "archive database unreachable at start; the table is created with the first batch",
                consumer=self.spec.name,
                error=f"{type(exc).__name__}: {exc}",
            )
        except asyncpg.PostgresError as exc:
            await self._pool.close()
            raise ConfigError(
                f"consumer {self.spec.name!r}: the archive database refused: {exc}"
            ) from None
        log.info(
            "archiving",
            consumer=self.spec.name,
            database=mask_url(options.dsn.get_secret_value()),
            table=options.table,
            batch_size=options.batch_size,
        )

    async def _ensure_table(self) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as connection, connection.transaction():
            # one table creation at a time across workers starting together
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", self.options.table
            )
            for statement in create_table_sql(self.options.table):
                await connection.execute(statement)
        self._table_ready = True

    async def shutdown(self) -> None:
        await self._batcher.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def handle(self, event: CallbackEvent) -> None:
        await self._batcher.submit(Row.of(event, raw_body=self.options.raw_body))

    async def _write(self, rows: list[Row]) -> Outcomes:
        """One statement for the batch (it commits on its own). When the database refuses the
        data of some row (a NUL character, say), each row is written alone, so that only the
        refused events are parked (``GiveUp``: retrying cannot help) and the others stored."""
        assert self._pool is not None, "startup() was not called"
        if not self._table_ready:
            await self._ensure_table()
        try:
            await self._insert_rows(rows)
        except asyncpg.DataError as exc:
            if len(rows) == 1:
                raise GiveUp(f"the archive database refuses this event: {exc}") from None
            return [await self._write_alone(row) for row in rows]
        return None

    async def _write_alone(self, row: Row) -> Exception | None:
        try:
            await self._insert_rows([row])
        except asyncpg.DataError as exc:
            return GiveUp(f"the archive database refuses this event: {exc}")
        return None

    async def _insert_rows(self, rows: list[Row]) -> None:
        if otel.STATE.on:  # a client span, only when tracing is on
            from workers.builtin.otel import insert_span

            with insert_span(self.options.table, len(rows)):
                await self._execute(rows)
            return
        await self._execute(rows)

    async def _execute(self, rows: list[Row]) -> None:
        assert self._pool is not None
        columns = [[getattr(row, name) for row in rows] for name, _ in _COLUMNS]
        async with self._pool.acquire() as connection:
            await connection.execute(self._insert, *columns)


def build(spec: ConsumerSpec, options: Options) -> LoadedConsumer:
    """An ``archive`` consumer for ``spec``; the DSN is masked in every log line.

    Without a ``concurrency`` of its own it takes two batches' worth (its prefetch), so that
    a batch can fill while the one before commits.
    """
    dsn = options.dsn.get_secret_value()
    mask_values(dsn, *filter(None, [urlsplit(dsn).password]))
    if spec.concurrency is None:
        spec = replace(spec, concurrency=2 * options.batch_size)
    return LoadedConsumer.from_instance(
        spec, ArchiveConsumer(spec, options), f"built-in archive as {spec.name!r}"
    )
