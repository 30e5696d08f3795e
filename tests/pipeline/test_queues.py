"""Every queue the system declares is a durable quorum queue (the control stream a durable
stream), as the broker itself reports it (invariant 5: a RabbitMQ cluster keeps them across
the loss of a node)."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.control import control_stream
from tests.conftest import StartSystem
from tests.support.broker import BrokerClient
from tests.support.broker_control import BrokerControl
from tests.support.system import Recorder

pytestmark = pytest.mark.broker


async def test_every_queue_of_every_role_is_a_durable_quorum_queue(
    start_system: StartSystem, broker: BrokerClient, broker_control: BrokerControl
) -> None:
    audit = Recorder("audit", ["#"], retry_delays=[0.2, 0.4])
    system = await start_system([audit])  # ingress, router and worker: everything declared
    prefix = system.settings.prefix
    listing = await asyncio.to_thread(
        broker_control.rabbitmqctl,
        "list_queues",
        "name",
        "type",
        "durable",
        "--formatter",
        "json",
    )
    mine = {q["name"]: (q["type"], q["durable"]) for q in json.loads(listing)}
    mine = {name: kind for name, kind in mine.items() if name.startswith(f"{prefix}.")}
    t = broker.topology
    consumer = t.consumer("audit", [0.2, 0.4])
    assert sorted(mine) == sorted(
        [
            t.raw,
            t.unparsed,
            t.unrouted,
            consumer.main,
            consumer.dead,
            *(queue for _, queue in consumer.delays),
            control_stream(prefix),
        ]
    )
    # the pauses' record is a stream: replicated and durable as a quorum queue, read by all
    assert mine.pop(control_stream(prefix)) == ("stream", True)
    assert set(mine.values()) == {("quorum", True)}
