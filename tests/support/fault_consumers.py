"""Consumers for tests that run workers as separate processes.

Configured through the environment because they run in a child process:
``FAULT_OUT`` (a file each handled event's request id is appended to, one line each, with
fsync), ``FAULT_STARTED`` (a file each started handler appends to), ``FAULT_SLEEP`` (seconds
each handler takes).
"""

from __future__ import annotations

import asyncio
import os

from workers import CallbackEvent, consumer


def _append(variable: str, line: str) -> None:
    path = os.environ.get(variable)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


@consumer(name="slow-recorder", routes=["#"], concurrency=4)
async def slow_recorder(event: CallbackEvent) -> None:
    request_id = event.envelope.request_id if event.envelope else "?"
    _append("FAULT_STARTED", request_id)
    await asyncio.sleep(float(os.environ.get("FAULT_SLEEP", "0")))
    _append("FAULT_OUT", request_id)
