"""Reading the ``archive`` built-in's table (``workers.builtin.archive``) back: the events of a
time window, in the order they were archived, for ``callback-fanout replay``.

A row holds the event's JSON without its raw body (``event``) and, when the archive was asked
to keep it, the raw body beside it (``raw_body``): together they are the event its consumers
got, rebuilt by :meth:`ArchivedEvent.callback_event`. The window is on ``received_at`` (when
the ingress received the callback, indexed); rows come in ``id`` order, the order they were
archived in, so that "every row after id N" is where an interrupted replay goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import pydantic

from shared.callbacks.events import RAW_BODY_CONTEXT, CallbackEvent
from shared.callbacks.routing import topic_matches
from shared.errors import ConfigError, FanoutError
from shared.settings import mask_url
from workers.builtin.archive import Options

__all__ = ["ArchiveTable", "ArchivedEvent", "Window"]


@dataclass(frozen=True)
class Window:
    """Which archived events: received in ``[since, until)`` (``until`` None: up to now),
    whose routing key matches ``routing_key`` (an AMQP topic pattern) and of job ``job_id``
    (None: any)."""

    since: datetime
    until: datetime | None = None
    routing_key: str | None = None
    job_id: str | None = None

    def matches(self, routing_key: str) -> bool:
        return self.routing_key is None or topic_matches(self.routing_key, routing_key)

    def describe(self) -> str:
        until = self.until.isoformat() if self.until is not None else "now"
        said = f"received {self.since.isoformat()} to {until}"
        if self.routing_key is not None:
            said += f", routing key {self.routing_key}"
        if self.job_id is not None:
            said += f", job {self.job_id}"
        return said


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """One row of the archive table."""

    id: int
    idempotency_key: str
    job_id: str | None
    routing_key: str
    received_at: datetime | None
    request_id: str | None
    event: str
    raw_body: bytes | None

    @classmethod
    def of(cls, record: asyncpg.Record) -> ArchivedEvent:
        return cls(**{name: record[name] for name in cls.__slots__})

    def callback_event(self) -> CallbackEvent:
        """The event as its consumers got it: the raw body is the archived one, or empty when
        the archive did not keep raw bodies. ``pydantic.ValidationError`` when the JSON is
        not an event of today's model."""
        raw = self.raw_body if self.raw_body is not None else b""
        return CallbackEvent.model_validate_json(self.event, context={RAW_BODY_CONTEXT: raw})

    def as_dict(self) -> dict[str, Any]:
        """The row as a person reads it (the event's JSON left out)."""
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat() if self.received_at else None,
            "routing_key": self.routing_key,
            "job_id": self.job_id,
            "request_id": self.request_id,
            "idempotency_key": self.idempotency_key,
        }


_FIELDS = ", ".join(ArchivedEvent.__slots__)
#: The window's conditions: $1 since, $2 until (or null), $3 job id (or null), $4 after id.
_WHERE = (
    "received_at >= $1 AND ($2::timestamptz IS NULL OR received_at < $2) "
    "AND ($3::text IS NULL OR job_id = $3) AND id > $4"
)


class ArchiveTable:
    """The archive table at ``dsn``, read a page at a time (never a long transaction)."""

    def __init__(self, dsn: str, table: str = "callback_events") -> None:
        # The archive's own check of the name: it goes into the statements.
        try:
            self.table = Options.model_validate({"dsn": dsn, "table": table}).table
        except pydantic.ValidationError as exc:
            problem = exc.errors(include_url=False, include_input=False)[0]["msg"]
            raise ConfigError(f"archive table {table!r}: {problem}") from None
        self._dsn = dsn
        self._quoted = ".".join(f'"{part}"' for part in self.table.split("."))
        self._connection: asyncpg.Connection | None = None

    def describe(self) -> str:
        """The table and its database, the password masked."""
        return f"{self.table} at {mask_url(self._dsn)}"

    async def __aenter__(self) -> ArchiveTable:
        try:
            self._connection = await asyncpg.connect(self._dsn, timeout=10)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise FanoutError(
                f"cannot read the archive at {mask_url(self._dsn)}: {type(exc).__name__}: {exc}"
            ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _fetch(self, statement: str, *arguments: object) -> list[asyncpg.Record]:
        assert self._connection is not None, "use the table in `async with`"
        try:
            return list(await self._connection.fetch(statement, *arguments))
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise FanoutError(
                f"cannot read the archive {self.describe()}: {type(exc).__name__}: {exc}"
            ) from None

    def _arguments(self, window: Window, after: int) -> tuple[object, ...]:
        return (window.since, window.until, window.job_id, after)

    async def count(self, window: Window, *, after: int = 0) -> int:
        """How many events of ``window`` come after the row ``after`` (0: all of them)."""
        statement = (
            f"SELECT routing_key, count(*) AS n FROM {self._quoted} WHERE {_WHERE} "
            "GROUP BY routing_key"
        )
        by_key = await self._fetch(statement, *self._arguments(window, after))
        return sum(int(r["n"]) for r in by_key if window.matches(r["routing_key"]))

    async def events(
        self, window: Window, *, after: int = 0, page: int = 500
    ) -> AsyncIterator[ArchivedEvent]:
        """Every event of ``window`` after the row ``after``, in the order they were archived."""
        statement = (
            f"SELECT {_FIELDS} FROM {self._quoted} WHERE {_WHERE} ORDER BY id LIMIT {int(page)}"
        )
        while True:
            records = await self._fetch(statement, *self._arguments(window, after))
            for record in records:
                if window.matches(record["routing_key"]):
                    yield ArchivedEvent.of(record)
            if len(records) < page:
                return
            after = records[-1]["id"]

    async def first(self, window: Window, count: int, *, after: int = 0) -> list[ArchivedEvent]:
        """The first ``count`` events of ``window`` after the row ``after``."""
        found: list[ArchivedEvent] = []
        if count <= 0:
            return found
        async for event in self.events(window, after=after, page=max(count, 100)):
            found.append(event)
            if len(found) >= count:
                break
        return found
