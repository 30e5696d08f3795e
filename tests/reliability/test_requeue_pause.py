"""A delivery whose publish fails is handed back after a pause, not at once."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually
from workers import settling as requeue
from workers.router.outbox import Outbox, _Group

pytestmark = pytest.mark.broker


async def test_a_body_whose_events_are_refused_comes_back_after_a_pause_and_is_routed(
    start_system: StartSystem, broker: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three refusals in a row cost three deliveries spread over the pauses, and the body is
    routed once the broker takes its events: nothing parked, the delivery limit untouched."""
    monkeypatch.setattr(requeue, "REQUEUE_PAUSE", 0.5)
    real_send = Outbox._send
    refusals: list[float] = []

    async def refusing(self: Outbox, group: _Group) -> None:
        if len(refusals) < 3:
            refusals.append(asyncio.get_running_loop().time())
            group.done.set_exception(RuntimeError("refused on purpose"))
            return
        await real_send(self, group)

    monkeypatch.setattr(Outbox, "_send", refusing)
    everything = Recorder("everything", ["#"])
    system = await start_system([everything])
    assert (await system.post((SEEDS / "ocr.1.xml").read_bytes())).status == 200
    await eventually(lambda: len(everything.events) == 1, timeout=15)
    gaps = [later - earlier for earlier, later in itertools.pairwise(refusals)]
    assert len(refusals) == 3
    assert all(gap >= 0.45 for gap in gaps), gaps
    assert await broker.count(broker.topology.unparsed) == 0
