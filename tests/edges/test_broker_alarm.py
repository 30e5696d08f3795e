"""A real memory alarm on a RabbitMQ node of the test's own (never the shared one; marked
``cluster``, as the tests that start local nodes of their own with ``tests.support.cluster``).

The node (``tests.support.cluster``, one node on free ports) gets a memory high watermark so
low that the alarm goes off at once (``rabbitmqctl set_vm_memory_high_watermark``, always
restored in a finally). RabbitMQ then blocks every connection that publishes and says so
(``connection.blocked``): the ingress must not wait for its confirm timeout, but spool at
once (or answer 503 at once without a spool), say so on ``/readyz``, in ``status`` and in
``callback_fanout_broker_blocked``, and deliver everything it accepted once the alarm clears.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from callback_fanout.readiness import RoleReadiness, check_readiness
from callback_fanout.status import SystemStatus
from shared.settings import Settings
from tests.cluster.load import Load
from tests.conftest import SEEDS
from tests.support.cluster import LocalCluster
from tests.support.metrics import scrape
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.cluster, pytest.mark.timeout(300)]

OCR = (SEEDS / "ocr.1.xml").read_bytes()
#: The confirm timeout the ingress would wait before this work: far above "at once".
CONFIRM_TIMEOUT = 5.0
AT_ONCE = 1.0
#: Seconds the alarm is held under load.
HELD = CONFIRM_TIMEOUT + 2.0


@pytest.fixture(scope="module")
def node() -> Iterator[LocalCluster]:
    """One RabbitMQ node of this module's own, on free ports; deleted after."""
    with LocalCluster.started(size=1) as running:
        yield running


@pytest.fixture
def node_settings(settings: Settings, node: LocalCluster) -> Settings:
    return settings.model_copy(
        update={"amqp_url": [SecretStr(node.urls[0])], "confirm_timeout": CONFIRM_TIMEOUT}
    )


class MemoryAlarm:
    """Sets the node's memory alarm off and clears it; the test's finally restores it."""

    def __init__(self, node: LocalCluster) -> None:
        self.node = node
        self.on = False

    async def raise_(self) -> None:
        self.on = True
        await asyncio.to_thread(self._watermark, "0.0000001")

    async def clear(self) -> None:
        await asyncio.to_thread(self._watermark, "0.4")
        self.on = False

    def _watermark(self, value: str) -> None:
        self.node.ctl(self.node.nodes[0], "set_vm_memory_high_watermark", value)


@pytest.fixture
async def alarm(node: LocalCluster) -> AsyncIterator[MemoryAlarm]:
    alarm = MemoryAlarm(node)
    try:
        yield alarm
    finally:
        await alarm.clear()  # always: the next test needs a node that takes messages


async def test_under_a_memory_alarm_the_ingress_spools_at_once_and_everything_is_delivered(
    node_settings: Settings, alarm: MemoryAlarm, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        load, accepted, held_for = await _alarm_under_load(node_settings, alarm, tmp_path)
    print(
        f"alarm held {held_for:.1f}s; accepted {len(accepted)}, slowest answer "
        f"{load.slowest():.3f}s, refused {load.count(503)}"
    )
    assert load.count(0) == 0
    assert {a.status for a in load.answers} == {200}  # nothing refused: the spool took it
    assert load.slowest() < AT_ONCE  # not the confirm timeout (5 s)
    assert not [e for e in logs if e["event"] == "publish failed, requeued"]  # the router held


async def _alarm_under_load(
    node_settings: Settings, alarm: MemoryAlarm, tmp_path: Path
) -> tuple[Load, set[str], float]:
    """``run``'s roles under a steady stream while the node's memory alarm is held; the
    load, what was accepted (all delivered, checked here), and how long the alarm held."""
    settings = node_settings.model_copy(update={"spool_dir": tmp_path / "spool"})
    everything = Recorder("everything", ["#"])
    system = await RunningSystem.start(settings, [everything.loaded()], admin=True)
    load = Load(system.url, [OCR], senders=16, pause=0.05)
    try:
        assert system.ingress is not None
        ingress = system.ingress
        await eventually(lambda: ingress.broker_connected, timeout=20)
        await load.start(system.http)
        await eventually(lambda: len(load.accepted) >= 100, timeout=20)

        await alarm.raise_()
        blocked_at = time.monotonic()
        try:
            await eventually(lambda: ingress.alarm.blocked, timeout=10, interval=0.02)
            print(f"\ningress blocked {time.monotonic() - blocked_at:.2f}s after the alarm")
            during = len(load.accepted)
            # Longer than the confirm timeout, and a steady stream all along.
            await asyncio.sleep(max(0.0, blocked_at + HELD - time.monotonic()))
            assert len(load.accepted) >= during + 200
            spooled = ingress.publisher.spool.pending  # type: ignore[attr-defined]
            assert spooled > 0  # accepted while blocked: spooled, not confirmed
            ready = await check_readiness([system.admin_url("ingress", "/readyz")])
            assert ready[0].ready  # the spool takes callbacks
            assert ready[0].blocked == {"ingress": "low on memory"}
            status = _status_of(ready)
            assert "broker blocks the ingress connection (low on memory)" in status.problems[0]
            assert status.exit_status == 1
            metrics = await scrape(system.http, system.admin_url("ingress"))
            assert metrics.value("callback_fanout_broker_blocked", role="ingress") == 1
            held_for = time.monotonic() - blocked_at
        finally:
            await alarm.clear()
        await eventually(lambda: not ingress.alarm.blocked, timeout=10)
        after = len(load.accepted)
        await eventually(lambda: len(load.accepted) >= after + 100, timeout=20)
        await load.stop()

        accepted = set(load.accepted)

        def delivered() -> set[str]:
            return {e.envelope.request_id for e in everything.events if e.envelope}

        await eventually(lambda: accepted <= delivered(), timeout=60, interval=0.2)
        metrics = await scrape(system.http, system.admin_url("ingress"))
        assert metrics.value("callback_fanout_broker_blocked", role="ingress") == 0
        assert (await check_readiness([system.admin_url("ingress", "/readyz")]))[0].blocked == {}
    finally:
        await load.stop()
        await system.stop()
    return load, accepted, held_for


async def test_under_a_memory_alarm_an_ingress_without_a_spool_answers_503_at_once(
    node_settings: Settings, alarm: MemoryAlarm
) -> None:
    system = await RunningSystem.start(node_settings, [], router=False, worker=False, admin=True)
    try:
        assert system.ingress is not None
        ingress = system.ingress
        assert (await system.post(OCR)).status == 200
        await alarm.raise_()
        try:
            answers = []
            for _ in range(5):  # the first one meets the alarm, the others know it
                started = time.monotonic()
                response = await system.post(OCR)
                answers.append((response.status, time.monotonic() - started))
                assert response.headers.get("Retry-After")
            print(f"\nwhile blocked: {answers}")
            assert [status for status, _ in answers] == [503] * 5
            assert max(took for _, took in answers) < AT_ONCE
            ready = await check_readiness([system.admin_url("ingress", "/readyz")])
            assert not ready[0].ready  # nothing can make a body durable
            assert ready[0].blocked == {"ingress": "low on memory"}
        finally:
            await alarm.clear()
        await eventually(lambda: not ingress.alarm.blocked, timeout=10)
        assert (await system.post(OCR)).status == 200
    finally:
        await system.stop()


def _status_of(roles: Sequence[RoleReadiness]) -> SystemStatus:
    return SystemStatus(
        prefix="-",
        checked_at=datetime.now(UTC),
        window=0.0,
        management=None,
        rows=(),
        roles=tuple(roles),
    )
