"""The consumers the console benchmark (``bench/console_bench.py``) configures, loaded by
name as an operator's would be so that the console sees their policy: ``bench``, whose dead
queue the benchmark fills, and ``idle``, whose dead queue stays empty. Neither runs: no
worker is started, the console only reads their queues."""

from __future__ import annotations

from workers import CallbackEvent, consumer

__all__ = ["NAMES", "TARGETS"]

NAMES = ("bench", "idle")
TARGETS = [f"{__name__}:{name}" for name in NAMES]


@consumer(name="bench", routes=["TaskFinish.#"], max_attempts=3, retry_delays=[1.0, 5.0])
async def bench(event: CallbackEvent) -> None:
    raise RuntimeError(f"bench refuses job {event.job_id}")


@consumer(name="idle", routes=["#"])
async def idle(event: CallbackEvent) -> None:
    return None
