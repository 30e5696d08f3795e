"""The ingress with its local spool against the real broker: callbacks accepted while the
broker is away, kept through an ingress crash, delivered once each, in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from yarl import URL

from ingress.app import create_app
from ingress.groupcommit import AmqpPublisher
from ingress.spool import Spool
from ingress.spooling import SpoolingPublisher
from shared.settings import Settings
from shared.wire.raw import is_batch, unpack
from tests.support.broker import BrokerClient
from tests.support.processes import free_port
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


async def _raw_bodies(broker: BrokerClient) -> list[tuple[str, bytes, str | None]]:
    """Request id, body and source address of every body on the raw queue, in order, as a
    router sees them: a batch message (bodies that shared a confirm) gives its entries."""
    bodies: list[tuple[str, bytes, str | None]] = []
    for message in await broker.take_all(broker.topology.raw):
        assert message.delivery_mode == 2  # persistent
        if is_batch(message.content_type):
            bodies += [(m.request_id, body, m.source_address) for m, body in unpack(message.body)]
        else:
            source = (message.headers or {}).get("x-source-address")
            bodies.append((str(message.message_id), message.body, str(source)))
    return bodies


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
    await eventually(lambda: second.publisher.spool.pending == 20)  # what the first one left
    for n in range(21, 31):
        status, request_id = await _post(http, second.url, _body(n))
        assert status == 200, n
        request_ids.append(request_id)
    assert await broker.count_is(broker.topology.raw, 1)

    proxy.restore()
    try:
        # A segment is deleted only once the broker confirmed every record in it.
        await eventually(lambda: _spooled_files(spool_dir) == [], timeout=30)
        assert second.publisher.spool.pending == 0
        status, request_id = await _post(http, second.url, _body(31))  # direct again
        assert status == 200
        assert _spooled_files(spool_dir) == []
        request_ids.append(request_id)
    finally:
        await second.stop()
    delivered = await _raw_bodies(broker)
    assert [body for _, body, _ in delivered] == [_body(n) for n in range(32)]
    assert [request_id for request_id, _, _ in delivered] == request_ids
    assert {source for _, _, source in delivered} == {"127.0.0.1"}


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
        await eventually(lambda: ingress.publisher.spool.pending == 0, timeout=30)
        async with http.post(f"{ingress.url}/callbacks", data=b"<after/>") as resp:
            assert resp.status == 200
    finally:
        proxy.restore()
        await ingress.stop()
    bodies = [body for _, body, _ in await _raw_bodies(broker)]
    assert bodies == [_body(3) + b"%d" % n for n in range(accepted)] + [b"<after/>"]


class StallingProxy:
    """A TCP proxy to the broker that can hold everything it is given: a broker that is
    connected but does not answer (confirms that come late)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        self.flowing.set()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@_GC_OF_FAILED_CONNECTS_IN_A_THREAD
async def test_a_body_the_broker_does_not_confirm_in_time_is_spooled_and_delivered_later(
    settings: Settings,
    amqp_url: str,
    broker: BrokerClient,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    target = URL(amqp_url)
    proxy = StallingProxy(target.host or "127.0.0.1", target.port or 5672)
    await proxy.start()
    slow = settings.model_copy(
        update={
            "amqp_url": [SecretStr(str(target.with_host("127.0.0.1").with_port(proxy.port)))],
            "confirm_timeout": 1.0,
        }
    )
    ingress = InProcessIngress(slow, tmp_path / "spool")
    try:
        await ingress.start()
        await eventually(lambda: ingress.publisher.inner.ready)
        assert (await _post(http, ingress.url, _body(0)))[0] == 200
        proxy.flowing.clear()  # the broker stops answering; the connection stays up
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await _post(http, ingress.url, _body(1)))[0] == 200
        # It waited for the broker's confirm first (timers may fire a hair early).
        assert loop.time() - started >= slow.confirm_timeout - 0.05
        assert ingress.publisher.spool.pending == 1
        assert (await _post(http, ingress.url, _body(2)))[0] == 200
        assert ingress.publisher.spool.pending == 2  # spooled behind the first
        proxy.flowing.set()
        await eventually(lambda: ingress.publisher.spool.pending == 0, timeout=30)
    finally:
        await ingress.stop()
        await proxy.close()
    bodies = [body for _, body, _ in await _raw_bodies(broker)]
    # Everything arrives, in order of first arrival. The body whose confirm came too late
    # reached the broker anyway, so it may arrive more than once: delivery is at least once.
    first_seen = list(dict.fromkeys(bodies))
    assert first_seen == [_body(0), _body(1), _body(2)]
    assert bodies.count(_body(0)) == 1
    print(f"delivered {len(bodies)} messages for 3 bodies")


# -- the ingress as a process of its own, killed with SIGKILL ------------------------------

#: A minimal ingress process: the app over ``build_publisher(settings)``, settings from the
#: environment. The ``callback-fanout ingress`` command runs the same pieces.
_INGRESS_PROCESS = """
import asyncio
from aiohttp import web
from pydantic import SecretStr
from yarl import URL
from ingress.app import create_app
from ingress.spooling import build_publisher
from shared.wire.raw import is_batch, unpack
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
    if launcher == "callback-fanout-ingress":
        assert _command_spools(), "`callback-fanout ingress` ignores --spool-dir"
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
    first = IngressProcess(command, {**env, "CALLBACK_FANOUT_PORT": str(free_port())}, log)
    second = IngressProcess(command, {**env, "CALLBACK_FANOUT_PORT": str(free_port())}, log)
    try:
        await first.start(http)
        assert (await _post(http, first.url, _body(0)))[0] == 200
        await eventually(lambda: broker.count_is(broker.topology.raw, 1), timeout=30)

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
    bodies = [body for _, body, _ in await _raw_bodies(broker)]
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
