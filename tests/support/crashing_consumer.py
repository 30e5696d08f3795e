"""A consumer whose handler kills its own process (SIGKILL) at every event: the body that
crashes its worker, for the test of the broker's delivery limit.

Runs in a child process; ``FAULT_STARTED`` names a file each handler start appends the
event's request id to (one line each, with fsync) before the kill.
"""

from __future__ import annotations

import os
import signal

from workers import CallbackEvent, consumer


@consumer(name="crasher", routes=["TaskFinish.#"], concurrency=1)
def crasher(event: CallbackEvent) -> None:  # a plain def: runs in a thread, may block
    path = os.environ.get("FAULT_STARTED")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write((event.envelope.request_id if event.envelope else "?") + "\n")
            out.flush()
            os.fsync(out.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
