"""An ``archive`` consumer that stops between its commit and the ack, for a test that kills
its worker there. Loaded in a child worker with ``--consumer tests.support.held_archive``;
its database and table come from ``HELD_ARCHIVE_DSN`` and ``HELD_ARCHIVE_TABLE``."""

from __future__ import annotations

import asyncio
import os

from shared.callbacks import CallbackEvent
from workers.builtin.archive import ArchiveConsumer, Options, Row
from workers.consumer import Consumer, ConsumerSpec, consumer

__all__ = ["HeldArchive"]

NAME = "held-archive"
ROUTES = ("TaskFinish.#",)


class _CommitsThenHangs(ArchiveConsumer):
    async def _write(self, rows: list[Row]) -> None:
        await super()._write(rows)  # committed
        await asyncio.Event().wait()  # ... and never acked: the test kills the worker here


@consumer(name=NAME, routes=list(ROUTES))
class HeldArchive(Consumer):
    def __init__(self) -> None:
        options = Options.model_validate(
            {"dsn": os.environ["HELD_ARCHIVE_DSN"], "table": os.environ["HELD_ARCHIVE_TABLE"]}
        )
        self.inner = _CommitsThenHangs(ConsumerSpec(NAME, ROUTES), options)

    async def startup(self) -> None:
        await self.inner.startup()

    async def shutdown(self) -> None:
        await self.inner.shutdown()

    async def handle(self, event: CallbackEvent) -> None:
        await self.inner.handle(event)
