"""The ingress with its local spool against the real broker: callbacks accepted while the
broker is away, kept through an ingress crash, delivered once each, in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ingress.app import create_app
from ingress.publisher import AmqpPublisher
from ingress.publishing import SpoolingPublisher
from ingress.spool import Spool
from shared.settings import Settings
from tests.support.broker import BrokerClient
from tests.support.proxy import CuttableProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

#: aio_pika's ``Connection.__del__`` calls ``asyncio.ensure_future(self.close())``; when the
#: garbage collector frees a connection object in a thread with no event loop (the spool
#: appends from worker threads), that coroutine is created and dropped. The objects come from
#: the failed attempts of ``shared.amqp.connect`` while the broker is away.
_GC_OF_FAILED_CONNECTS_IN_A_THREAD = pytest.mark.filterwarnings(
    "ignore:coroutine 'RobustConnection.close' was never awaited:RuntimeWarning"
)

ROOT = Path(__file__).resolve().parents[2]


class InProcessIngress:
    """The ingress app over a spooling publisher, served from the test's event loop."""

    def __init__(self, settings: Settings, spool_dir: Path, max_bytes: int = 1 << 30) -> None:
        self.publisher = SpoolingPublisher(
            AmqpPublisher(settings),
            Spool(spool_dir, max_bytes),
            retry_interval=0.1,
            scan_interval=0.5,
        )
        self.runner = web.AppRunner(create_app(settings, self.publisher), access_log=None)
        self._stop = asyncio.Event()
        self._connecting: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self._connecting = asyncio.create_task(self.publisher.start(self._stop))
        await eventually(lambda: self.publisher.ready)

    async def stop(self) -> None:
        """Stop at once: nothing is drained, what is spooled stays on disk."""
        self._stop.set()
        await self.runner.cleanup()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        await self.publisher.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _post(http: aiohttp.ClientSession, base: str, body: bytes) -> tuple[int, str]:
    async with http.post(
        f"{base}/callbacks", data=body, headers={"Content-Type": "application/xml"}
    ) as response:
        await response.read()
        return response.status, response.headers.get("X-Request-Id", "")


def _body(n: int) -> bytes:
    return f"<Response><JobsDetail><JobId>j{n}</JobId><N>{n}</N>".encode() + (
        bytes(range(256)) * (n % 4) + b"</JobsDetail></Response>"
    )


async def _count_is(broker: BrokerClient, n: int) -> bool:
    return await broker.count(broker.topology.raw) == n


def _spooled_files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


@_GC_OF_FAILED_CONNECTS_IN_A_THREAD
async def test_callbacks_accepted_while_the_broker_is_down_survive_an_ingress_restart(
    broker_proxy_settings: tuple[Settings, CuttableProxy],
    broker: BrokerClient,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    settings, proxy = broker_proxy_settings
    spool_dir = tmp_path / "spool"
    first = InProcessIngress(settings, spool_dir)
    await first.start()
    await eventually(lambda: first.publisher.inner.ready)
    status, before_id = await _post(http, first.url, _body(0))
    assert status == 200
    assert _spooled_files(spool_dir) == []  # the broker took it directly

    proxy.cut()
    request_ids = [before_id]
    for n in range(1, 21):
        status, request_id = await _post(http, first.url, _body(n))
        assert status == 200, n
        request_ids.append(request_id)
    async with http.get(f"{first.url}/readyz") as ready:
        assert ready.status == 200  # ready: the spool takes bodies
    assert first.publisher.spool.pending == 20
    await first.stop()
    assert len(_spooled_files(spool_dir)) == 1

    second = InProcessIngress(settings, spool_dir)
    await second.start()
    assert second.publisher.spool.pending == 20  # what the first one left
    for n in range(21, 31):
        status, request_id = await _post(http, second.url, _body(n))
        assert status == 200, n
        request_ids.append(request_id)
    assert await _count_is(broker, 1)

    proxy.restore()
    try:
        await eventually(lambda: _count_is(broker, 31), timeout=30)
        await eventually(lambda: _spooled_files(spool_dir) == [])
        status, request_id = await _post(http, second.url, _body(31))  # direct again
        assert status == 200
        request_ids.append(request_id)
        await eventually(lambda: _count_is(broker, 32))
    finally:
        await second.stop()
    messages = await broker.take_all(broker.topology.raw)
    assert [m.body for m in messages] == [_body(n) for n in range(32)]
    assert [m.message_id for m in messages] == request_ids
    assert all(m.delivery_mode == 2 for m in messages)
    assert {(m.headers or {}).get("x-source-address") for m in messages} == {"127.0.0.1"}


@_GC_OF_FAILED_CONNECTS_IN_A_THREAD
async def test_the_ingress_answers_503_once_the_spool_is_full_and_delivers_what_it_took(
    broker_proxy_settings: tuple[Settings, CuttableProxy],
    broker: BrokerClient,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    settings, proxy = broker_proxy_settings
    ingress = InProcessIngress(settings, tmp_path / "spool", max_bytes=8 * 1024)
    await ingress.start()
    await eventually(lambda: ingress.publisher.inner.ready)
    proxy.cut()
    try:
        statuses = []
        for n in range(20):
            async with http.post(f"{ingress.url}/callbacks", data=_body(3) + b"%d" % n) as resp:
                await resp.read()
                statuses.append(resp.status)
                if resp.status == 503:
                    assert resp.headers["Retry-After"] == str(settings.retry_after)
        accepted = statuses.count(200)
        assert 0 < accepted < 20
        assert statuses == [200] * accepted + [503] * (20 - accepted)
        proxy.restore()
        await eventually(lambda: _count_is(broker, accepted), timeout=30)
        await eventually(lambda: ingress.publisher.spool.pending == 0)
        async with http.post(f"{ingress.url}/callbacks", data=b"<after/>") as resp:
            assert resp.status == 200
        await eventually(lambda: _count_is(broker, accepted + 1))
    finally:
        proxy.restore()
        await ingress.stop()
    bodies = [m.body for m in await broker.take_all(broker.topology.raw)]
    assert bodies == [_body(3) + b"%d" % n for n in range(accepted)] + [b"<after/>"]


# -- the ingress as a process of its own, killed with SIGKILL ------------------------------

#: A minimal ingress process: the app over ``build_publisher(settings)``, settings from the
#: environment. The ``callback-fanout ingress`` command runs the same pieces.
_INGRESS_PROCESS = """
import asyncio
from aiohttp import web
from ingress.app import create_app
from ingress.publishing import build_publisher
from shared.settings import Settings

async def main():
    settings = Settings.load()
    publisher = build_publisher(settings)
    runner = web.AppRunner(create_app(settings, publisher), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    await publisher.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _command_spools() -> bool:
    """Whether ``callback-fanout ingress`` builds its publisher with the spool setting."""
    from ingress.server import IngressService

    service = IngressService(Settings.load(spool_dir="spool-probe", port=0))
    return isinstance(service.publisher, SpoolingPublisher)


POSTERS = 8
BURST_PER_POSTER = 200


def _burst_sender(poster: int) -> bytes:
    return b"<burst p='%d' " % poster


def _burst_body(poster: int, n: int) -> bytes:
    return _burst_sender(poster) + b"n='%05d'/>" % n


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class IngressProcess:
    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, env, log
        self.url = f"http://127.0.0.1:{env['CALLBACK_FANOUT_PORT']}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command, cwd=ROOT, env=self.env, stdout=log, stderr=log
            )

        async def ready() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/readyz") as response:
                    return response.status == 200
            return False

        await eventually(ready, timeout=30, interval=0.1)

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        await asyncio.wait_for(self.process.wait(), 30)


@pytest.mark.parametrize("launcher", ["app-process", "callback-fanout-ingress"])
async def test_callbacks_spooled_by_a_sigkilled_ingress_are_delivered_by_its_successor(
    broker_proxy_settings: tuple[Settings, CuttableProxy],
    broker: BrokerClient,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    launcher: str,
) -> None:
    if launcher == "callback-fanout-ingress" and not _command_spools():
        pytest.skip("`callback-fanout ingress` does not build its publisher with the spool yet")
    settings, proxy = broker_proxy_settings
    spool_dir = tmp_path / "spool"
    command = (
        [sys.executable, "-c", _INGRESS_PROCESS]
        if launcher == "app-process"
        else [sys.executable, "-m", "callback_fanout", "ingress"]
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CALLBACK_FANOUT_AMQP_URL": settings.broker_url,
        "CALLBACK_FANOUT_PREFIX": settings.prefix,
        "CALLBACK_FANOUT_HOST": "127.0.0.1",
        "CALLBACK_FANOUT_CONFIRM_TIMEOUT": "2",
        "CALLBACK_FANOUT_SPOOL_DIR": str(spool_dir),
        "CALLBACK_FANOUT_ENTRY_POINTS": "false",
    }
    log = tmp_path / "ingress.log"
    first = IngressProcess(command, {**env, "CALLBACK_FANOUT_PORT": str(_free_port())}, log)
    second = IngressProcess(command, {**env, "CALLBACK_FANOUT_PORT": str(_free_port())}, log)
    try:
        await first.start(http)
        assert (await _post(http, first.url, _body(0)))[0] == 200
        await eventually(lambda: _count_is(broker, 1), timeout=30)

        proxy.cut()
        for n in range(1, 11):  # one at a time: these are accepted in this order
            assert (await _post(http, first.url, _body(n)))[0] == 200, n
        # Then senders at once, each posting its next body when the last one is answered,
        # until the process is killed under them.
        acked: dict[int, int] = dict.fromkeys(range(POSTERS), 0)

        async def poster(k: int) -> None:
            for n in range(BURST_PER_POSTER):
                try:
                    status, _ = await _post(http, first.url, _burst_body(k, n))
                except aiohttp.ClientError:
                    return
                assert status == 200
                acked[k] = n + 1

        posting = [asyncio.create_task(poster(k)) for k in range(POSTERS)]
        await eventually(lambda: sum(acked.values()) >= 50, interval=0.01)
        await first.kill(signal.SIGKILL)
        await asyncio.gather(*posting)
        assert sum(acked.values()) < POSTERS * BURST_PER_POSTER  # killed mid-burst
        assert _spooled_files(spool_dir)

        await second.start(http)
        for n in range(11, 21):
            assert (await _post(http, second.url, _body(n)))[0] == 200, n
        proxy.restore()
        # A segment is deleted only once the broker confirmed all its records.
        await eventually(lambda: _spooled_files(spool_dir) == [], timeout=40)
    except BaseException:
        print(log.read_text(errors="replace")[-20000:])
        raise
    finally:
        proxy.restore()
        for process in (first, second):
            if process.process is not None:
                await process.kill(signal.SIGTERM)
    bodies = [m.body for m in await broker.take_all(broker.topology.raw)]
    # Everything answered 200 arrives exactly once: first the bodies accepted one at a time,
    # then the burst, then the successor's own.
    assert bodies[:11] == [_body(n) for n in range(11)]
    assert bodies[-10:] == [_body(n) for n in range(11, 21)]
    burst = bodies[11:-10]
    assert len(set(burst)) == len(burst)
    for k in range(POSTERS):
        # Each sender's bodies in its order: all it saw answered, plus at most the one the
        # kill cut off after it was on disk.
        mine = [b for b in burst if b.startswith(_burst_sender(k))]
        assert acked[k] <= len(mine) <= acked[k] + 1
        assert mine == [_burst_body(k, n) for n in range(len(mine))]
    assert len(burst) <= sum(acked.values()) + POSTERS
    print(f"burst: {sum(acked.values())} answered 200 before the kill, {len(burst)} delivered")
