"""The delivery history's writer: deliveries never wait for it, a database that is away costs
counted history only (one log line per outage), old rows are removed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from pydantic import SecretStr
from yarl import URL

from shared.callbacks import parse_callback
from shared.history import COLUMNS, TABLE, create_table_sql
from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.proxy import CuttableProxy
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually
from workers.runtime.handling import Outcome
from workers.runtime.history import DROP_REASONS, IN_FLIGHT_BATCHES, HistoryWriter

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()
ROUTES = ["TaskFinish.ImageOCR.*"]
UNAVAILABLE = "delivery history unavailable: outcomes are dropped until it is back"
BACK = "delivery history written again"


def _free_port() -> int:
    """A port where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _history(system: RunningSystem) -> HistoryWriter:
    assert system.worker is not None
    assert system.worker.history is not None
    return system.worker.history


def _dropped_metric(system: RunningSystem, *reasons: str) -> float:
    assert system.worker is not None
    assert system.worker.metrics is not None
    registry = system.worker.metrics.registry
    return sum(
        registry.get_sample_value("callback_fanout_history_dropped_total", {"reason": r}) or 0.0
        for r in reasons or DROP_REASONS
    )


async def _post(system: RunningSystem, count: int) -> None:
    for _ in range(count):
        assert (await system.post(OCR)).status == 200


async def test_a_database_where_nothing_listens_costs_history_only_counted_and_said_once(
    start_system: StartSystem, settings: Settings
) -> None:
    dsn = f"postgresql://postgres:not-a-real-pw@127.0.0.1:{_free_port()}/nothing"
    down = settings.model_copy(update={"history_dsn": SecretStr(dsn)})
    steady = Recorder("steady", ROUTES)
    with structlog.testing.capture_logs() as logs:
        system = await start_system([steady], settings_=down)
        await _post(system, 20)
        await eventually(lambda: len(steady.events) == 20, timeout=10)
        history = _history(system)
        await system.stop()
    assert history.written == 0
    assert history.dropped == 20  # every outcome: counted, none silently lost
    assert _dropped_metric(system) == 20
    assert [e["event"] for e in logs].count(UNAVAILABLE) == 1
    assert not any("not-a-real-pw" in str(e) for e in logs)  # the DSN is a secret
    assert [e for e in logs if e["event"] == "handler failed, will retry"] == []


@pytest.fixture
async def pg_proxy(history_dsn: str) -> AsyncIterator[tuple[str, CuttableProxy]]:
    """A DSN of the history database through a proxy the test can cut and restore."""
    target = URL(history_dsn)
    proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield str(target.with_host("127.0.0.1").with_port(proxy.port)), proxy
    await proxy.close()


async def test_a_database_cut_off_mid_run_loses_only_counted_rows_and_comes_back(
    start_system: StartSystem, settings: Settings, pg_proxy: tuple[str, CuttableProxy]
) -> None:
    dsn, proxy = pg_proxy
    proxied = settings.model_copy(update={"history_dsn": SecretStr(dsn)})
    steady = Recorder("steady", ROUTES)
    with structlog.testing.capture_logs() as logs:
        system = await start_system([steady], settings_=proxied)
        history = _history(system)
        await _post(system, 10)
        await eventually(lambda: history.written == 10)
        proxy.cut()
        await _post(system, 10)
        await eventually(lambda: len(steady.events) == 20)  # deliveries go on
        await eventually(lambda: history.dropped == 10, timeout=20)
        proxy.restore()
        await _post(system, 10)
        await eventually(lambda: len(steady.events) == 30)
        await eventually(lambda: history.written == 20, timeout=20)
        await system.stop()
    assert (history.written, history.dropped) == (20, 10)
    assert _dropped_metric(system) == 10
    events = [e["event"] for e in logs]
    assert events.count(UNAVAILABLE) == 1
    assert events.count(BACK) == 1
    assert next(e for e in logs if e["event"] == BACK)["lost"] == 10


async def test_a_writing_process_that_dies_costs_only_the_rows_it_held_counted_then_another_starts(
    start_system: StartSystem, history_settings: Settings, pg: asyncpg.Connection
) -> None:
    steady = Recorder("steady", ROUTES)
    with structlog.testing.capture_logs() as logs:
        system = await start_system([steady], settings_=history_settings)
        history = _history(system)
        await _post(system, 10)
        await eventually(lambda: history.written == 10)
        first = history.pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)  # frozen: the next rows are handed over, never written
        await _post(system, 10)
        await eventually(lambda: len(steady.events) == 20)  # deliveries go on
        await eventually(lambda: history.held == 10, timeout=10)
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: history.dropped == 10, timeout=10)  # what it held: counted
        await _post(system, 10)
        await eventually(lambda: len(steady.events) == 30)
        await eventually(lambda: history.written == 20, timeout=20)
        assert history.pid not in (None, first)  # another process writes now
        await system.stop()
    assert (history.written, history.dropped) == (20, 10)
    assert _dropped_metric(system) == 10
    assert await _count(pg, history_settings.prefix) == 20
    events = [e["event"] for e in logs]
    assert (events.count(UNAVAILABLE), events.count(BACK)) == (1, 1)


async def test_a_stopping_worker_writes_its_last_rows_before_it_ends(
    start_system: StartSystem, history_settings: Settings, pg: asyncpg.Connection
) -> None:
    steady = Recorder("steady", ROUTES)
    system = await start_system([steady], settings_=history_settings)
    history = _history(system)
    history.flush_wait = 30.0  # nothing would be written before the stop
    await _post(system, 7)
    await eventually(lambda: len(steady.events) == 7)
    assert history.written == 0
    pid = history.pid
    await system.stop()
    assert (history.written, history.dropped) == (7, 0)
    assert await _count(pg, history_settings.prefix) == 7
    assert pid is not None
    with pytest.raises(ProcessLookupError):  # the writing process ended with its worker
        os.kill(pid, 0)


async def test_a_database_away_fills_the_workers_bounded_queue_not_the_writing_process(
    start_system: StartSystem, settings: Settings
) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing"
    down = settings.model_copy(update={"history_dsn": SecretStr(dsn)})
    steady = Recorder("steady", ROUTES)
    system = await start_system([steady], settings_=down)
    history = _history(system)
    history.capacity, history.batch_size, history.flush_wait = 10, 5, 0.01
    held: list[int] = []
    for _ in range(60):
        await _post(system, 1)
        held.append(history.held)
    await eventually(lambda: len(steady.events) == 60)
    assert max(held) <= IN_FLIGHT_BATCHES * 5  # the process holds two batches at most
    assert _dropped_metric(system, "full") > 0  # the rest waited in the worker, then overflowed
    await system.stop()
    assert (history.written, history.dropped) == (0, 60)
    assert _dropped_metric(system) == 60


async def test_a_writing_process_that_cannot_start_is_not_started_again_for_every_batch(
    history_dsn: str, prefix: str, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    writer = HistoryWriter(history_dsn, prefix, 3600, flush_wait=0.01, retry_after=0.5)
    writer.command = (
        sys.executable,
        "-c",
        f"open({str(starts)!r}, 'a').write('.'); raise SystemExit(3)",
    )
    event = parse_callback(OCR)[0]
    outcome = Outcome("handled", 1, 1, event, handler_seconds=0.001)
    unused: Any = None  # read only for an event that did not validate
    with structlog.testing.capture_logs() as logs:
        writer.start()
        for _ in range(40):  # 2 s of outcomes, a batch every 50 ms
            writer.record("c", outcome, unused)
            await asyncio.sleep(0.05)
        await writer.close()
    assert (writer.written, writer.dropped) == (0, 40)
    started = len(starts.read_text())
    assert 1 <= started <= 6, started  # once per retry_after at most, not once per batch
    [said] = [e for e in logs if e["event"] == UNAVAILABLE]
    assert "exit code 3" in said["error"]


async def test_the_queue_is_bounded_and_what_overflows_is_counted(
    start_system: StartSystem, settings: Settings, history_dsn: str
) -> None:
    steady = Recorder("steady", ROUTES)
    system = await start_system(
        [steady], settings_=settings.model_copy(update={"history_dsn": SecretStr(history_dsn)})
    )
    history = _history(system)
    history.capacity = 0  # nothing fits
    await _post(system, 5)
    await eventually(lambda: len(steady.events) == 5)
    assert (history.dropped, history.written) == (5, 0)
    assert _dropped_metric(system) == 5


async def _insert(pg: asyncpg.Connection, prefix: str, ages: list[timedelta]) -> None:
    now = datetime.now(UTC)
    rows = [
        (
            now - age,
            prefix,
            "c",
            "handled",
            1,
            f"k{i}",
            f"j{i}",
            f"r{i}",
            "A.B.C",
            None,
            0.001,
            now - age,
            "127.0.0.1",
            None,
            None,
        )
        for i, age in enumerate(ages)
    ]
    await pg.copy_records_to_table(TABLE, records=rows, columns=COLUMNS)


async def _count(pg: asyncpg.Connection, prefix: str) -> int:
    count: int = await pg.fetchval(f"SELECT count(*) FROM {TABLE} WHERE prefix = $1", prefix)
    return count


async def test_retention_removes_the_old_rows_of_its_prefix_only(
    pg: asyncpg.Connection, history_dsn: str, prefix: str
) -> None:
    for statement in create_table_sql():
        await pg.execute(statement)
    other = f"{prefix}-other"
    old, new = timedelta(hours=3), timedelta(minutes=5)
    await _insert(pg, prefix, [old] * 7 + [new] * 4)
    await _insert(pg, other, [old] * 2)
    writer = HistoryWriter(history_dsn, prefix, retention=3600)
    try:
        assert await writer.purge() == 7
    finally:
        await writer.close()
    assert await _count(pg, prefix) == 4
    assert await _count(pg, other) == 2  # another deployment's rows are its own business
    await pg.execute(f"DELETE FROM {TABLE} WHERE prefix = $1", other)


async def test_an_idle_writer_still_removes_old_rows_in_time(
    pg: asyncpg.Connection, history_dsn: str, prefix: str
) -> None:
    for statement in create_table_sql():
        await pg.execute(statement)
    await _insert(pg, prefix, [timedelta(days=8)] * 3 + [timedelta(days=6)])
    writer = HistoryWriter(history_dsn, prefix, retention=7 * 86400, purge_every=0.2)
    writer.start()
    try:

        async def one_left() -> bool:
            return await _count(pg, prefix) == 1

        await eventually(one_left)
    finally:
        await writer.close()
