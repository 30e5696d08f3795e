"""Two consumers for a ``run`` process started by a test: one fails its first call."""

from __future__ import annotations

from workers import CallbackEvent, consumer

_CALLS = {"flaky": 0}


@consumer(name="flaky", routes=["TaskFinish.#"])
async def flaky(event: CallbackEvent) -> None:
    _CALLS["flaky"] += 1
    if _CALLS["flaky"] == 1:
        raise RuntimeError("flaky fails its first call on purpose")


@consumer(name="steady", routes=["TaskFinish.Snapshot.*"])
async def steady(event: CallbackEvent) -> None:
    return None
