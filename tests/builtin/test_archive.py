"""``archive``: every event once in PostgreSQL, acked only after its batch committed."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import pytest
from yarl import URL

from shared.errors import ConfigError
from shared.settings import Settings
from tests.builtin.conftest import StartWith, observed
from tests.conftest import SEEDS
from tests.support import held_archive
from tests.support.broker import BrokerClient
from tests.support.processes import RoleProcess
from tests.support.proxy import CuttableProxy
from tests.support.system import RunningSystem
from tests.support.waiting import eventually
from workers.builtin import archive
from workers.consumer import ConsumerSpec
from workers.runtime.worker import WorkerService

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()
JOB = "a3c193f288b2c11eeb60f39de2f86f409"


def archiving(dsn: str, table: str, *, name: str = "archive", **options: Any) -> Any:
    spec = ConsumerSpec(
        name=name, routes=("TaskFinish.#",), retry_delays=(0.3,), max_attempts=30, concurrency=50
    )
    built = archive.build(
        spec, archive.Options.model_validate({"dsn": dsn, "table": table, **options})
    )
    return observed(built)


def ocr_job(n: int) -> bytes:
    """The OCR callback for another job (its own idempotency key)."""
    return OCR.replace(JOB.encode(), f"{JOB[:-4]}{n:04d}".encode())


async def rows(pg: asyncpg.Connection, table: str) -> list[asyncpg.Record]:
    return list(await pg.fetch(f'SELECT * FROM "{table}" ORDER BY id'))


async def test_the_table_is_created_with_its_indexes_and_a_row_holds_the_event(
    start_with: StartWith, pg_dsn: str, pg: asyncpg.Connection, table: str
) -> None:
    loaded, outcomes = archiving(pg_dsn, table, raw_body=True)
    system = await start_with([loaded])
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: len(outcomes.handled) == 1)
    [row] = await rows(pg, table)
    [event] = outcomes.handled
    assert event.envelope is not None
    assert row["idempotency_key"] == event.idempotency_key
    assert (row["job_id"], row["routing_key"], row["event_name"]) == (
        JOB,
        "TaskFinish.ImageOCR.Success",
        "TaskFinish",
    )
    assert (row["tag"], row["state"], row["code"]) == ("ImageOCR", "Success", "Success")
    assert row["end_time"] == event.end_time
    assert row["received_at"] == event.envelope.received_at
    assert row["request_id"] == event.envelope.request_id
    stored = json.loads(row["event"])
    assert "raw_body" not in stored["envelope"]  # stored once, in its own column
    assert stored == event.model_dump(mode="json", exclude={"envelope": {"raw_body"}})
    assert row["raw_body"] == OCR
    indexes = await pg.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = $1", table)
    defs = " ".join(r["indexdef"] for r in indexes)
    assert "(job_id)" in defs
    assert "(received_at)" in defs
    assert "UNIQUE INDEX" in defs
    assert "(idempotency_key)" in defs


async def test_the_same_callback_twice_and_a_redelivery_store_one_row(
    start_with: StartWith,
    pg_dsn: str,
    pg: asyncpg.Connection,
    table: str,
    broker: BrokerClient,
) -> None:
    loaded, outcomes = archiving(pg_dsn, table)
    system = await start_with([loaded])
    assert (await system.post(OCR)).status == 200
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: len(outcomes.handled) == 2)
    # a redelivery: the event message once more on the consumer's queue
    queue = broker.topology.consumer("archive", (0.3,)).main
    await broker.channel.default_exchange.publish(
        _event_message(outcomes.handled[0]), routing_key=queue
    )
    await eventually(lambda: len(outcomes.handled) == 3)
    [row] = await rows(pg, table)
    assert row["job_id"] == JOB
    assert {e.idempotency_key for e in outcomes.handled} == {row["idempotency_key"]}
    assert outcomes.errors == []


def _event_message(event: Any) -> Any:
    from shared.wire.events import event_message

    return event_message(event)


async def test_events_are_written_in_batches_and_each_acked_after_its_batch(
    start_with: StartWith, pg_dsn: str, pg: asyncpg.Connection, table: str, broker: BrokerClient
) -> None:
    # The wait is long enough that only the size closes a batch until the last: 10, 10, 5.
    loaded, outcomes = archiving(pg_dsn, table, batch_size=10, batch_wait_ms=1500)
    system = await start_with([loaded])
    for n in range(25):
        assert (await system.post(ocr_job(n))).status == 200
    await eventually(lambda: len(outcomes.handled) == 25)
    stored = await rows(pg, table)
    assert sorted(r["job_id"] for r in stored) == sorted(f"{JOB[:-4]}{n:04d}" for n in range(25))
    # a batch is one statement, its own transaction: its rows share now(), their archived_at
    batches = collections.Counter(r["archived_at"] for r in stored)
    assert sorted(batches.values()) == [5, 10, 10]
    assert await broker.count(broker.topology.consumer("archive", (0.3,)).main) == 0


@pytest.fixture
async def pg_proxy(pg_dsn: str) -> AsyncIterator[tuple[str, CuttableProxy]]:
    """The test database behind a TCP proxy the test can cut (the server stays up)."""
    url = URL(pg_dsn)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield str(url.with_host("127.0.0.1").with_port(proxy.port)), proxy
    await proxy.close()


async def test_with_the_database_away_events_are_retried_then_all_stored_once_it_is_back(
    start_with: StartWith,
    pg_proxy: tuple[str, CuttableProxy],
    pg: asyncpg.Connection,
    table: str,
    broker: BrokerClient,
) -> None:
    dsn, proxy = pg_proxy
    loaded, outcomes = archiving(dsn, table, batch_wait_ms=50)
    system = await start_with([loaded])
    proxy.cut()
    for n in range(5):
        assert (await system.post(ocr_job(n))).status == 200
    await eventually(lambda: len(outcomes.errors) >= 10, timeout=20)  # retried, not acked
    assert outcomes.handled == []
    assert await rows(pg, table) == []
    proxy.restore()
    await eventually(lambda: len(outcomes.handled) == 5, timeout=20)
    stored = await rows(pg, table)
    assert sorted(r["job_id"] for r in stored) == sorted(f"{JOB[:-4]}{n:04d}" for n in range(5))
    assert await broker.count(broker.topology.consumer("archive", (0.3,)).dead) == 0


async def test_a_worker_killed_between_commit_and_ack_leaves_one_row_after_the_redelivery(
    settings: Settings,
    broker: BrokerClient,
    pg_dsn: str,
    pg: asyncpg.Connection,
    table: str,
) -> None:
    name = held_archive.NAME
    broker.track([name], settings.retry_delays)
    child = await RoleProcess.start(
        "worker",
        settings,
        "--consumer",
        "tests.support.held_archive",
        env={"HELD_ARCHIVE_DSN": pg_dsn, "HELD_ARCHIVE_TABLE": table},
    )
    queue = broker.topology.consumer(name, settings.retry_delays).main
    system = await RunningSystem.start(settings, [], worker=False)
    try:
        await eventually(lambda: _consumed_by_one(broker, queue), timeout=30)
        assert (await system.post(OCR)).status == 200
        await eventually(lambda: _count(pg, table, 1), timeout=20)  # committed, not acked
        child.signal(signal.SIGKILL)
        await child.wait(10)
        # the broker gives the unacked event to the next worker: the real archive consumer
        loaded, outcomes = archiving(pg_dsn, table, name=name)
        loaded = type(loaded)(
            ConsumerSpec(name, held_archive.ROUTES),
            loaded.handle,
            loaded.startup,
            loaded.shutdown,
            loaded.origin,
        )
        rerun = await RunningSystem.start(settings, [loaded], ingress=False, router=False)
        try:
            await eventually(lambda: len(outcomes.handled) == 1, timeout=20)
            assert outcomes.handled[0].envelope is not None
        finally:
            await rerun.stop()
    finally:
        await child.close()
        await system.stop()
    [row] = await rows(pg, table)
    assert row["job_id"] == JOB
    assert await broker.count(queue) == 0


async def _consumed_by_one(broker: BrokerClient, queue: str) -> bool:
    channel = await broker.connection.channel()  # a passive miss closes the channel it used
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return bool(declared.declaration_result.consumer_count == 1)


async def _count(pg: asyncpg.Connection, table: str, n: int) -> bool:
    try:
        return bool(await pg.fetchval(f'SELECT count(*) FROM "{table}"') == n)
    except asyncpg.UndefinedTableError:
        await asyncio.sleep(0)
        return False


async def test_a_worker_starts_without_its_database_and_stores_the_events_once_it_is_up(
    start_with: StartWith,
    pg_proxy: tuple[str, CuttableProxy],
    pg: asyncpg.Connection,
    table: str,
) -> None:
    dsn, proxy = pg_proxy
    proxy.cut()
    loaded, outcomes = archiving(dsn, table)
    system = await start_with([loaded])  # started: the table waits for the database
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: len(outcomes.errors) >= 2, timeout=20)
    proxy.restore()
    await eventually(lambda: len(outcomes.handled) == 1, timeout=20)
    [row] = await rows(pg, table)
    assert row["job_id"] == JOB


async def test_a_database_that_refuses_stops_the_start_with_one_clear_error(
    settings: Settings, broker: BrokerClient, pg_dsn: str
) -> None:
    missing = str(URL(pg_dsn).with_path("/no_such_database_here"))
    loaded, _ = archiving(missing, "events", name="refused")
    broker.track(["refused"], (0.3,))
    worker = WorkerService(settings, [loaded])
    await worker.start()
    try:
        with pytest.raises(ConfigError) as raised:
            await worker.wait_started()
    finally:
        await worker.stop()
    assert str(raised.value) == (
        "consumer 'refused': the archive database refused: "
        'database "no_such_database_here" does not exist'
    )


async def test_an_event_the_database_refuses_is_parked_at_once_and_its_batch_mates_stored(
    start_with: StartWith,
    pg_dsn: str,
    pg: asyncpg.Connection,
    table: str,
    broker: BrokerClient,
) -> None:
    loaded, outcomes = archiving(pg_dsn, table, batch_size=10, batch_wait_ms=500)
    system = await start_with([loaded])
    nul = (SEEDS / "ocr.1.json").read_bytes().replace(b'"Language": ""', b'"Language": "a\\u0000b"')
    assert b"\\u0000" in nul
    for body in (ocr_job(1), nul, ocr_job(2)):
        assert (await system.post(body)).status == 200
    dead = broker.topology.consumer("archive", (0.3,)).dead
    await eventually(lambda: broker.count_is(dead, 1), timeout=20)
    await eventually(lambda: len(outcomes.handled) == 2)
    [parked] = await broker.take_all(dead)
    headers = parked.headers or {}
    assert headers["x-attempts"] == 1
    assert str(headers["x-last-error"]).startswith(
        "GiveUp: the archive database refuses this event: unsupported Unicode escape sequence"
    )
    assert sorted(r["job_id"] for r in await rows(pg, table)) == [
        f"{JOB[:-4]}0001",
        f"{JOB[:-4]}0002",
    ]


async def test_a_statement_longer_than_statement_timeout_fails_and_is_retried(
    start_with: StartWith, pg_dsn: str, pg: asyncpg.Connection, table: str
) -> None:
    loaded, outcomes = archiving(pg_dsn, table, statement_timeout=0.5, batch_wait_ms=0)
    system = await start_with([loaded])
    assert (await system.post(ocr_job(1))).status == 200
    await eventually(lambda: len(outcomes.handled) == 1)  # the table is there

    locked = pg.transaction()
    await locked.start()
    await pg.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')  # inserts wait
    try:
        posted = asyncio.get_running_loop().time()
        assert (await system.post(ocr_job(2))).status == 200
        await eventually(lambda: len(outcomes.errors) > 0, timeout=10)
        took = asyncio.get_running_loop().time() - posted
        assert 0.5 <= took < 3.0  # the statement's 0.5 s, not the default 30
        assert outcomes.handled[1:] == []
    finally:
        await locked.rollback()
    await eventually(lambda: len(outcomes.handled) == 2)  # retried once the lock is gone
    assert [r["job_id"] for r in await rows(pg, table)] == [f"{JOB[:-4]}0001", f"{JOB[:-4]}0002"]
