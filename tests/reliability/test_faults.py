"""Faults injected against the real broker: connections cut, workers killed or stopped.

Workers run as child processes here (``python -m callback_fanout worker``), as in
production, so SIGTERM and SIGKILL mean what they mean there.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.processes import RoleProcess, free_port
from tests.support.proxy import CuttableProxy
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.fault]

OCR = (SEEDS / "ocr.1.xml").read_bytes()
FAULT_CONSUMERS = "tests.support.fault_consumers"


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def consumers_on(broker: BrokerClient, queue: str) -> int:
    declared = await broker.topology.declare_queue(broker.channel, queue)
    return declared.declaration_result.consumer_count or 0


@dataclass
class RecordingWorkers:
    """Worker processes running the recording consumer of tests.support.fault_consumers."""

    settings: Settings
    broker: BrokerClient
    tmp_path: Path
    processes: list[RoleProcess] = field(default_factory=list)

    @property
    def out(self) -> list[str]:
        """Request ids whose handler finished."""
        return lines(self.tmp_path / "out")

    @property
    def started(self) -> list[str]:
        """Request ids whose handler started."""
        return lines(self.tmp_path / "started")

    @property
    def queue(self) -> str:
        return self.broker.topology.consumer("slow-recorder", self.settings.retry_delays).main

    async def start(self, handler_seconds: float) -> RoleProcess:
        """A worker whose handlers take ``handler_seconds``, once it consumes."""
        env = {
            "FAULT_OUT": str(self.tmp_path / "out"),
            "FAULT_STARTED": str(self.tmp_path / "started"),
            "FAULT_SLEEP": str(handler_seconds),
        }
        self.broker.track(["slow-recorder"], self.settings.retry_delays)
        process = await RoleProcess.start(
            "worker", self.settings, "--consumer", FAULT_CONSUMERS, env=env
        )
        self.processes.append(process)
        await eventually(lambda: _has_consumers(self.broker, self.queue, 1), timeout=30)
        return process


@pytest.fixture
async def workers(
    settings: Settings, broker: BrokerClient, tmp_path: Path
) -> AsyncIterator[RecordingWorkers]:
    pool = RecordingWorkers(settings, broker, tmp_path)
    yield pool
    for process in pool.processes:
        await process.close()


async def test_a_sigterm_lets_in_flight_handlers_finish_hands_back_the_rest_and_exits_0(
    start_system: StartSystem, broker: BrokerClient, workers: RecordingWorkers
) -> None:
    system = await start_system(worker=False)
    worker = await workers.start(handler_seconds=1.5)

    accepted = [(await system.post(OCR)).headers["X-Request-Id"] for _ in range(10)]
    await eventually(lambda: len(workers.started) == 4)  # concurrency 4: four in flight
    worker.signal(signal.SIGTERM)
    assert await worker.wait(timeout=20) == 0

    assert sorted(workers.out) == sorted(workers.started)  # every started handler finished
    assert len(workers.out) == 4
    await eventually(lambda: broker.count_is(workers.queue, 6))  # the rest is handed back

    await workers.start(handler_seconds=0)
    await eventually(lambda: len(workers.out) == 10, timeout=30)
    assert sorted(workers.out) == sorted(accepted)  # each exactly once


async def test_a_worker_killed_mid_handling_has_its_messages_redelivered_to_another(
    start_system: StartSystem, workers: RecordingWorkers
) -> None:
    system = await start_system(worker=False)
    doomed = await workers.start(handler_seconds=30)

    accepted = [(await system.post(OCR)).headers["X-Request-Id"] for _ in range(3)]
    await eventually(lambda: len(workers.started) == 3)
    doomed.signal(signal.SIGKILL)
    await doomed.wait(timeout=10)
    assert workers.out == []

    await workers.start(handler_seconds=0)
    await eventually(lambda: len(workers.out) == 3, timeout=30)
    assert sorted(workers.out) == sorted(accepted)


async def test_connections_cut_under_load_every_role_reconnects_and_nothing_accepted_is_lost(
    start_system: StartSystem,
    broker: BrokerClient,
    broker_proxy_settings: tuple[Settings, CuttableProxy],
) -> None:
    """The accounting test: accepted = delivered + parked, exactly, across two outages."""
    settings, proxy = broker_proxy_settings
    everything = Recorder("everything", ["TaskFinish.#"])
    system = await start_system([everything], settings_=settings)
    garbage = b"<Response><JobsDetail>"  # parks in unparsed
    accepted: list[str] = []
    refused = 0

    async def post_some(n: int) -> None:
        nonlocal refused
        for i in range(n):
            response = await system.post(garbage if i % 10 == 9 else OCR)
            if response.status == 200:
                accepted.append(response.headers["X-Request-Id"])
            else:
                assert response.status == 503
                refused += 1

    for _ in range(2):
        await post_some(40)
        proxy.cut()
        await post_some(5)  # broker away: refused with 503, never a false 200
        proxy.restore()
        await eventually(lambda: system.ingress is not None and system.ingress.publisher.ready)

    await post_some(20)
    t = broker.topology
    consumer_queue = t.consumer("everything", settings.retry_delays).main
    await eventually(lambda: _has_consumers(broker, t.raw, 1), timeout=30)
    await eventually(lambda: _has_consumers(broker, consumer_queue, 1), timeout=30)

    async def all_accounted() -> bool:
        delivered = {e.envelope.request_id for e in everything.events if e.envelope}
        return len(delivered) + await broker.count(t.unparsed) >= len(accepted)

    await eventually(all_accounted, timeout=60)
    delivered = {e.envelope.request_id for e in everything.events if e.envelope}
    parked_messages = [m.message_id for m in await broker.take_all(t.unparsed)]
    parked = set(parked_messages)
    # At-least-once: an ack lost in an outage means a second copy, counted, never a loss.
    duplicates = len(everything.events) - len(delivered) + len(parked_messages) - len(parked)
    print(
        f"\naccounting: accepted={len(accepted)} delivered={len(delivered)} "
        f"parked={len(parked)} duplicates={duplicates} refused={refused} "
        f"lost={len(set(accepted) - delivered - parked)}"
    )
    assert refused >= 2
    assert set(accepted) == delivered | parked
    assert len(accepted) == len(delivered) + len(parked)


async def _has_consumers(broker: BrokerClient, queue: str, n: int) -> bool:
    return await consumers_on(broker, queue) >= n


async def test_a_sigterm_stops_the_ingress_accepting_finishes_in_flight_publishes_and_exits_0(
    settings: Settings, broker: BrokerClient
) -> None:
    port = free_port()
    ingress = await RoleProcess.start("ingress", settings, "--port", str(port))
    url = f"http://127.0.0.1:{port}/callbacks"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout=30, interval=0.1)

            accepted: list[str] = []
            refused_after_signal = 0
            signalled = asyncio.Event()

            async def poster() -> None:
                nonlocal refused_after_signal
                while True:
                    try:
                        async with http.post(url, data=OCR) as response:
                            await response.read()
                            if response.status == 200:
                                accepted.append(response.headers["X-Request-Id"])
                                continue
                            assert response.status == 503
                    except aiohttp.ClientError:
                        pass  # refused once the listener closed: the sender retries
                    if signalled.is_set():
                        refused_after_signal += 1
                        return
                    await asyncio.sleep(0.01)

            posters = [asyncio.create_task(poster()) for _ in range(16)]
            await eventually(lambda: len(accepted) >= 50, timeout=30)
            ingress.signal(signal.SIGTERM)
            signalled.set()
            await asyncio.wait_for(asyncio.gather(*posters), timeout=30)
        assert await ingress.wait(timeout=20) == 0
    finally:
        await ingress.close()
    on_queue = {m.message_id for m in await broker.take_raw()}
    print(f"\ningress SIGTERM: accepted={len(accepted)}, on queue={len(on_queue)}")
    assert refused_after_signal == 16  # every poster was refused once the ingress stopped
    assert len(set(accepted)) == len(accepted)
    assert set(accepted) == on_queue  # every 200 was durable, in flight ones included
