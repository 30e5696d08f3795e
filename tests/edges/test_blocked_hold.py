"""While the broker blocks a router's or a worker's connection, it takes no new delivery on.

The block is told to the role's alarm here, as its connection's ``connection.blocked`` would
(``shared.alarms``; a real memory alarm is in ``test_broker_alarm.py``, on a node of its
own): the shared broker goes on taking everything, so a role that did not hold would route
or handle at once. Once the alarm clears, every held delivery is handled once, and nothing
was handed back.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()
HELD = 1.5  # seconds the test watches that nothing moves


async def _post(system: RunningSystem, n: int) -> set[str]:
    ids = set()
    for _ in range(n):
        response = await system.post(OCR)
        assert response.status == 200
        ids.add(response.headers["X-Request-Id"])
    return ids


def _delivered(recorder: Recorder) -> list[str]:
    return [e.envelope.request_id for e in recorder.events if e.envelope]


async def test_a_blocked_router_holds_its_deliveries_until_the_alarm_clears(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    everything = Recorder("everything", ["#"])
    system = await start_system([everything])
    assert system.router is not None
    with capture_logs() as logs:
        system.router.alarm.block("low on memory")
        try:
            posted = await _post(system, 5)
            await asyncio.sleep(HELD)
            assert everything.events == []  # nothing routed while blocked
            assert system.router.ready  # still consuming: held, not cancelled
        finally:
            system.router.alarm.unblock()
        await eventually(lambda: set(_delivered(everything)) == posted)
    assert sorted(_delivered(everything)) == sorted(posted)  # once each
    assert not [e for e in logs if e["event"] == "publish failed, requeued"]
    assert await broker.count(broker.topology.raw) == 0


async def test_a_blocked_worker_holds_its_deliveries_until_the_alarm_clears(
    start_system: StartSystem,
) -> None:
    everything = Recorder("everything", ["#"])
    system = await start_system([everything])
    assert system.worker is not None
    with capture_logs() as logs:
        system.worker.alarm.block("low on disk")
        try:
            posted = await _post(system, 5)
            await asyncio.sleep(HELD)
            assert everything.calls == []  # no handler ran while blocked
        finally:
            system.worker.alarm.unblock()
        await eventually(lambda: set(_delivered(everything)) == posted)
    assert len(everything.calls) == len(posted)  # each handled once: no attempt counted
    assert not [e for e in logs if e["event"] == "could not settle message, requeued"]


@pytest.mark.parametrize("role", ["router", "worker"])
async def test_a_role_stopped_while_holding_hands_its_deliveries_back_at_once(
    start_system: StartSystem, settings: Settings, role: str
) -> None:
    first = Recorder("everything", ["#"])
    system = await start_system([first])
    held = system.router if role == "router" else system.worker
    assert held is not None
    held.alarm.block("low on memory")
    posted = await _post(system, 5)
    await asyncio.sleep(0.5)  # taken and held
    started = time.monotonic()
    await held.stop()
    took = time.monotonic() - started
    assert took < settings.shutdown_grace / 2, f"stopped after {took:.2f}s"
    assert first.calls == []

    second = Recorder("everything", ["#"])  # the same consumer, in another process
    await start_system([second], ingress=False, router=role == "router", worker=True)
    await eventually(lambda: set(_delivered(first) + _delivered(second)) == posted)
