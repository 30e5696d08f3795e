"""``--quorum-initial-group-size`` on every queue a role declares, and queues an earlier
version declared without it."""

from __future__ import annotations

import aio_pika
import pytest

from shared.settings import Settings
from shared.topology import GROUP_SIZE, Topology
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()


async def _group_size_refused(broker: BrokerClient, queue: str, offered: int) -> str:
    """The broker's refusal of ``queue`` declared with another group size (its message says
    the one the queue has)."""
    channel = await broker.connection.channel()
    arguments = {**broker.topology.arguments_of(queue), GROUP_SIZE: offered}
    with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed) as refused:
        await channel.declare_queue(queue, durable=True, arguments=arguments)
    return str(refused.value)


async def test_every_queue_the_roles_declare_has_the_configured_group_size(
    start_system: StartSystem, broker: BrokerClient, settings: Settings
) -> None:
    five = settings.model_copy(update={"quorum_initial_group_size": 5})
    await start_system([Recorder("log", ["#"])], settings_=five)
    t = broker.topology
    log = t.consumer("log", five.retry_delays)
    for queue in (t.raw, t.unparsed, t.unrouted, log.main, log.dead, log.delay_queue(0.2)):
        refusal = await _group_size_refused(broker, queue, 3)
        assert f"arg '{GROUP_SIZE}'" in refusal
        assert refusal.endswith("received '3' but current is '5'")


async def test_a_queue_an_earlier_version_declared_without_the_group_size_is_used_as_it_is(
    start_system: StartSystem, broker: BrokerClient, settings: Settings
) -> None:
    t = broker.topology
    log = t.consumer("log", settings.retry_delays)
    channel = await broker.connection.channel()
    for queue in (t.raw, log.main):  # as 0.1 declared them: no group size argument
        old = {k: v for k, v in Topology(t.prefix).arguments_of(queue).items() if k != GROUP_SIZE}
        await channel.declare_queue(queue, durable=True, arguments=old)
    await channel.default_exchange.publish(
        aio_pika.Message(OCR, content_type="application/xml", message_id="left-by-0.1"),
        routing_key=t.raw,
    )  # a body the old ingress left behind

    recorder = Recorder("log", ["#"])
    system = await start_system([recorder])  # declares them again: no refusal
    await eventually(lambda: len(recorder.events) == 1)  # the old body, routed and handled
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: len(recorder.events) == 2)
    assert "current is none" in await _group_size_refused(broker, t.raw, 3)  # still without
