"""Several broker URLs: a connection starts on one that answers and moves on when it is lost.

Two proxies in front of the shared broker stand for two nodes; cutting one is losing a node.
(The real thing, kill -9 of RabbitMQ nodes of a cluster under load: tests/cluster/.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr
from structlog.testing import capture_logs
from yarl import URL

from shared.amqp import connect, connect_once
from shared.errors import BrokerUnavailable
from shared.failover import FailoverConnection, shuffled
from shared.settings import Settings
from tests.support.broker import BrokerClient
from tests.support.processes import free_port
from tests.support.proxy import CuttableProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


@pytest.fixture
async def two_nodes(amqp_url: str) -> AsyncIterator[list[CuttableProxy]]:
    target = URL(amqp_url)
    proxies = [CuttableProxy(target.host or "127.0.0.1", target.port or 5672) for _ in range(2)]
    for proxy in proxies:
        await proxy.start()
    yield proxies
    for proxy in proxies:
        await proxy.close()


def through(amqp_url: str, port: int) -> SecretStr:
    return SecretStr(str(URL(amqp_url).with_host("127.0.0.1").with_port(port)))


async def test_a_lost_node_moves_the_connection_to_the_next_url_with_its_consumer_and_qos(
    settings: Settings, amqp_url: str, broker: BrokerClient, two_nodes: list[CuttableProxy]
) -> None:
    urls = [through(amqp_url, p.port) for p in two_nodes]
    connection = await connect(settings.model_copy(update={"amqp_url": urls}), role="test")
    try:
        assert isinstance(connection, FailoverConnection)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2)
        queue = await broker.topology.declare_queue(channel, broker.topology.raw)
        got: list[bytes] = []

        async def on_message(message: AbstractIncomingMessage) -> None:
            got.append(message.body)
            await message.ack()

        await queue.consume(on_message)
        first = next(p for p in two_nodes if p.port == connection.url.port)
        other = next(p for p in two_nodes if p is not first)

        first.cut()  # the node is gone, and stays gone
        publish = broker.channel.default_exchange.publish
        await publish(aio_pika.Message(b"after"), routing_key=broker.topology.raw)
        await eventually(lambda: b"after" in got, timeout=10)
        assert connection.url.port == other.port
        declared = await broker.topology.declare_queue(broker.channel, broker.topology.raw)
        assert declared.declaration_result.consumer_count == 1  # restored once, not twice
    finally:
        await connection.close()


async def test_a_dead_url_at_start_is_skipped_quietly_for_one_that_answers(
    settings: Settings, amqp_url: str
) -> None:
    dead = through(amqp_url, free_port())
    live = SecretStr(amqp_url)
    with capture_logs() as logs:
        for _ in range(4):  # both orders come up
            chosen = settings.model_copy(update={"amqp_url": [dead, live]})
            connection = await connect(chosen, role="test")
            assert str(connection) == str(URL(amqp_url).with_password("******"))
            await connection.close()
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_each_process_takes_the_urls_in_an_order_of_its_own() -> None:
    urls = ["amqp://a/", "amqp://b/", "amqp://c/"]
    orders = {tuple(shuffled(urls)) for _ in range(200)}
    assert len(orders) == 6  # every order happens: replicas spread over the nodes
    assert all(sorted(order) == urls for order in orders)


async def test_a_command_that_answers_now_tries_each_url_once(
    settings: Settings, amqp_url: str
) -> None:
    dead = through(amqp_url, free_port())
    chosen = settings.model_copy(update={"amqp_url": [dead, SecretStr(amqp_url)]})
    for _ in range(4):  # whichever order comes up
        connection = await connect_once(chosen, role="test", seconds=2)
        await connection.close()
    other = SecretStr("amqp://u:n0t-shown@127.0.0.1:1/")
    nowhere = settings.model_copy(update={"amqp_url": [dead, other]})
    with pytest.raises(BrokerUnavailable) as refused:
        await connect_once(nowhere, role="test", seconds=2)
    assert "amqp://u:***@127.0.0.1:1/" in str(refused.value)
    assert "n0t-shown" not in str(refused.value)
