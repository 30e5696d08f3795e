"""The delivery history's table: one row per outcome a consumer worker decided.

Written by the workers (``workers.runtime.history``, in batches beside the work), read by
``callback-fanout trace`` (``callback_fanout.tracing``). This module holds what both sides
agree on: the table, the row, and the statements; it opens no connection of its own.

One row is one decision about one event in one consumer: ``handled``, ``retried``,
``parked``, ``duplicate``, ``timed_out`` (the handler was cut off and the event retried; a
timeout on the last attempt is ``parked``, its reason saying so) or ``filtered`` (the
consumer's filter refused it). ``prefix`` keeps the
deployments that share a database apart. No primary key: rows are looked up by job id,
request id or idempotency key (a hash index each: ``trace`` asks for equality only, and a
hash index costs the database about half a B-tree's CPU per row written, and less room,
``docs/bench.md``) and removed by age (a BRIN index on ``at``, a few pages for millions of
rows).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "COLUMNS",
    "HISTORY_OUTCOMES",
    "MOST_ERROR_BYTES",
    "MOST_ROWS",
    "TABLE",
    "HistoryOutcome",
    "HistoryRow",
    "create_table_sql",
    "lookup_sql",
    "purge_sql",
    "truncated",
]

TABLE = "callback_fanout_history"

#: What a history row's ``outcome`` says.
HISTORY_OUTCOMES = ("handled", "retried", "parked", "duplicate", "timed_out", "filtered")
HistoryOutcome = Literal["handled", "retried", "parked", "duplicate", "timed_out", "filtered"]

#: The longest error or park reason a row keeps, in UTF-8 bytes.
MOST_ERROR_BYTES = 500

#: The most rows one ``trace`` reads.
MOST_ROWS = 2000


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One outcome, as the table stores it (the fields in the table's column order)."""

    at: datetime
    prefix: str
    consumer: str
    outcome: str
    attempt: int
    idempotency_key: str | None
    job_id: str | None
    request_id: str | None
    routing_key: str | None
    error: str | None
    handler_seconds: float | None
    received_at: datetime | None
    source_address: str | None
    token_name: str | None
    trace_id: str | None

    @classmethod
    def from_record(cls, record: Any) -> HistoryRow:
        """A row of a query's result (an ``asyncpg.Record`` or any mapping of the columns)."""
        return cls(**{name: record[name] for name in COLUMNS})

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in COLUMNS}
        for name in ("at", "received_at"):
            value = out[name]
            out[name] = value.isoformat() if value is not None else None
        return out


#: The columns, in the order of :class:`HistoryRow`'s fields (the order COPY writes).
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(HistoryRow))


def truncated(text: str | None) -> str | None:
    """``text`` cut to :data:`MOST_ERROR_BYTES` UTF-8 bytes, never inside a character."""
    if text is None or len(text) <= MOST_ERROR_BYTES // 4:
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= MOST_ERROR_BYTES:
        return text
    return data[:MOST_ERROR_BYTES].decode("utf-8", "ignore")


def create_table_sql(table: str = TABLE) -> list[str]:
    """The statements that create the table and its indexes when missing."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
            at timestamptz NOT NULL,
            prefix text NOT NULL,
            consumer text NOT NULL,
            outcome text NOT NULL,
            attempt integer NOT NULL,
            idempotency_key text,
            job_id text,
            request_id text,
            routing_key text,
            error text,
            handler_seconds double precision,
            received_at timestamptz,
            source_address text,
            token_name text,
            trace_id text
        )""",
        f"CREATE INDEX IF NOT EXISTS {table}_job_id_idx ON {table} USING hash (job_id)",
        f"CREATE INDEX IF NOT EXISTS {table}_request_id_idx ON {table} USING hash (request_id)",
        f"CREATE INDEX IF NOT EXISTS {table}_key_idx ON {table} USING hash (idempotency_key)",
        f"CREATE INDEX IF NOT EXISTS {table}_at_idx ON {table} USING brin (at)",
    ]


def lookup_sql(table: str = TABLE) -> str:
    """Every row of a prefix (``$1``) whose job id, request id or idempotency key is ``$2``
    (and of the same events when ``$2`` is a request id), oldest first, at most ``$3``."""
    columns = ", ".join(COLUMNS)
    return (
        f"SELECT {columns} FROM {table} WHERE prefix = $1 "
        "AND (job_id = $2 OR request_id = $2 OR idempotency_key = $2) "
        "ORDER BY at, consumer, attempt LIMIT $3"
    )


def purge_sql(table: str = TABLE) -> str:
    """Remove up to ``$3`` rows of a prefix (``$1``) older than ``$2``; a batch at a time, so
    that no statement holds the table long."""
    return (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
        f"SELECT ctid FROM {table} WHERE prefix = $1 AND at < $2 LIMIT $3))"
    )
