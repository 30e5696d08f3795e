"""A broker that stops answering without closing the connection (a hung proxy, a partition).

Two proxies in front of the shared broker stand for two nodes; every role starts on the
first. Freezing it keeps the sockets open and passes nothing: no close ever comes, only the
heartbeats tell. Each role must give its connection up within two heartbeats and move to the
second node; the ingress answers every request within its confirm timeout (spooling what the
silent node did not confirm), and everything it accepted is delivered.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from pydantic import SecretStr
from yarl import URL

from shared.amqp import connect
from shared.failover import FailoverConnection
from shared.settings import Settings
from tests.cluster.load import Load
from tests.conftest import SEEDS
from tests.support.broker import BrokerClient
from tests.support.proxy import CuttableProxy
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

OCR = (SEEDS / "ocr.1.xml").read_bytes()
HEARTBEAT = 2
#: Event loop lag on a loaded two-core machine, on top of what the code promises.
MARGIN = 1.5


@pytest.fixture
async def two_nodes(amqp_url: str) -> AsyncIterator[list[CuttableProxy]]:
    target = URL(amqp_url)
    proxies = [CuttableProxy(target.host or "127.0.0.1", target.port or 5672) for _ in range(2)]
    for proxy in proxies:
        await proxy.start()
    yield proxies
    for proxy in proxies:
        await proxy.close()


def _in_order(urls: Sequence[str], rng: object = None) -> list[str]:
    return list(urls)


def _connection_of(system: RunningSystem, role: str) -> FailoverConnection | None:
    holder: object = {"router": system.router, "worker": system.worker}.get(role)
    if role == "ingress":
        assert system.ingress is not None
        holder = system.ingress.publisher.inner  # type: ignore[attr-defined]
    connection = getattr(holder, "_connection", None)  # private: which node it is on
    assert isinstance(connection, FailoverConnection | None)
    return connection


async def test_a_frozen_node_is_left_within_two_heartbeats_and_nothing_accepted_is_lost(
    settings: Settings,
    broker: BrokerClient,
    two_nodes: list[CuttableProxy],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shared.amqp.shuffled", _in_order)  # every role starts on the first
    first, second = two_nodes
    urls = [str(URL(broker.url).with_host("127.0.0.1").with_port(p.port)) for p in two_nodes]
    settings = settings.model_copy(
        update={
            "amqp_url": [SecretStr(u) for u in urls],
            "heartbeat": HEARTBEAT,
            "confirm_timeout": 2.0,
            "spool_dir": tmp_path,
        }
    )
    everything = Recorder("everything", ["#"])
    broker.track([everything.name], settings.retry_delays)
    system = await RunningSystem.start(settings, [everything.loaded()])
    roles = ("ingress", "router", "worker")
    try:
        for role in roles:
            await eventually(functools.partial(_on, system, role, first))
        load = Load(system.url, [OCR], senders=8, pause=0.02)
        await load.start(system.http)
        await load_until(load, 50)

        first.freeze()
        frozen_at = time.monotonic()
        left = await asyncio.gather(*(_left(system, role, first, frozen_at) for role in roles))
        for role in roles:  # each on the second node, consuming or taking callbacks again
            await eventually(functools.partial(_on, system, role, second), timeout=20)
        await load_until(load, len(load.accepted) + 50, timeout=30)
        await load.stop()
        accepted = set(load.accepted)

        def delivered() -> set[str]:
            return {e.envelope.request_id for e in everything.events if e.envelope}

        await eventually(lambda: accepted <= delivered(), timeout=60, interval=0.2)
    finally:
        first.thaw()
        await system.stop()
    took = ", ".join(f"{r} {s:.2f}s" for r, s in zip(roles, left, strict=True))
    print(
        f"\nleft the frozen node after {took}; slowest answer {load.slowest():.2f}s; "
        f"accepted {len(accepted)}"
    )
    for role, seconds in zip(roles, left, strict=True):
        assert seconds < 2 * HEARTBEAT + MARGIN, f"{role} noticed only after {seconds:.2f}s"
    assert load.count(0) == 0  # every request answered, none hung
    assert {a.status for a in load.answers} <= {200, 503}
    assert load.slowest() < settings.confirm_timeout + MARGIN
    assert accepted <= delivered()


async def load_until(load: Load, n: int, timeout: float = 20) -> None:  # noqa: ASYNC109
    await eventually(lambda: len(load.accepted) >= n, timeout=timeout, interval=0.05)


async def _left(system: RunningSystem, role: str, node: CuttableProxy, since: float) -> float:
    """Seconds from ``since`` until ``role`` gave up its connection through ``node``."""
    connection = _connection_of(system, role)
    assert connection is not None

    def gone() -> bool:
        return not connection.connected.is_set() or connection.url.port != node.port

    await eventually(gone, timeout=30, interval=0.02)
    return time.monotonic() - since


def _on(system: RunningSystem, role: str, node: CuttableProxy) -> bool:
    connection = _connection_of(system, role)
    if connection is None:
        return False
    service = {"ingress": system.ingress, "router": system.router, "worker": system.worker}[role]
    assert service is not None
    return connection.connected.is_set() and connection.url.port == node.port and service.ready


async def test_a_node_that_accepts_and_never_answers_is_skipped_after_two_heartbeats(
    settings: Settings,
    broker: BrokerClient,
    two_nodes: list[CuttableProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shared.amqp.shuffled", _in_order)  # the silent one first
    silent, live = two_nodes
    silent.freeze()  # takes the TCP connection, never says a word of AMQP
    urls = [str(URL(broker.url).with_host("127.0.0.1").with_port(p.port)) for p in two_nodes]
    chosen = settings.model_copy(
        update={"amqp_url": [SecretStr(u) for u in urls], "heartbeat": HEARTBEAT}
    )
    started = time.monotonic()
    connection = await asyncio.wait_for(connect(chosen, role="test"), 30)
    took = time.monotonic() - started
    try:
        assert connection.url.port == live.port
        assert took < 2 * HEARTBEAT + MARGIN, f"connected only after {took:.2f}s"
    finally:
        await connection.close()
