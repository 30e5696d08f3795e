"""Faults injected against the real broker: connections cut, workers killed or stopped.

Workers run as child processes here (``python -m callback_fanout worker``), as in
production, so SIGTERM and SIGKILL mean what they mean there.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from shared.settings import Settings
from shared.topology import DELIVERY_LIMIT
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.load import Senders
from tests.support.parked_command import parked
from tests.support.processes import RoleProcess, free_port
from tests.support.proxy import CuttableProxy
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.fault]

OCR = (SEEDS / "ocr.1.xml").read_bytes()
GARBAGE = b"<Response><JobsDetail>"  # parks in unparsed
FAULT_CONSUMERS = "tests.support.fault_consumers"
CRASHER = "tests.support.crashing_consumer"
POSTERS = 32  # senders posting at once in the ingress SIGTERM test


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
    assert system.ingress is not None
    publisher = system.ingress.publisher
    senders = Senders(system.post, lambda n: GARBAGE if n % 10 == 9 else OCR, count=32)
    refused_while_away = 0
    senders.start()
    try:
        for _ in range(2):
            await senders.until_accepted(len(senders.accepted) + 40)
            proxy.cut()  # under load: dozens of callbacks are in flight
            # Broker away: callbacks posted now are refused with 503, never a false 200.
            answers = await asyncio.gather(*(system.post(OCR) for _ in range(5)))
            refused_while_away += sum(
                a.status == 503 and bool(a.headers.get("Retry-After")) for a in answers
            )
            proxy.restore()
            await eventually(lambda: publisher.ready)
        await senders.until_accepted(len(senders.accepted) + 20)
    finally:
        await senders.stop()
    accepted = set(senders.accepted)

    t = broker.topology
    consumer_queue = t.consumer("everything", settings.retry_delays).main
    await eventually(lambda: _has_consumers(broker, t.raw, 1), timeout=30)
    await eventually(lambda: _has_consumers(broker, consumer_queue, 1), timeout=30)
    parked: list[str] = []

    async def all_accounted() -> bool:
        parked.extend(str(m.message_id) for m in await broker.take_all(t.unparsed))
        delivered = {e.envelope.request_id for e in everything.events if e.envelope}
        return accepted <= delivered | set(parked)

    await eventually(all_accounted, timeout=60, interval=0.2)
    delivered = {e.envelope.request_id for e in everything.events if e.envelope}
    arrived = delivered | set(parked)
    # At-least-once: an ack lost in an outage means a second copy, counted, never a loss.
    duplicates = len(everything.events) - len(delivered) + len(parked) - len(set(parked))
    print(
        f"\naccounting: accepted={len(accepted)} delivered={len(delivered & accepted)} "
        f"parked={len(set(parked) & accepted)} duplicates={duplicates} "
        f"refused={senders.refused + refused_while_away} "
        f"arrived though refused={len(arrived - accepted)} lost={len(accepted - arrived)} "
        f"most in flight={senders.max_in_flight}"
    )
    assert senders.unexpected == []
    assert refused_while_away == 10  # 5 posted during each of the two outages
    assert senders.max_in_flight == 32
    assert len(accepted) == len(senders.accepted)  # request ids are unique
    assert len(accepted) == len(delivered & accepted) + len(set(parked) & accepted)
    assert accepted <= arrived
    # A refused callback may still arrive (the broker took it, its confirm was cut off):
    # never more of them than were refused.
    assert len(arrived - accepted) <= senders.refused


async def _has_consumers(broker: BrokerClient, queue: str, n: int) -> bool:
    """Exactly ``n`` consumers: a role that came back twice would show two."""
    return await consumers_on(broker, queue) == n


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

            posters = [asyncio.create_task(poster()) for _ in range(POSTERS)]
            await eventually(lambda: len(accepted) >= 50, timeout=30)
            ingress.signal(signal.SIGTERM)
            signalled.set()
            await asyncio.wait_for(asyncio.gather(*posters), timeout=30)
        assert await ingress.wait(timeout=20) == 0
    finally:
        await ingress.close()
    on_queue = {m.message_id for m in await broker.take_raw()}
    print(f"\ningress SIGTERM: accepted={len(accepted)}, on queue={len(on_queue)}")
    assert refused_after_signal == POSTERS  # every poster was refused once the ingress stopped
    assert len(set(accepted)) == len(accepted)
    assert set(accepted) == on_queue  # every 200 was durable, in flight ones included


@pytest.mark.timeout(300)  # 21 worker processes start one after another
async def test_a_callback_that_keeps_killing_its_worker_is_parked_by_the_delivery_limit(
    start_system: StartSystem,
    settings: Settings,
    broker: BrokerClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each delivery SIGKILLs the worker holding it; worker replicas keep being restarted (as a
    supervisor does) until the broker parks the event in the dead queue by itself."""
    system = await start_system(worker=False)
    broker.track(["crasher"], settings.retry_delays)
    queues = broker.topology.consumer("crasher", settings.retry_delays)
    started = tmp_path / "started"
    replicas: list[RoleProcess] = []

    async def replica() -> None:
        replicas.append(
            await RoleProcess.start(
                "worker", settings, "--consumer", CRASHER, env={"FAULT_STARTED": str(started)}
            )
        )

    try:
        await replica()
        await eventually(lambda: _has_consumers(broker, queues.main, 1), timeout=30)
        response = await system.post(OCR)
        assert response.status == 200
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 240
        while not await broker.count_is(queues.dead, 1):
            assert loop.time() < deadline, f"not parked after {len(lines(started))} deliveries"
            assert len(replicas) <= 2 * DELIVERY_LIMIT, "more workers died than deliveries"
            if sum(r.process.returncode is None for r in replicas) < 3:
                await replica()  # three replicas alive at most, as a supervisor keeps them
            else:
                await asyncio.sleep(0.05)
    finally:
        for process in replicas:
            await process.close()

    # Every delivery killed its worker, and the broker stopped after its limit: the first
    # delivery and 20 more (docs/architecture.md: parked after 20 deliveries without an ack).
    assert lines(started) == [response.headers["X-Request-Id"]] * 21
    assert await broker.count(queues.main) == 0
    out = await parked(settings, capsys, "show", "crasher")
    [shown] = [json.loads(line) for line in out.splitlines()]
    assert shown["reason"] == (
        "delivery limit: delivered again and again without an ack (crash or kills)"
    )
    assert shown["headers"]["x-first-death-reason"] == "delivery_limit"
    assert shown["headers"]["x-first-death-queue"] == queues.main
    assert shown["job_id"] == "a3c193f288b2c11eeb60f39de2f86f409"
