"""Soak run: steady load through the whole system while faults are injected on a schedule.

Starts, on 127.0.0.1, an ingress (with its spool), a router and two workers as separate
processes, all reaching RabbitMQ through a TCP proxy that the run cuts to simulate broker
outages (``--real-restarts`` uses ``rabbitmqctl stop_app``/``start_app`` instead: only on a
broker nobody else is using). Posts callbacks at a steady rate (5% of them unparsable), kills
a worker with SIGKILL and starts a new one on a schedule, then stops the load, waits for
everything to drain and prints the accounting:

    accepted = delivered + parked      (duplicates counted apart; lost must be 0)

    python bench/soak.py                      # 10 minutes
    python bench/soak.py --duration 60        # a CI-sized minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aio_pika
import aiohttp
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.settings import Settings  # noqa: E402
from shared.topology import Topology  # noqa: E402
from shared.wire.events import entries_of, is_events  # noqa: E402
from tests.support.processes import RoleProcess, free_port  # noqa: E402
from tests.support.proxy import CuttableProxy  # noqa: E402
from workers.router.rawbodies import raw_messages  # noqa: E402

OCR = (ROOT / "workers" / "testing" / "seeds" / "ocr.1.xml").read_bytes()
GARBAGE = b"<Response><JobsDetail>"  # parks in <prefix>.unparsed
CONSUMERS = "tests.support.fault_consumers"
CONSUMER = "slow-recorder"


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix = f"soak-{secrets.token_hex(3)}"
        self.workdir = Path(tempfile.mkdtemp(prefix="fanout-soak-"))
        self.out = self.workdir / "delivered"
        self.accepted: list[str] = []
        self.refused = 0
        self.outages = 0
        self.kills = 0
        self.workers: list[RoleProcess] = []
        self.others: list[RoleProcess] = []

    def settings(self, url: str) -> Settings:
        return Settings.load(
            amqp_url=url, prefix=self.prefix, retry_delays=[1.0], shutdown_grace=5.0
        )

    async def post_forever(
        self, http: aiohttp.ClientSession, url: str, stop: asyncio.Event
    ) -> None:
        interval = 1.0 / self.args.rate
        n = itertools.count()
        next_at = time.monotonic()
        pending: set[asyncio.Task[None]] = set()

        async def one(body: bytes) -> None:
            try:
                async with http.post(url, data=body) as response:
                    await response.read()
                    if response.status == 200:
                        self.accepted.append(response.headers["X-Request-Id"])
                    else:
                        self.refused += 1
            except aiohttp.ClientError:
                self.refused += 1

        while not stop.is_set():
            body = GARBAGE if next(n) % 20 == 19 else OCR
            task = asyncio.create_task(one(body))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    async def start_worker(self, settings: Settings) -> int:
        """Start a worker; returns the port of its /readyz."""
        env = {"FAULT_OUT": str(self.out), "FAULT_SLEEP": "0.002"}
        port = free_port()
        self.workers.append(
            await RoleProcess.start(
                "worker", settings, "--consumer", CONSUMERS, "--health-port", str(port), env=env
            )
        )
        return port

    async def faults(self, proxy: CuttableProxy, settings: Settings, stop: asyncio.Event) -> None:
        period = max(10.0, self.args.duration / 6)
        tick = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period / 2)
            if stop.is_set():
                return
            tick += 1
            if tick % 2:  # a broker outage
                self.outages += 1
                if self.args.real_restarts:
                    await asyncio.to_thread(_ctl, "stop_app")
                    await asyncio.sleep(3)
                    await asyncio.to_thread(_ctl, "start_app")
                    await asyncio.to_thread(_ctl, "await_startup")
                else:
                    proxy.cut()
                    await asyncio.sleep(3)
                    proxy.restore()
            else:  # a worker killed mid-work, and a new one started
                self.kills += 1
                victim = self.workers.pop(0)
                victim.signal(signal.SIGKILL)
                await victim.close()
                await self.start_worker(settings)

    async def run(self) -> int:
        target = URL(self.args.amqp_url)
        proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5672)
        await proxy.start()
        settings = self.settings(str(target.with_host("127.0.0.1").with_port(proxy.port)))
        direct = await aio_pika.connect_robust(self.args.amqp_url)
        channel = await direct.channel()
        topology = Topology(self.prefix)
        port = free_port()
        try:
            self.others.append(
                await RoleProcess.start(
                    "ingress",
                    settings,
                    "--port",
                    str(port),
                    "--spool-dir",
                    str(self.workdir / "spool"),
                )
            )
            router_port = free_port()
            self.others.append(
                await RoleProcess.start("router", settings, "--health-port", str(router_port))
            )
            ready_ports = [port, router_port] + [await self.start_worker(settings) for _ in "ab"]
            async with aiohttp.ClientSession() as http:
                for ready_port in ready_ports:  # load only once every role consumes
                    await _wait_ready(http, ready_port)
                stop = asyncio.Event()
                load = asyncio.create_task(
                    self.post_forever(http, f"http://127.0.0.1:{port}/callbacks", stop)
                )
                faults = asyncio.create_task(self.faults(proxy, settings, stop))
                await asyncio.sleep(self.args.duration)
                stop.set()
                await asyncio.gather(load, faults)
            proxy.restore()
            delivered, parked = await self.drain(channel, topology)
        finally:
            for process in self.workers + self.others:
                process.signal(signal.SIGTERM)
            for process in self.workers + self.others:
                with contextlib.suppress(TimeoutError):
                    await process.wait(30)
                await process.close()
            await _cleanup(channel, topology)
            await direct.close()
            await proxy.close()
        return self.report(delivered, parked)

    async def drain(
        self, channel: aio_pika.abc.AbstractChannel, topology: Topology
    ) -> tuple[list[str], set[str]]:
        """Wait until every accepted body is delivered or parked (or the drain times out)."""
        deadline = time.monotonic() + 120
        parked: set[str] = set()
        dead = topology.consumer(CONSUMER, [1.0]).dead
        while True:
            delivered = self.out.read_text().split() if self.out.exists() else []
            for queue in (topology.unparsed, topology.unrouted, dead):
                q = await topology.declare_queue(channel, queue)
                while (m := await q.get(no_ack=True, fail=False)) is not None:
                    parked.update(_request_ids(m))
            if set(self.accepted) <= set(delivered) | parked:
                return delivered, parked
            if time.monotonic() > deadline:
                await self.where_are_they(channel, topology)
                return delivered, parked
            await asyncio.sleep(1)

    async def where_are_they(
        self, channel: aio_pika.abc.AbstractChannel, topology: Topology
    ) -> None:
        """After a drain that did not complete: what is still where."""
        cq = topology.consumer(CONSUMER, [1.0])
        for queue in (topology.raw, topology.unrouted, cq.main, *(n for _, n in cq.delays)):
            count = await topology.message_count(channel, queue)
            print(f"still in {queue}: {count}", file=sys.stderr)
        spool = self.workdir / "spool"
        files = list(spool.rglob("*")) if spool.exists() else []
        print(f"spool: {[(f.name, f.stat().st_size) for f in files]}", file=sys.stderr)

    def report(self, delivered_lines: list[str], parked: set[str]) -> int:
        accepted = set(self.accepted)
        delivered = set(delivered_lines) & accepted
        parked &= accepted
        lost = accepted - delivered - parked
        duplicates = len(delivered_lines) - len(set(delivered_lines))
        print(
            "| duration | rate/s | accepted | delivered | parked | duplicates | lost "
            "| refused (503) | outages | worker kills |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {self.args.duration:g} s | {self.args.rate:g} | {len(accepted)} | "
            f"{len(delivered)} | {len(parked)} | {duplicates} | {len(lost)} | {self.refused} | "
            f"{self.outages} | {self.kills} |"
        )
        if lost:
            print("lost request ids:", " ".join(sorted(lost)[:20]), file=sys.stderr)
        ok = not lost and len(accepted) == len(delivered) + len(parked)
        print("accounting:", "OK" if ok else "MISMATCH")
        return 0 if ok else 1


def _request_ids(message: aio_pika.abc.AbstractIncomingMessage) -> list[str]:
    """The request ids a parked message stands for: raw bodies (batches unpacked) carry it as
    their message id, events in their envelope (framed) or the x-request-id header."""
    if is_events(message.content_type):
        return [
            str(json.loads(entry.doc)["envelope"]["request_id"])
            for entry in entries_of(message.content_type, message.body)
        ]
    request_id = (message.headers or {}).get("x-request-id")
    if request_id is not None:
        return [str(request_id)]
    return [lone.message_id or "" for lone in raw_messages(message)]


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=180)


async def _wait_ready(http: aiohttp.ClientSession, port: int) -> None:
    for _ in range(300):
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise SystemExit("the ingress did not become ready in 30 s")


async def _cleanup(channel: aio_pika.abc.AbstractChannel, topology: Topology) -> None:
    queues = [topology.raw, topology.unparsed, topology.unrouted]
    cq = topology.consumer(CONSUMER, [1.0])
    queues += [cq.main, cq.dead, *(name for _, name in cq.delays)]
    for queue in queues:
        with contextlib.suppress(Exception):
            await channel.queue_delete(queue)
    for exchange in (topology.events, topology.unrouted):
        with contextlib.suppress(Exception):
            await channel.exchange_delete(exchange)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=100.0, help="callbacks per second")
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument(
        "--real-restarts", action="store_true", help="restart the broker app instead of a proxy cut"
    )
    return asyncio.run(Soak(parser.parse_args()).run())


if __name__ == "__main__":
    raise SystemExit(main())
