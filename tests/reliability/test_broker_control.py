"""The broker the restart test would stop is the broker under test, found from the broker
itself. Nothing here stops anything: it only reads (``list_connections``, ``list_queues``)."""

from __future__ import annotations

import asyncio
import secrets

import aio_pika
import pytest

from tests.support.broker_control import BrokerControl, NodeControl, node_of_pid

pytestmark = pytest.mark.broker


@pytest.mark.parametrize(
    ("pid", "node"),
    [
        ("<rabbit@localhost.1796068539.19231.0>", "rabbit@localhost"),
        ("<rabbit@mq-2.example.com.1796068539.19231.0>", "rabbit@mq-2.example.com"),
        ("#PID<12576.19199.0>", None),  # the JSON formatter's form names no node
        ("127.0.0.1:51992 -> 127.0.0.1:5672", None),
    ],
)
def test_the_node_is_read_from_a_connection_pid(pid: str, node: str | None) -> None:
    assert node_of_pid(pid) == node


async def test_the_control_reaches_the_broker_that_holds_the_tests_own_queue(
    broker_control: BrokerControl, amqp_url: str, prefix: str
) -> None:
    name = f"{prefix}.identity-{secrets.token_hex(4)}"
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(name, exclusive=True)  # gone with the connection
        listed = await asyncio.to_thread(broker_control.rabbitmqctl, "list_queues", "name")
        assert name in listed.split(), f"{broker_control.name} does not hold {name}"
    finally:
        await connection.close()
    listed = await asyncio.to_thread(broker_control.rabbitmqctl, "list_queues", "name")
    assert name not in listed.split()


async def test_the_node_of_the_tests_own_connection_is_the_one_controlled(
    broker_control: BrokerControl, amqp_url: str
) -> None:
    opened, never_opened = (f"callback-fanout-tests-{secrets.token_hex(8)}" for _ in range(2))
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": opened})
    try:
        listing = await asyncio.to_thread(
            broker_control.rabbitmqctl, "list_connections", "pid", "client_properties"
        )
    finally:
        await connection.close()
    [line] = [line for line in listing.splitlines() if f'"{opened}"' in line]
    assert f'"{never_opened}"' not in listing
    if isinstance(broker_control, NodeControl):  # the node every command names with -n
        assert node_of_pid(line) == broker_control.node
