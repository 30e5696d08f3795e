"""Group commit for the archives: handlers return only after the write holding them."""

from __future__ import annotations

import asyncio

import pytest

from workers.builtin.groupwrite import Batcher


async def test_a_full_batch_is_written_at_once_and_every_handler_returns_after_it() -> None:
    written: list[list[int]] = []
    gate = asyncio.Event()

    async def write(items: list[int]) -> None:
        await gate.wait()
        written.append(items)

    batcher = Batcher(write, max_size=3, max_wait=60.0)
    handlers = [asyncio.create_task(batcher.submit(n)) for n in range(3)]
    await asyncio.sleep(0.05)
    assert not any(h.done() for h in handlers)  # the write has not completed: nobody returns
    gate.set()
    await asyncio.gather(*handlers)
    assert written == [[0, 1, 2]]


async def test_a_partial_batch_is_written_after_the_wait() -> None:
    written: list[list[str]] = []

    async def write(items: list[str]) -> None:
        written.append(items)

    batcher = Batcher(write, max_size=100, max_wait=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(batcher.submit("a"), batcher.submit("b"))
    assert written == [["a", "b"]]
    assert loop.time() - started >= 0.04


async def test_a_failed_write_raises_in_every_handler_of_its_batch_only() -> None:
    async def write(items: list[int]) -> None:
        if 1 in items:
            raise ConnectionError("database away")

    batcher = Batcher(write, max_size=2, max_wait=60.0)
    failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert [str(e) for e in failed] == ["database away", "database away"]
    await asyncio.gather(batcher.submit(3), batcher.submit(4))  # the next batch is written


async def test_a_cancelled_handler_leaves_its_batch_to_be_written() -> None:
    written: list[list[int]] = []

    async def write(items: list[int]) -> None:
        await asyncio.sleep(0.05)
        written.append(items)

    batcher = Batcher(write, max_size=2, max_wait=60.0)
    first = asyncio.create_task(batcher.submit(1))
    second = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert written == [[1, 2]]


async def test_close_writes_what_is_pending() -> None:
    written: list[list[int]] = []

    async def write(items: list[int]) -> None:
        written.append(items)

    batcher = Batcher(write, max_size=10, max_wait=60.0)
    pending = asyncio.create_task(batcher.submit(7))
    await asyncio.sleep(0)
    await batcher.close()
    await pending
    assert written == [[7]]


async def test_items_arriving_during_a_write_form_the_next_batch_when_the_writer_is_free() -> None:
    written: list[list[int]] = []

    async def write(items: list[int]) -> None:
        written.append(items)
        await asyncio.sleep(0.2)

    batcher = Batcher(write, max_size=100, max_wait=0.01, max_writers=1)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0.05)  # the first batch is being written
    later = [asyncio.create_task(batcher.submit(n)) for n in range(1, 6)]
    await asyncio.sleep(0.05)  # past their max_wait, but the one writer is busy
    assert written == [[0]]
    await asyncio.gather(first, *later)
    assert written == [[0], [1, 2, 3, 4, 5]]


async def test_a_write_may_fail_some_items_only() -> None:
    async def write(items: list[str]) -> list[Exception | None]:
        return [ValueError(f"refused {i}") if i.startswith("bad") else None for i in items]

    batcher = Batcher(write, max_size=3, max_wait=60.0)
    outcomes = await asyncio.gather(
        batcher.submit("good"),
        batcher.submit("bad one"),
        batcher.submit("fine"),
        return_exceptions=True,
    )
    assert [str(o) if o else None for o in outcomes] == [None, "refused bad one", None]
