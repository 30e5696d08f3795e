"""A consumer that does nothing, for the end-to-end and memory runs of the benchmark.

Loaded by ``callback-fanout worker --consumer bench.noop_consumer``. When the environment
names a ``BENCH_PROGRESS_DIR``, each worker process writes there, every 0.2 s and at
shutdown, how many events it handled and when the first and the last came
(``noop-<pid>.json``), so the benchmark counts without touching the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path

from workers import CallbackEvent, Consumer, consumer

__all__ = ["NoopConsumer"]

#: Events a worker holds unacked at once (the prefetch); bounds its memory while draining.
CONCURRENCY = 64


@consumer(name="bench-noop", routes=["#"], concurrency=CONCURRENCY)
class NoopConsumer(Consumer):
    """Counts events, keeps nothing."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        directory = os.environ.get("BENCH_PROGRESS_DIR")
        self._path = Path(directory) / f"noop-{os.getpid()}.json" if directory else None
        self._reporter: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        if self._path is not None:
            self._reporter = asyncio.create_task(self._report_every(0.2))

    async def handle(self, event: CallbackEvent) -> None:
        now = time.time()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1

    async def shutdown(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        self._write()

    async def _report_every(self, interval: float) -> None:
        while True:
            self._write()
            await asyncio.sleep(interval)

    def _write(self) -> None:
        if self._path is None:
            return
        progress = {"count": self.count, "first": self.first, "last": self.last}
        partial = self._path.with_suffix(".tmp")
        partial.write_text(json.dumps(progress))
        partial.replace(self._path)
